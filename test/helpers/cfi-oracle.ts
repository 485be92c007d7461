// readelf --debug-dump=frames-interp as an oracle of the core's unwind-table rows.
import { expect } from "vitest";
import { spawnSync } from "node:child_process";
import { CfiRegistry, DWARF_REG_NAMES, type CfiRow, type Rule } from "../../src/core/stack.js";

export interface ReadelfRow { loc: bigint; cfa: string; cols: Map<number, string> }
export interface ReadelfFde { off: number; begin: bigint; end: bigint; rows: ReadelfRow[]; aug: string; ra: number }

/** Parses `readelf -wF`: each FDE with its printed rows (register columns by DWARF number; "ra" is 16). */
export function readelfFrames(file: string): ReadelfFde[] {
  // readelf exits with 1 on libc (a missing separate debug file); its output is complete.
  const run = spawnSync("readelf", ["-wF", file], { encoding: "utf8", maxBuffer: 1 << 30 });
  if (!run.stdout) throw new Error(`readelf -wF ${file}: ${run.stderr}`);
  const text = run.stdout;
  const fdes: ReadelfFde[] = [];
  const cieAug = new Map<number, string>();
  const cieRa = new Map<number, number>();
  let cur: ReadelfFde | null = null;
  let header: number[] = [];
  for (const line of text.split("\n")) {
    let m;
    if ((m = /^([0-9a-f]{8,}) [0-9a-f]+ [0-9a-f]+ CIE "(\w*)".* ra=(\d+)/.exec(line))) {
      cieAug.set(parseInt(m[1], 16), m[2]);
      cieRa.set(parseInt(m[1], 16), Number(m[3]));
      cur = null;
    } else if ((m = /^([0-9a-f]{8,}) [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)/.exec(line))) {
      const cie = parseInt(m[2], 16);
      cur = { off: parseInt(m[1], 16), begin: BigInt("0x" + m[3]), end: BigInt("0x" + m[4]), rows: [], aug: cieAug.get(cie) ?? "?", ra: cieRa.get(cie) ?? 16 };
      fdes.push(cur);
    } else if (/^\s+LOC\s+CFA/.test(line)) {
      const ra = cur?.ra ?? 16; // "ra" is the CIE's return address column
      header = line.trim().split(/\s+/).slice(2).map((n) => (n === "ra" ? ra : DWARF_REG_NAMES.indexOf(n)));
    } else if (cur && (m = /^([0-9a-f]{16}) (\S+)\s+(.*)$/.exec(line))) {
      // a register rule prints as "r1 (rdx)": keep the name
      const vals = m[3].replace(/\S+ \((\S+)\)/g, "$1").trim().split(/\s+/);
      const cols = new Map<number, string>();
      header.forEach((r, i) => { if (r >= 0 && i < vals.length) cols.set(r, vals[i]); });
      cur.rows.push({ loc: BigInt("0x" + m[1]), cfa: m[2], cols });
    }
  }
  return fdes;
}

function showRule(r: Rule): string {
  switch (r.kind) {
    case "unset": case "undefined": return "u";
    case "same": return "s";
    case "offset": return "c" + (r.offset >= 0n ? "+" : "") + r.offset;
    case "val_offset": return "v" + (r.offset >= 0n ? "+" : "") + r.offset;
    case "register": return DWARF_REG_NAMES[r.reg] ?? `r${r.reg}`;
    case "expression": return "exp";
    case "val_expression": return "vexp";
  }
}

function showCfa(row: CfiRow): string {
  if (row.cfa.kind === "reg") return (DWARF_REG_NAMES[row.cfa.reg] ?? `r${row.cfa.reg}`) + (row.cfa.offset >= 0n ? "+" : "") + row.cfa.offset;
  return row.cfa.kind === "expression" ? "exp" : "?";
}

/** Compares every printed row of every FDE (every `step`-th FDE) with the core's row at bias+LOC. */
export function compare(reg: CfiRegistry, fdes: ReadelfFde[], bias: bigint, step = 1): { rows: number; fdes: number } {
  let rows = 0, n = 0;
  const bad: string[] = [];
  for (let i = 0; i < fdes.length; i += step) {
    const f = fdes[i];
    if (f.end === f.begin) continue;
    n++;
    // readelf prints one row per advance; when several share a LOC the last one holds there.
    const byLoc = new Map<bigint, ReadelfRow>();
    for (const r of f.rows) byLoc.set(r.loc, r);
    if (byLoc.size === 0) {
      const row = reg.row(f.begin + bias);
      if (!row || row.fdeBegin !== f.begin + bias || row.fdeEnd !== f.end + bias) bad.push(`FDE ${f.off.toString(16)}: not found at its pc_begin`);
      continue;
    }
    for (const [loc, r] of byLoc) {
      rows++;
      const row = reg.row(loc + bias);
      const where = `FDE at .eh_frame+0x${f.off.toString(16)}, LOC ${loc.toString(16)}`;
      if (!row) { bad.push(`${where}: no row`); continue; }
      if (row.fdeBegin !== f.begin + bias || row.fdeEnd !== f.end + bias || row.fdeOffset !== BigInt(f.off)) {
        bad.push(`${where}: FDE ${row.fdeBegin.toString(16)}..${row.fdeEnd.toString(16)} at +0x${row.fdeOffset.toString(16)}`);
        continue;
      }
      if (row.rowStart !== loc + bias) bad.push(`${where}: row starts at ${(row.rowStart - bias).toString(16)}`);
      if (showCfa(row) !== r.cfa) bad.push(`${where}: CFA ${showCfa(row)}, readelf ${r.cfa}`);
      for (const [reg16, want] of r.cols) {
        const got = showRule(row.rules[reg16]);
        if (got !== want) bad.push(`${where}: ${DWARF_REG_NAMES[reg16]} ${got}, readelf ${want}`);
      }
      // registers readelf has no column for have no rule
      for (let k = 0; k < 17; k++) if (!r.cols.has(k) && showRule(row.rules[k]) !== "u") bad.push(`${where}: ${DWARF_REG_NAMES[k]} ${showRule(row.rules[k])}, readelf has none`);
      if (bad.length > 20) break;
    }
    if (bad.length > 20) break;
  }
  expect(bad).toEqual([]);
  return { rows, fdes: n };
}

