// Builds DOM nodes from data; text always goes in as text, never as HTML (documents are data).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    else if (key === 'style') el.style.cssText = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function table(headers, rows, options = {}) {
  const numeric = new Set(options.numeric ?? []);
  return [
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((name, i) => h('th', { class: numeric.has(i) ? 'num' : undefined }, name)),
      ),
    ),
    h('tbody', {}, rows.length === 0 ? h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, options.empty ?? 'none')) : rows),
  ];
}

export function statusClass(status) {
  if (typeof status !== 'string') return 'status';
  const kind = status.endsWith(' failed') ? 'failed' : status.endsWith(' in progress') ? 'in_progress' : status.endsWith(' queued') ? 'queued' : status;
  return `status st-${kind}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
