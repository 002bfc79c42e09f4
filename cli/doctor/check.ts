/** One line of `mesh doctor`: passed or failed, what was checked, what was found, what to do. */
export interface Check {
  ok: boolean;
  /** What was checked, e.g. `server kit http://…`. */
  what: string;
  /** What was found. */
  detail: string;
  /** What to do about a failure. */
  fix?: string;
}

export function pass(what: string, detail: string): Check {
  return { ok: true, what, detail };
}

export function failure(what: string, detail: string, fix: string): Check {
  return { ok: false, what, detail, fix };
}

/** `ok   what: detail` or `FAIL what: detail → fix`. */
export function checkLine(check: Check): string {
  return `${check.ok ? 'ok  ' : 'FAIL'} ${check.what}: ${check.detail}${check.ok || !check.fix ? '' : ` → ${check.fix}`}`;
}
