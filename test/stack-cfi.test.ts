// The CFI parser and the CFA program interpreter against readelf: for every FDE
// of real objects (libc, ld.so, libstdc++ with its personality/LSDA augmentation,
// node's 50000 FDEs, the vDSO read from this process's memory), every row
// `readelf --debug-dump=frames-interp` prints must be the row the core computes
// for that location: same FDE, same CFA rule, same rule for every register.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeCore } from "../src/node/core-file.js";
import { CfiRegistry, DWARF_REG_NAMES, type CfiRow, type Rule } from "../src/core/stack.js";
import { fileCfi, parseMaps } from "./helpers/stack.js";

interface ReadelfRow { loc: bigint; cfa: string; cols: Map<number, string> }
interface ReadelfFde { off: number; begin: bigint; end: bigint; rows: ReadelfRow[]; aug: string }

/** Parses `readelf -wF`: each FDE with its printed rows (register columns by DWARF number; "ra" is 16). */
function readelfFrames(file: string): ReadelfFde[] {
  // readelf exits with 1 on libc (a missing separate debug file); its output is complete.
  const run = spawnSync("readelf", ["-wF", file], { encoding: "utf8", maxBuffer: 1 << 30 });
  if (!run.stdout) throw new Error(`readelf -wF ${file}: ${run.stderr}`);
  const text = run.stdout;
  const fdes: ReadelfFde[] = [];
  const cieAug = new Map<number, string>();
  let cur: ReadelfFde | null = null;
  let header: number[] = [];
  for (const line of text.split("\n")) {
    let m;
    if ((m = /^([0-9a-f]{8,}) [0-9a-f]+ [0-9a-f]+ CIE "(\w*)"/.exec(line))) {
      cieAug.set(parseInt(m[1], 16), m[2]);
      cur = null;
    } else if ((m = /^([0-9a-f]{8,}) [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)/.exec(line))) {
      cur = { off: parseInt(m[1], 16), begin: BigInt("0x" + m[3]), end: BigInt("0x" + m[4]), rows: [], aug: cieAug.get(parseInt(m[2], 16)) ?? "?" };
      fdes.push(cur);
    } else if (/^\s+LOC\s+CFA/.test(line)) {
      header = line.trim().split(/\s+/).slice(2).map((n) => (n === "ra" ? 16 : DWARF_REG_NAMES.indexOf(n)));
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
function compare(reg: CfiRegistry, fdes: ReadelfFde[], bias: bigint, step = 1): { rows: number; fdes: number } {
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

const LIBS = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib64/ld-linux-x86-64.so.2",
  "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
].filter(existsSync);

describe("CFI rows match readelf --debug-dump=frames-interp", () => {
  for (const lib of LIBS) {
    it(`${lib}, through .eh_frame_hdr and through a scan of .eh_frame`, () => {
      const core = nodeCore();
      const cfi = fileCfi(lib)!;
      const fdes = readelfFrames(lib);
      expect(fdes.length).toBeGreaterThan(100);
      const bias = 0x7f0000000000n; // as if loaded there
      const withHdr = new CfiRegistry(core);
      const a = withHdr.addModule(cfi.ehFrame, cfi.ehAddr + bias, cfi.hdr, cfi.hdrAddr + bias);
      const r = compare(withHdr, fdes, bias);
      expect(r.rows).toBeGreaterThan(fdes.length);
      const scanned = new CfiRegistry(core);
      const b = scanned.addModule(cfi.ehFrame, cfi.ehAddr + bias);
      compare(scanned, fdes, bias, 7);
      const ia = withHdr.moduleInfo(a), ib = scanned.moduleInfo(b);
      expect(ia.fromHdr).toBe(true);
      expect(ib.fromHdr).toBe(false);
      expect({ ...ib, fromHdr: true }).toEqual(ia);
      expect(ia.fdes).toBe(fdes.filter((f) => f.end > f.begin).length);
      const v = withHdr.verify(a);
      expect(v.fdes).toBe(fdes.length);
      // glibc's __restore_rt: the one signal frame, an 'S' CIE with expression rules
      if (lib.includes("libc.so")) {
        const sig = fdes.filter((f) => f.aug.includes("S"));
        expect(sig.length).toBe(1);
        const row = withHdr.row(sig[0].begin + bias)!;
        expect(row.signalFrame).toBe(true);
        expect(row.cfa.kind).toBe("expression");
        expect(row.rules[16].kind).toBe("expression");
      }
      withHdr.free();
      scanned.free();
    });
  }

  it("node's .eh_frame (every 5th of its FDEs)", () => {
    const node = realpathSync(process.execPath);
    const cfi = fileCfi(node)!;
    const fdes = readelfFrames(node);
    expect(fdes.length).toBeGreaterThan(10000);
    const reg = new CfiRegistry(nodeCore());
    reg.addModule(cfi.ehFrame, cfi.ehAddr, cfi.hdr, cfi.hdrAddr);
    compare(reg, fdes, 0n, 5);
    reg.free();
  });

  it("the vDSO, read from this process's memory", () => {
    const maps = parseMaps(readFileSync("/proc/self/maps", "utf8"));
    const v = maps.find((m) => m.path === "[vdso]");
    if (!v) return; // a kernel without vDSO
    const image = new Uint8Array(Number(v.hi - v.lo));
    const fd = openSync("/proc/self/mem", "r");
    readSync(fd, image, 0, image.length, Number(v.lo));
    closeSync(fd);
    const dir = mkdtempSync(join(tmpdir(), "patchc-vdso-"));
    try {
      const file = join(dir, "vdso.so");
      writeFileSync(file, image);
      const fdes = readelfFrames(file);
      expect(fdes.length).toBeGreaterThan(0);
      const reg = new CfiRegistry(nodeCore());
      const id = reg.addImage(image, v.lo);
      const info = reg.moduleInfo(id);
      expect(info.fromHdr).toBe(true);
      const bias = v.lo - fileCfi(file)!.firstPage;
      compare(reg, fdes, bias);
      reg.free();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("CFI registry", () => {
  it("refuses modules whose pcs overlap, and finds pcs again after a removal", () => {
    const core = nodeCore();
    const cfi = fileCfi("/lib/x86_64-linux-gnu/libc.so.6")!;
    const reg = new CfiRegistry(core);
    const a = reg.addModule(cfi.ehFrame, cfi.ehAddr, cfi.hdr, cfi.hdrAddr);
    const lo = reg.moduleInfo(a).lo;
    expect(() => reg.addModule(cfi.ehFrame, cfi.ehAddr + 0x1000n, cfi.hdr, cfi.hdrAddr + 0x1000n)).toThrow(/overlap/);
    expect(reg.row(lo)).not.toBeNull();
    reg.remove(a);
    expect(reg.row(lo)).toBeNull();
    const b = reg.addModule(cfi.ehFrame, cfi.ehAddr + 0x1000n, cfi.hdr, cfi.hdrAddr + 0x1000n);
    expect(reg.row(lo + 0x1000n)?.module).toBe(b);
    reg.free();
  });

  it("rejects a header whose eh_frame_ptr is not the .eh_frame given", () => {
    const cfi = fileCfi("/lib/x86_64-linux-gnu/libc.so.6")!;
    const reg = new CfiRegistry(nodeCore());
    expect(() => reg.addModule(cfi.ehFrame, cfi.ehAddr + 16n, cfi.hdr, cfi.hdrAddr)).toThrow(/eh_frame_ptr/);
    reg.free();
  });
});
