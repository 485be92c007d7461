// docs/bench-apply.svg: the pause seen by the in-target monitor against the number of
// threads (log scale), one line per number of patched functions, beside the floor
// (plain one-by-one ptrace stop and resume of the same threads), one panel per kind of
// thread (sleeping, busy). Hand-written SVG, no dependency.

export interface PlotPoint {
  threads: number;
  /** ms */
  value: number;
}

export interface PlotSeries {
  label: string;
  color: string;
  dash?: string;
  points: PlotPoint[];
}

export interface PlotPanel {
  title: string;
  series: PlotSeries[];
}

/** Horizontal reference lines (ms) drawn in every panel. */
export interface PlotRef {
  label: string;
  value: number;
}

const W = 460;
const H = 340;
const M = { l: 84, r: 16, t: 34, b: 46 };

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function fmtMs(v: number): string {
  return v >= 1 ? `${+v.toPrecision(3)} ms` : `${+(v * 1000).toPrecision(3)} us`;
}

export function plotSvg(title: string, panels: PlotPanel[], refs: PlotRef[], xs: number[]): string {
  const all = panels.flatMap((p) => p.series.flatMap((s) => s.points.map((q) => q.value))).concat(refs.map((r) => r.value)).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const pad = 24;
  const px = (t: number) => M.l + pad + ((Math.log10(t) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0) || 1)) * (W - M.l - M.r - 2 * pad);
  const py = (v: number) => H - M.b - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (H - M.t - M.b);
  const legendH = 18 * (panels[0]?.series.length ?? 0) + 8;
  const out: string[] = [];
  const width = W * panels.length;
  const height = H + legendH + 30;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  panels.forEach((panel, k) => {
    const g: string[] = [];
    g.push(`<g transform="translate(${k * W},20)">`);
    g.push(`<text x="${(M.l + W - M.r) / 2}" y="${M.t - 12}" text-anchor="middle" font-weight="bold">${esc(panel.title)}</text>`);
    g.push(`<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#888"/>`);
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      const y = py(d);
      g.push(`<line x1="${M.l}" y1="${y}" x2="${W - M.r}" y2="${y}" stroke="#ddd"/>`);
      g.push(`<text x="${M.l - 6}" y="${y + 4}" text-anchor="end">${fmtMs(d)}</text>`);
    }
    for (const t of xs) {
      const x = px(t);
      g.push(`<line x1="${x}" y1="${M.t}" x2="${x}" y2="${H - M.b}" stroke="#eee"/>`);
      g.push(`<text x="${x}" y="${H - M.b + 16}" text-anchor="middle">${t}</text>`);
    }
    g.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 10}" text-anchor="middle">threads</text>`);
    g.push(`<text transform="translate(16,${(M.t + H - M.b) / 2}) rotate(-90)" text-anchor="middle">pause seen by the target</text>`);
    for (const r of refs) {
      const y = py(r.value);
      g.push(`<line x1="${M.l}" y1="${y}" x2="${W - M.r}" y2="${y}" stroke="#b55" stroke-dasharray="2,3"/>`);
      g.push(`<text x="${W - M.r - 4}" y="${y - 3}" text-anchor="end" fill="#b55" font-size="10">${esc(r.label)}</text>`);
    }
    for (const s of panel.series) {
      const pts = s.points.filter((p) => p.value > 0).sort((a, b) => a.threads - b.threads);
      if (!pts.length) continue;
      g.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""} points="${pts.map((p) => `${px(p.threads).toFixed(1)},${py(p.value).toFixed(1)}`).join(" ")}"/>`);
      for (const p of pts) g.push(`<circle cx="${px(p.threads).toFixed(1)}" cy="${py(p.value).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.label}, ${p.threads} threads: ${fmtMs(p.value)}`)}</title></circle>`);
    }
    panel.series.forEach((s, i) => {
      const y = H + 4 + 18 * i;
      g.push(`<line x1="${M.l}" y1="${y}" x2="${M.l + 28}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`);
      g.push(`<text x="${M.l + 34}" y="${y + 4}">${esc(s.label)}</text>`);
    });
    g.push(`</g>`);
    out.push(...g);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
