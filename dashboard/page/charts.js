// Hand-made inline SVG charts (no library, nothing fetched from elsewhere).
const SVG = 'http://www.w3.org/2000/svg';
export const STEP_COLOURS = ['#2b6cb0', '#38a169', '#d69e2e', '#805ad5', '#dd6b20', '#319795', '#e53e3e'];

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Grouped bars: one group per hour, one bar per step. `series` = { step: [{hour, count}] }. */
export function completedChart(series, steps) {
  const hours = [...new Set(steps.flatMap((step) => (series[step] ?? []).map((p) => p.hour)))].sort();
  const width = 560;
  const height = 180;
  const pad = { left: 34, right: 8, top: 8, bottom: 26 };
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': 'files completed per hour and step' });
  const max = Math.max(1, ...steps.flatMap((step) => (series[step] ?? []).map((p) => p.count)));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  for (const fraction of max >= 2 ? [0, 0.5, 1] : [0, 1]) {
    const y = pad.top + plotH * (1 - fraction);
    svg.append(s('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y, stroke: '#dde1e7' }));
    svg.append(s('text', { x: pad.left - 4, y: y + 3, 'text-anchor': 'end' }, String(Math.round(max * fraction))));
  }
  if (hours.length === 0) {
    svg.append(s('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle' }, 'no file completed in these hours'));
    return svg;
  }
  const group = plotW / hours.length;
  const bar = Math.max(1, (group * 0.8) / steps.length);
  hours.forEach((hour, i) => {
    steps.forEach((step, j) => {
      const count = (series[step] ?? []).find((p) => p.hour === hour)?.count ?? 0;
      const h = (count / max) * plotH;
      const rect = s('rect', {
        x: pad.left + i * group + group * 0.1 + j * bar,
        y: pad.top + plotH - h,
        width: bar,
        height: h,
        fill: STEP_COLOURS[j % STEP_COLOURS.length],
      });
      rect.append(s('title', {}, `${step} ${hour}: ${count}`));
      svg.append(rect);
    });
    if (hours.length <= 12 || i % Math.ceil(hours.length / 12) === 0) {
      // Hours come as 'YYYY-MM-DDTHH' (UTC), which Date cannot parse.
      const label = `${hour.slice(11, 13)}:00`;
      svg.append(s('text', { x: pad.left + i * group + group / 2, y: height - 10, 'text-anchor': 'middle' }, label));
    }
  });
  return svg;
}

/** A horizontal bar per stage: p50 (dark) and p95 (light) against the target (a red tick). */
export function latencyBars(latency) {
  const width = 220;
  const height = 14;
  // The target counts from DAQ close, so the bars show the since-close latencies (close_p50_s, close_p95_s).
  const max = Math.max(1, ...latency.flatMap((l) => [l.close_p95_s ?? 0, l.target_s ?? 0]));
  return (entry) => {
    const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height });
    const x = (v) => (v / max) * width;
    if (entry.close_p95_s != null) svg.append(s('rect', { x: 0, y: 2, width: x(entry.close_p95_s), height: 10, fill: '#bee3f8' }));
    if (entry.close_p50_s != null) svg.append(s('rect', { x: 0, y: 2, width: x(entry.close_p50_s), height: 10, fill: '#2b6cb0' }));
    if (entry.target_s !== null) svg.append(s('rect', { x: Math.min(width - 2, x(entry.target_s)), y: 0, width: 2, height: 14, fill: '#c53030' }));
    return svg;
  };
}
