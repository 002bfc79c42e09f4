// One clock for the whole page: every time in UTC, labelled, with its age ("08:31:05 UTC, 3 min ago").
import { h } from './dom.js';

const valid = (date) => Number.isFinite(date.getTime());

/** `08:31:05 UTC`, with the date in front when it is not today (UTC). */
export function clock(iso, now = Date.now()) {
  const date = new Date(iso);
  if (!valid(date)) return String(iso ?? '');
  const text = date.toISOString();
  const day = text.slice(0, 10) === new Date(now).toISOString().slice(0, 10) ? '' : `${text.slice(0, 10)} `;
  return `${day}${text.slice(11, 19)} UTC`;
}

/** `45 s`, `12 min`, `5 h`, `3 d`. */
export function age(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** `3 min ago` / `in 40 s`. */
export function ago(iso, now = Date.now()) {
  const date = new Date(iso);
  if (!valid(date)) return '';
  const seconds = (now - date.getTime()) / 1000;
  return seconds >= 0 ? `${age(seconds)} ago` : `in ${age(-seconds)}`;
}

/** A <time> element: the UTC clock and the age; the full ISO time in its tooltip. */
export function when(iso, now = Date.now()) {
  if (!iso) return '';
  const date = new Date(iso);
  if (!valid(date)) return String(iso);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, `${clock(iso, now)}, ${ago(iso, now)}`);
}
