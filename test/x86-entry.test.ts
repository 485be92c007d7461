// The entry check (assembly/x86/entry.ts) on code built by gcc and gas: each function of
// test/fixtures/x86-entry.S is a case with a known answer; jump tables are checked
// against the assembler's relocations (test/fixtures/x86-entry.S, a C switch, PIC and
// not); and over libc.so.6, every accepted window is checked against every direct
// branch objdump finds in the whole library.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import type { Core } from "../src/core/instance.js";
import { branchTargets, entryCheck, jumpTables, WriteOp, X86, x86Write, X86Err, type EntryResult } from "../src/core/x86.js";
import { objdumpPieces, readFile, readFunctions, readSections, runObjdump, type ElfSection } from "./x86-objdump.js";

let core: Core;
let dir: string;

interface Sym {
  name: string;
  addr: bigint;
  size: bigint;
}

interface Built {
  path: string;
  bytes: Uint8Array;
  sections: ElfSection[];
  syms: Map<string, Sym>;
  starts: bigint[]; // every symbol address in executable sections, sorted
}

function symbols(path: string, sections: ElfSection[]): { syms: Map<string, Sym>; starts: bigint[] } {
  const out = execFileSync("readelf", ["-W", "--syms", path]).toString();
  const symtab = out.indexOf("Symbol table '.symtab'");
  const syms = new Map<string, Sym>();
  const starts = new Set<bigint>();
  for (const line of out.slice(symtab >= 0 ? symtab : 0).split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^\d+:$/.test(f[0]) || f[6] === "UND" || f[6] === "ABS") continue;
    const addr = BigInt("0x" + f[1]);
    const size = BigInt(f[2].startsWith("0x") ? f[2] : parseInt(f[2], 10));
    if (f[3] === "FUNC" || f[3] === "IFUNC") syms.set(f[7].replace(/@.*/, ""), { name: f[7], addr, size });
    if (sections.some((s) => s.exec && addr >= BigInt(s.addr) && addr < BigInt(s.addr + s.size))) starts.add(addr);
  }
  return { syms, starts: [...starts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) };
}

function build(name: string, src: string, flags: string[]): Built {
  const path = join(dir, name);
  execFileSync("gcc", [...flags, "-o", path, src, "-Wl,--unresolved-symbols=ignore-all"]);
  const sections = readSections(path);
  return { path, bytes: readFile(path), sections, ...symbols(path, sections) };
}

function section(b: Built, name: string): { bytes: Uint8Array; addr: bigint } {
  const s = b.sections.find((x) => x.name === name)!;
  return { bytes: b.bytes.subarray(s.offset, s.offset + s.size), addr: BigInt(s.addr) };
}

const range = (s: Sym): [bigint, bigint] => [s.addr, s.addr + s.size];

interface Opts {
  ranges?: string[];
  targets?: bigint[];
  data?: boolean;
  dest?: bigint;
  next?: boolean;
}

function check(b: Built, fn: string, o: Opts = {}): EntryResult {
  const f = b.syms.get(fn)!;
  expect(f, fn).toBeDefined();
  const text = section(b, ".text");
  const ro = section(b, ".rodata");
  return entryCheck(core, {
    code: text.bytes,
    codeAddr: text.addr,
    fnStart: f.addr,
    fnSize: f.size,
    dest: o.dest ?? f.addr + 0x100000n,
    nextSymbol: o.next === false ? 0n : (b.starts.find((a) => a > f.addr) ?? 0n),
    ranges: (o.ranges ?? []).map((r) => range(b.syms.get(r)!)),
    targets: o.targets,
    data: o.data ? ro.bytes : undefined,
    dataAddr: ro.addr,
  });
}

/** Jump-table targets from the relocations of the table in an object's .rodata (the assembler's view), as linked addresses. */
function relocationTargets(obj: string, linked: Built, fn: string): bigint[] {
  const out = execFileSync("readelf", ["-rW", obj]).toString();
  const rodata = out.slice(out.indexOf("'.rela.rodata'"));
  const o = symbols(obj, readSections(obj)).syms.get(fn)!;
  const l = linked.syms.get(fn)!;
  const res: bigint[] = [];
  for (const line of rodata.split("\n").slice(2)) {
    const m = /^([0-9a-f]+)\s+[0-9a-f]+\s+(R_X86_64_PC32|R_X86_64_64|R_X86_64_32S?)\s+[0-9a-f]+\s+\.text \+ ([0-9a-f]+)$/.exec(line.trim());
    if (!m) {
      if (line.trim() === "" || line.startsWith("Relocation section")) break;
      continue;
    }
    const off = BigInt("0x" + m[1]);
    const a = BigInt("0x" + m[3]);
    // PC32 for `.long L - table` (table at .rodata+0): S + A - P = L - T, so L = .text + A - off
    const textOff = m[2] === "R_X86_64_PC32" ? a - off : a;
    res.push(l.addr + (textOff - o.addr));
  }
  return res;
}

let asm: Built;

beforeAll(() => {
  core = nodeCore();
  dir = mkdtempSync(join(tmpdir(), "patchc-x86-entry-"));
  asm = build("entry.so", "test/fixtures/x86-entry.S", ["-shared", "-nostartfiles"]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

describe("x86 entry check: the cases of x86-entry.S", () => {
  it("a plain function takes a rel32 jump at its entry", () => {
    const f = asm.syms.get("plain")!;
    const r = check(asm, "plain");
    expect(r.message).toBe("");
    expect(r).toMatchObject({ status: 0, windowOffset: 0, windowLength: 5, windowAddr: f.addr, cover: 7, endbr64Kept: false, indirectJump: false, padding: 0 });
    expect(hex(r.patch)).toBe(hex(x86Write(core, WriteOp.JmpRel32, f.addr, f.addr + 0x100000n)));
  });

  it("the shortest jump: rel8 when the destination is near, the 14-byte form beyond rel32 (or TOO_SHORT)", () => {
    const f = asm.syms.get("plain")!;
    const near = check(asm, "plain", { dest: f.addr + 0x40n });
    expect(near).toMatchObject({ status: 0, windowLength: 2, cover: 3 });
    expect(hex(near.patch)).toBe(hex(x86Write(core, WriteOp.JmpRel8, f.addr, f.addr + 0x40n)));
    const far = check(asm, "plain", { dest: 0x7f0000001000n });
    expect(far.status).toBe(X86Err.TooShort);
    expect(far.message).toMatch(/is 8 bytes; the jump to 0x7f0000001000 needs 14/);
    const t = asm.syms.get("table_head")!;
    const abs = check(asm, "table_head", { dest: 0x7f0000001000n });
    expect(abs).toMatchObject({ status: 0, windowLength: 14, indirectJump: true });
    expect(hex(abs.patch)).toBe(hex(x86Write(core, WriteOp.JmpAbs, t.addr, 0x7f0000001000n)));
  });

  it("endbr64 stays first: the window starts after it", () => {
    const f = asm.syms.get("cet")!;
    const r = check(asm, "cet");
    expect(r).toMatchObject({ status: 0, windowOffset: 4, windowAddr: f.addr + 4n, endbr64Kept: true, cover: 6 });
    expect(hex(r.patch)).toBe(hex(x86Write(core, WriteOp.JmpRel32, f.addr + 4n, f.addr + 0x100000n)));
  });

  it("BRANCH_INTO_PATCH_SITE: a loop head 2 bytes in; a loop back to the entry is harmless", () => {
    const f = asm.syms.get("loop_head")!;
    const r = check(asm, "loop_head");
    expect(r.status).toBe(X86Err.BranchIntoPatchSite);
    expect(r.culpritTarget).toBe(f.addr + 2n);
    expect(r.culprit).toBe(f.addr + 6n); // the jnz after add and dec
    expect(r.message).toMatch(/the branch at 0x[0-9a-f]+ goes to 0x[0-9a-f]+, inside the window/);
    expect(check(asm, "loop_entry").status).toBe(0);
  });

  it("TOO_SHORT unless proven padding follows up to the next symbol", () => {
    const r = check(asm, "tiny_nops");
    expect(r).toMatchObject({ status: 0, padding: 2, windowLength: 5 });
    const unknown = check(asm, "tiny_nops", { next: false });
    expect(unknown.status).toBe(X86Err.TooShort);
    expect(unknown.message).toMatch(/next symbol is not known/);
    const data = check(asm, "tiny_data");
    expect(data.status).toBe(X86Err.TooShort);
    expect(data.message).toMatch(/are not padding/);
    expect(check(asm, "last", { next: false }).status).toBe(X86Err.TooShort);
  });

  it("a jump table entry 2 bytes in: found through the table's reference, or given from the relocations", () => {
    const f = asm.syms.get("table_head")!;
    expect(check(asm, "table_head").status).toBe(0); // without the data, the table is unseen
    const r = check(asm, "table_head", { data: true });
    expect(r.status).toBe(X86Err.BranchIntoPatchSite);
    expect(r.tableTargets).toBe(4);
    expect(r.culpritTarget).toBe(f.addr + 2n);
    expect(r.message).toMatch(/the jump table at 0x[0-9a-f]+ \(entry 0/);
    expect(r.indirect).toBe(1);
    const obj = join(dir, "entry.o");
    execFileSync("gcc", ["-c", "-o", obj, "test/fixtures/x86-entry.S"]);
    const fromRelocs = relocationTargets(obj, asm, "table_head");
    expect(fromRelocs.length).toBe(4);
    const text = section(asm, ".text");
    const ro = section(asm, ".rodata");
    expect(jumpTables(core, text.bytes, text.addr, f.addr, f.addr + f.size, ro.bytes, ro.addr)).toEqual(fromRelocs);
    const viaList = check(asm, "table_head", { targets: fromRelocs });
    expect(viaList.status).toBe(X86Err.BranchIntoPatchSite);
    expect(viaList.message).toMatch(/target 0 of the list given/);
  });

  it("a .cold piece jumping back into the window", () => {
    expect(check(asm, "hot").status).toBe(0);
    const r = check(asm, "hot", { ranges: ["hot.cold"] });
    expect(r.status).toBe(X86Err.BranchIntoPatchSite);
    expect(r.culpritTarget).toBe(asm.syms.get("hot")!.addr + 2n);
    expect(r.message).toMatch(/^range 0 .*the branch at/);
  });

  it("overlapping and falling-through symbols", () => {
    const straddle = check(asm, "inside", { ranges: ["straddle"] });
    expect(straddle.status).toBe(X86Err.BranchIntoPatchSite);
    expect(straddle.message).toMatch(/straddles the window start/);
    expect(check(asm, "inside").status).toBe(0);
    expect(check(asm, "fallen", { ranges: ["falls_in"] }).status).toBe(0); // falls in at the entry
    const alt = asm.syms.get("outer_alt")!;
    const asRange = check(asm, "outer", { ranges: ["outer_alt"] });
    expect(asRange.status).toBe(X86Err.BranchIntoPatchSite);
    expect(asRange.message).toMatch(/starts at .*inside the window/);
    expect(check(asm, "outer", { targets: [alt.addr] }).status).toBe(X86Err.BranchIntoPatchSite);
  });

  it("an address taken inside the window (lea), and code that cannot be decoded", () => {
    const r = check(asm, "addr_taken");
    expect(r.status).toBe(X86Err.BranchIntoPatchSite);
    expect(r.message).toMatch(/the lea at .* takes the address/);
    const u = check(asm, "ambiguous");
    expect(u.status).toBe(X86Err.Undecodable);
    expect(u.message).toMatch(/ambiguous/);
  });

  it("rejects a function or range outside the code given", () => {
    const text = section(asm, ".text");
    expect(() => entryCheck(core, { code: text.bytes, codeAddr: text.addr, fnStart: text.addr - 16n, fnSize: 8n, dest: 0n })).toThrow(/not inside the code given/);
    const f = asm.syms.get("plain")!;
    expect(() => entryCheck(core, { code: text.bytes, codeAddr: text.addr, fnStart: f.addr, fnSize: f.size, dest: 0n, ranges: [[0n, 8n]] })).toThrow(/range 0/);
  });
});

describe("x86 entry check: gcc code", () => {
  const C = `
int try_inc(int *p) {
  int v = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v >= 0)
    if (__atomic_compare_exchange_n(p, &v, v + 1, 1, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return 0;
  return -1;
}
int f0(int), f1(int), f2(int), f3(int), f4(int), f5(int), f6(int), f7(int);
int sw(int k, int x) {
  switch (k) {
  case 0: return f0(x); case 1: return f1(x + 1); case 2: return f2(x + 2); case 3: return f3(x * 3);
  case 4: return f4(x - 4); case 5: return f5(x ^ 5); case 6: return f6(x | 6); case 7: return f7(x & 7);
  default: return -1;
  }
}
`;
  it("a retry loop 2 bytes in (gcc -O2), and switch tables PIC and absolute against the relocations", async () => {
    const { writeFileSync } = await import("node:fs");
    const src = join(dir, "sw.c");
    writeFileSync(src, C);
    const so = build("sw.so", src, ["-O2", "-fPIC", "-shared"]);
    const r = check(so, "try_inc");
    expect(r.status).toBe(X86Err.BranchIntoPatchSite);
    for (const [flags, name, objFlags] of [
      [["-O2", "-fPIC", "-shared"], "sw-pic.so", ["-O2", "-fPIC", "-c"]],
      [["-O2", "-fno-pic", "-no-pie", "-nostartfiles", "-Wl,-e,sw"], "sw-abs", ["-O2", "-fno-pic", "-c"]],
    ] as const) {
      const b = build(name, src, [...flags]);
      const obj = join(dir, `${name}.o`);
      execFileSync("gcc", [...objFlags, "-o", obj, src]);
      const expected = relocationTargets(obj, b, "sw");
      expect(expected.length).toBe(8);
      const f = b.syms.get("sw")!;
      const text = section(b, ".text");
      const ro = section(b, ".rodata");
      expect(jumpTables(core, text.bytes, text.addr, f.addr, f.addr + f.size, ro.bytes, ro.addr)).toEqual(expected);
      expect(check(b, "sw", { data: true })).toMatchObject({ status: 0, tableTargets: 8, indirect: 1 });
    }
  });
});

describe("x86 entry check over libc.so.6", () => {
  it("every function: accepted windows are entered by no direct branch of the whole library", () => {
    const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";
    const x86 = new X86(core);
    const bytes = readFile(LIBC);
    const sections = readSections(LIBC);
    const text = sections.find((s) => s.name === ".text")!;
    const ro = sections.find((s) => s.name === ".rodata")!;
    const rodata = bytes.subarray(ro.offset, ro.offset + ro.size);
    const code = bytes.subarray(text.offset, text.offset + text.size);
    const fns = readFunctions(LIBC).filter((f) => f.addr >= text.addr && f.addr + f.size <= text.addr + text.size);
    const L = runObjdump(LIBC);
    // objdump's direct branches, all of libc: target -> sources
    const into = new Map<number, number[]>();
    L.branch.forEach((t, i) => {
      if (t >= 0) into.set(t, [...(into.get(t) ?? []), L.addr[i]]);
    });
    // our own module-wide sweep finds the same targets
    const pieces = objdumpPieces(sections, L).filter((p) => p.addr >= text.addr && p.addr < text.addr + text.size);
    const ours = branchTargets(x86, code, BigInt(text.addr), pieces.map((p) => [BigInt(p.addr), BigInt(p.addr + p.size)]));
    const inText = (a: number) => a >= text.addr && a < text.addr + text.size;
    const theirs = [...new Set(L.branch.filter((t, i) => t >= 0 && inText(L.addr[i])))].sort((a, b) => a - b);
    expect(ours.length).toBe(theirs.length);
    expect([...ours].map(Number)).toEqual(theirs);

    const starts = [...L.symbolStarts].sort((a, b) => a - b);
    const counts: Record<number, number> = {};
    const wrong: string[] = [];
    let lo = 0;
    for (const f of fns) {
      const next = starts.find((a) => a > f.addr) ?? text.addr + text.size;
      // neighbours: overlapping symbols, and the functions just before and after
      while (lo < fns.length && fns[lo].addr + fns[lo].size <= f.addr - 4096) lo++;
      const near: Array<[bigint, bigint]> = [];
      for (let k = lo; k < fns.length && fns[k].addr < f.addr + f.size + 4096; k++) {
        const g = fns[k];
        if (g !== f) near.push([BigInt(g.addr), BigInt(g.addr + g.size)]);
      }
      // module-wide targets in the first bytes, and other symbols' entries there
      const targets: bigint[] = [];
      for (let i = bisect(ours, BigInt(f.addr)); i < ours.length && ours[i] < BigInt(f.addr + 16); i++) targets.push(ours[i]);
      for (const s of starts) if (s > f.addr && s < f.addr + 16) targets.push(BigInt(s));
      const r = entryCheck(core, {
        code, codeAddr: BigInt(text.addr), fnStart: BigInt(f.addr), fnSize: BigInt(f.size), dest: BigInt(f.addr) + 0x10000000n,
        nextSymbol: BigInt(next), ranges: near, targets, data: rodata, dataAddr: BigInt(ro.addr),
      });
      counts[r.status] = (counts[r.status] ?? 0) + 1;
      if (r.status === 0) {
        const s = Number(r.windowAddr);
        for (let a = s + 1; a < s + r.windowLength; a++) if (into.has(a)) wrong.push(`${f.name}: accepted, but ${into.get(a)!.map((x) => x.toString(16))} branch to ${a.toString(16)}`);
      } else if (r.status === X86Err.BranchIntoPatchSite && r.culprit !== 0n && r.message.includes("the branch at")) {
        const i = L.at.get(Number(r.culprit));
        if (i === undefined || L.branch[i] !== Number(r.culpritTarget)) wrong.push(`${f.name}: refused for a branch objdump does not see: ${r.message}`);
      } else if (r.status !== X86Err.TooShort && r.status !== X86Err.BranchIntoPatchSite) {
        wrong.push(`${f.name}: ${r.status} ${r.message}`);
      }
    }
    console.log(`entry check over libc: ${fns.length} functions, outcomes ${JSON.stringify(counts)}`);
    expect(wrong).toEqual([]);
    expect(counts[0]).toBeGreaterThan(fns.length * 0.9);
    expect(counts[X86Err.BranchIntoPatchSite]).toBeGreaterThan(0);
  });
});

function bisect(xs: BigUint64Array, v: bigint): number {
  let a = 0;
  let b = xs.length;
  while (a < b) {
    const m = (a + b) >> 1;
    if (xs[m] < v) a = m + 1;
    else b = m;
  }
  return a;
}
