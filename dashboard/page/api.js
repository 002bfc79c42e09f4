// The page's calls to its server: JSON in and out, the CSRF header on every change.
export async function api(path, options = {}) {
  const init = { method: options.method ?? 'GET', credentials: 'same-origin', headers: {} };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers['Content-Type'] = 'application/json';
  }
  // The dashboard refuses state changes without this header (cross-site requests cannot set it).
  if (init.method !== 'GET') init.headers['X-Mesh-Dashboard'] = '1';
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.reason ?? `${res.status} ${res.statusText}`);
  return body;
}

/** Retries a failed step as the logged-in operator: the server's words on success, an Error with its reason otherwise. */
export async function retryStep(doc, step) {
  const result = await api('/api/retry', { method: 'POST', body: { doc, step } });
  return { ...result, text: `${result.step} is ready again (${result.status}) on ${result.server}` };
}

/** Pauses or resumes a step, drains or undrains a site, as the logged-in operator. */
export async function setControl(action, target, why) {
  return api('/api/control', { method: 'POST', body: { action, target, why } });
}

/** Every failed document of a step: `dryRun` counts them (nothing written), otherwise retries them with `why`. */
export async function retryFailed(step, { dryRun, why }) {
  return api('/api/retry-failed', { method: 'POST', body: { step, dry_run: dryRun, why } });
}
