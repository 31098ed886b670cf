/**
 * A small self-contained SVG of every target across the benchmark's parts: one horizontal bar
 * per TargetCheck showing how far it is from its target, normalised so that 1.0 is the target
 * line (value/target for "min" targets, target/value for "max" targets). Green bars meet their
 * target, red ones do not. No dependencies.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { BenchPart, TargetCheck } from "./report.js";

/** Bars are drawn up to this multiple of the target; longer ones are cut and marked. */
const MAX_SCALE = 2;

const LABEL_WIDTH = 470;
const BAR_WIDTH = 360;
const VALUE_WIDTH = 330;
const ROW_HEIGHT = 22;
const BAR_HEIGHT = 14;
const HEADER_HEIGHT = 62;
const SECTION_HEIGHT = 24;
const PAD = 12;
const FONT = "font-family=\"ui-monospace, SFMono-Regular, Menlo, Consolas, monospace\"";

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** How far a check is from its target: > 1 is better than the target, whatever its kind. */
export function normalisedRatio(t: TargetCheck): number {
  if (t.kind === "min") return t.target === 0 ? (t.value >= 0 ? Infinity : 0) : t.value / t.target;
  // "max": smaller is better; a value of 0 is infinitely better than any positive target.
  return t.value === 0 ? Infinity : t.target / t.value;
}

function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 10 ? 3 : a < 1000 ? 1 : 0);
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** Writes the chart to `path` (creating its folder). Parts without targets are left out. */
export function writeChart(parts: BenchPart[], path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, renderChart(parts));
}

/** The SVG text (exported for tests and for callers that store it elsewhere). */
export function renderChart(parts: BenchPart[]): string {
  const sections = parts.filter((p) => p.targets.length > 0);
  const width = PAD * 2 + LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH;
  const rows = sections.reduce((n, p) => n + p.targets.length, 0);
  const height = HEADER_HEIGHT + sections.length * SECTION_HEIGHT + Math.max(rows, 1) * ROW_HEIGHT + PAD * 2;
  const x0 = PAD + LABEL_WIDTH;
  const scale = BAR_WIDTH / MAX_SCALE;
  const targetX = x0 + scale; // 1.0
  const met = sections.reduce((n, p) => n + p.targets.filter((t) => t.met).length, 0);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${PAD}" y="${PAD + 12}" font-size="14" font-weight="bold">podcert benchmark targets: ${met} of ${rows} met</text>`,
    `<text x="${PAD}" y="${PAD + 30}" fill="#555">bar = value/target (target/value for upper limits); the line at 1.0 is the target; bars are cut at ${MAX_SCALE}×</text>`,
  );
  // Scale ticks.
  for (const tick of [0, 0.5, 1, 1.5, 2]) {
    const x = x0 + tick * scale;
    out.push(`<text x="${x}" y="${HEADER_HEIGHT + 4}" fill="#777" font-size="10" text-anchor="middle">${tick}</text>`);
  }

  let y = HEADER_HEIGHT + 10;
  const top = y;
  if (rows === 0) {
    out.push(`<text x="${PAD}" y="${y + 16}" fill="#555">no targets recorded</text>`);
  }
  for (const part of sections) {
    out.push(`<text x="${PAD}" y="${y + 16}" font-weight="bold">${esc(cut(part.title, 110))}</text>`);
    y += SECTION_HEIGHT;
    for (const t of part.targets) {
      const r = normalisedRatio(t);
      const shown = Number.isFinite(r) ? Math.max(0, Math.min(r, MAX_SCALE)) : MAX_SCALE;
      const colour = t.met ? "#2e9d4c" : "#d0342c";
      const barY = y + (ROW_HEIGHT - BAR_HEIGHT) / 2;
      const tip = `${t.name}: ${num(t.value)} ${t.unit}, target ${t.kind === "min" ? "≥" : "≤"} ${num(t.target)} ${t.unit}${t.note ? ` (${t.note})` : ""}`;
      out.push(`<g><title>${esc(tip)}</title>`);
      out.push(`<text x="${PAD}" y="${y + 15}">${esc(cut(t.name, 66))}</text>`);
      out.push(`<rect x="${x0}" y="${barY}" width="${Math.max(shown * scale, 1).toFixed(1)}" height="${BAR_HEIGHT}" fill="${colour}"/>`);
      if (!Number.isFinite(r) || r > MAX_SCALE) {
        // A cut bar ends in a white notch.
        const xe = x0 + MAX_SCALE * scale;
        out.push(`<path d="M${xe - 6} ${barY} L${xe} ${barY + BAR_HEIGHT / 2} L${xe - 6} ${barY + BAR_HEIGHT} Z" fill="#ffffff"/>`);
      }
      const label = `${num(t.value)} ${t.unit} (${t.kind === "min" ? "≥" : "≤"} ${num(t.target)}) ${Number.isFinite(r) ? `${r.toFixed(2)}×` : "∞"} ${t.met ? "met" : "MISSED"}`;
      out.push(`<text x="${x0 + BAR_WIDTH + 8}" y="${y + 15}" fill="${t.met ? "#222" : colour}">${esc(cut(label, 52))}</text>`);
      out.push(`</g>`);
      y += ROW_HEIGHT;
    }
  }
  // The target line over every row.
  out.push(`<line x1="${targetX}" y1="${top}" x2="${targetX}" y2="${Math.max(y, top + ROW_HEIGHT)}" stroke="#222" stroke-width="1.5" stroke-dasharray="4 3"/>`);
  out.push(`</svg>`, "");
  return out.join("\n");
}
