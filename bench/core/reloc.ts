// bench/core section "reloc": relocating a large object with the Wasm core beside the same
// algorithm and data layout in C (bench/core/reloc.c, gcc -O2, built here).
//
// The object: a generated C file (N functions, each a switch with a jump table, calls to
// other functions and to externals, global and static data, string literals, a function
// pointer table) compiled with gcc -O2 -fPIE -ffunction-sections -fdata-sections, so it has
// thousands of sections and tens of thousands of relocations, and far calls to stub.
//
// Timed in both implementations: scan (reloc_open), binding every undefined symbol (those
// only called: far, > 2 GiB away, so their calls go through stubs; the others near), plan,
// paged layout, apply into a window. ELF validation (elf_open) and the C program's mmap
// are not part of it. Interleaved, as bench/core/elf.ts: each round runs the C program
// (10 warm-up runs, then the median of RUNS) and then the same in Wasm, so both sides of a
// ratio see the same load on this shared machine. Reported: median times, and the median
// of the per-round ratios. Both write the same window: the FNV-1a of their windows must
// agree, or the row says so.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nodeCore } from "../../src/node/core-file.js";
import { ElfReader } from "../../src/core/elf.js";
import { timeMs, type Row } from "../table.js";

const FUNCTIONS = 3000;
const EXTERNS = 200;
const RUNS = 11;
const ROUNDS = 7;
const BASE = 0x555555554000n;
const FAR = 0x7f0000000000n;
const NEAR = BASE + 0x40000000n;
const REF_CALL = 2;

interface Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  reloc_open(elf: number): number;
  reloc_close(h: number): number;
  reloc_info(h: number, out: number): number;
  reloc_refs(h: number, first: number, count: number, out: number): number;
  reloc_bind_addr(h: number, sym: number, addr: bigint): number;
  reloc_plan(h: number, out: number): number;
  reloc_layout(h: number, base: bigint, flags: number): bigint;
  reloc_apply(h: number, out: number, len: number, base: bigint, flags: number): number;
}

function generate(): string {
  const L: string[] = ["#include <stdio.h>", "#include <string.h>"];
  for (let k = 0; k < EXTERNS; k++) L.push(`extern int e_var${k}; extern int e_fn${k}(int);`);
  for (let i = 0; i < FUNCTIONS; i++) L.push(`int f${i}(int); static int s${i}[4] = {${i}, ${i + 1}, ${i + 2}, ${i + 3}}; int g${i} = ${i};`);
  L.push(`int (*const fp_tab[])(int) = {${Array.from({ length: 64 }, (_, i) => `f${(i * 37) % FUNCTIONS}`).join(", ")}};`);
  for (let i = 0; i < FUNCTIONS; i++) {
    const a = (i * 7 + 1) % FUNCTIONS;
    const b = (i * 13 + 5) % FUNCTIONS;
    const k1 = (i * 3) % EXTERNS;
    const k2 = (i * 11) % EXTERNS;
    L.push(`static const char *str${i} = "function ${i} says hello";
__attribute__((noinline)) static int h${i}(int x) { return s${i}[x & 3] * x + g${b}; }
__attribute__((noinline)) int f${i}(int x) {
  switch (x & 7) {
  case 0: return f${a}(x + 1) + e_fn${k1}(x);
  case 1: return s${i}[x & 3] + e_var${k2};
  case 2: return (int)strlen(str${i}) + g${b};
  case 3: return fp_tab[(x + ${i}) & 63](x - 1);
  case 4: return h${i}(x) + ${i};
  case 5: return printf("f${i} %d\\n", x);
  case 6: return g${i} * 3 + x + e_fn${k2}(x);
  default: return x ^ ${i * 2654435761 % 1000003};
  }
}`);
  }
  return L.join("\n") + "\n";
}

function fnv(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

export async function run(): Promise<Row[]> {
  const dir = join("build", "bench");
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, "reloc-c");
  execFileSync("gcc", ["-O2", "-o", exe, join("bench", "core", "reloc.c")], { stdio: "inherit" });
  const src = join(dir, "reloc-big.c");
  const obj = join(dir, "reloc-big.o");
  // The object takes a while to build on a loaded machine: kept in build/bench while its source is the same.
  const text = generate();
  const same = existsSync(src) && existsSync(obj) && readFileSync(src, "utf8") === text;
  if (!same) {
    writeFileSync(src, text);
    execFileSync("gcc", ["-O2", "-c", "-fPIE", "-ffunction-sections", "-fdata-sections", "-o", obj, src], { stdio: "inherit" });
  }

  type Native = { ms: number; size: number; relocations: number; fnv: string };
  const runNative = () => JSON.parse(execFileSync(exe, [obj, String(RUNS)], { encoding: "utf8" })) as Native;

  const core = nodeCore();
  const x = core.exports as unknown as Exports;
  const elf = new ElfReader(core, readFileSync(obj), obj);
  const info = x.alloc(64);
  const plan = x.alloc(64);
  let refs = x.alloc(32);
  let refCap = 1;
  let window = 0;
  let size = 0;
  let relocations = 0;
  const once = () => {
    const h = x.reloc_open(elf.handle);
    if (!h) throw core.lastError(obj);
    x.reloc_info(h, info);
    const n = new DataView(x.memory.buffer).getUint32(info + 32, true); // those without a section come first
    relocations = new DataView(x.memory.buffer).getUint32(info, true);
    if (n > refCap) {
      x.free(refs);
      refs = x.alloc(32 * n);
      refCap = n;
    }
    x.reloc_refs(h, 0, n, refs);
    const v = new DataView(x.memory.buffer);
    for (let k = 0; k < n; k++) {
      const o = refs + 32 * k;
      const flags = v.getUint16(o + 22, true);
      if ((flags & 1) === 0 || (flags & (4 | 8)) !== 0) continue; // defined, TLS, _GLOBAL_OFFSET_TABLE_
      const sym = v.getUint32(o, true);
      const kinds = v.getUint32(o + 4, true);
      if (x.reloc_bind_addr(h, sym, (kinds === REF_CALL ? FAR : NEAR) + BigInt(sym) * 16n) !== 0) throw core.lastError(obj);
    }
    if (x.reloc_plan(h, plan) !== 0) throw core.lastError(obj);
    const sz = x.reloc_layout(h, BASE, 1);
    if (sz < 0n) throw core.lastError(obj);
    if (!window) {
      size = Number(sz);
      window = x.alloc(size);
      new Uint8Array(x.memory.buffer).fill(0, window, window + size);
    }
    if (x.reloc_apply(h, window, size, BASE, 0) !== 0) throw core.lastError(obj);
    x.reloc_close(h);
  };
  const rounds: Array<{ c: Native; w: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    const c = runNative();
    for (let i = 0; i < 10; i++) once();
    rounds.push({ c, w: timeMs(once, RUNS) });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const native = rounds[0].c;
  const ms = median(rounds.map((r) => r.w));
  const nativeMs = median(rounds.map((r) => r.c.ms));
  const ratio = median(rounds.map((r) => r.w / r.c.ms));
  const hash = fnv(new Uint8Array(x.memory.buffer, window, size));
  for (const p of [info, plan, refs, window]) x.free(p);
  elf.close();

  const input = `generated gcc -O2 -fPIE object, ${FUNCTIONS} functions (${(readFileSync(obj).length / 1e6).toFixed(1)} MB, ${relocations} relocations, ${(size / 1e6).toFixed(1)} MB image)`;
  const notes: string[] = [];
  if (hash !== native.fnv || size !== native.size) notes.push(`OUTPUTS DIFFER (wasm ${hash}/${size}, C ${native.fnv}/${native.size})`);
  else notes.push("same image bytes");
  if (relocations !== native.relocations) notes.push(`RELOCATION COUNTS DIFFER (C ${native.relocations})`);
  return [{ what: "relocate a large object", input, wasm: `${ms.toFixed(2)} ms`, native: `${nativeMs.toFixed(2)} ms`, ratio, note: notes.join("; ") }];
}
