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

/**
 * A table's head and body. Each cell is labelled with its column's header (`data-label`), so a
 * table of class `stack` can show its rows as label–value lists on a narrow screen.
 */
export function table(headers, rows, options = {}) {
  const numeric = new Set(options.numeric ?? []);
  for (const row of rows.flat(Infinity)) {
    if (!(row instanceof Node) || row.nodeType !== Node.ELEMENT_NODE) continue;
    let column = 0;
    for (const cell of row.children) {
      if (headers[column] && !cell.hasAttribute('data-label')) cell.setAttribute('data-label', headers[column]);
      column += Number(cell.getAttribute('colspan') ?? 1);
    }
  }
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

/** The class of a state in words (core/progress.ts kinds): complete is green, a waiting file is not. */
export function progressClass(kind) {
  return `status pr-${kind ?? 'unknown'}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** A link that opens a document on this page (the hash names it). */
export function docLink(id, text = id) {
  return h('a', { href: `#doc=${encodeURIComponent(id)}`, 'data-doc': id }, text);
}
