// bench/core section "symbols": the symbol index of the Wasm core beside the same
// algorithm and data layout in C (bench/core/symbols.c, gcc -O2, built here), on
// libc.so.6 (.dynsym: it has no .symtab) and the node executable (.symtab).
//
// Timed in both implementations (see "Interleaved" below for how):
//   - building the index from the open ELF file (names, file groups and sympos,
//     .cold/.part roots, the sorted address table); ELF validation (elf_open) is not
//     part of it, nor the C program's mmap
//   - 100k lookups by name (names of the table, drawn with a fixed seed), in one
//     sym_find_many call (so no per-lookup JS<->Wasm call is timed)
//   - 100k lookups by address (a random function, a random offset inside it), in one
//     sym_at_many call
// Both sides answer the same queries; the sums of their answers must agree, or the
// row says so. Times are CPU times (see once()), in rounds that alternate C and Wasm.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeCore } from "../../src/node/core-file.js";
import { ElfReader, SymbolTableKind, type ElfSymbol } from "../../src/core/elf.js";
import { type Row } from "../table.js";

const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";
const N = 100_000;

interface Native {
  build_ms: number;
  find_ms: number;
  at_ms: number;
  symbols: number;
  functions: number;
  sum_find: number;
  sum_at: number;
}

interface Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  sym_index_new(elf: number, table: number): number;
  sym_index_close(h: number): number;
  sym_index_info(h: number, out: number): number;
  sym_find_many(h: number, names: number, count: number, out: number): number;
  sym_at_many(h: number, addrs: number, count: number, shndx: number, out: number): number;
}

/** xorshift32: the same queries on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function compileNative(): string {
  const dir = join("build", "bench");
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, "symbols-c");
  execFileSync("gcc", ["-O2", "-o", exe, join("bench", "core", "symbols.c")], { stdio: "inherit" });
  return exe;
}

const ROUNDS = 11;

/**
 * CPU time (user + system) of one call, in ms. Not wall time: on this shared 2-core
 * machine a run that is preempted would count other processes' time. The C program
 * measures CLOCK_PROCESS_CPUTIME_ID likewise. (Other processes still share the caches.)
 */
function warm(fn: () => void): number {
  fn();
  return once(fn);
}

function once(fn: () => void): number {
  const s = process.cpuUsage();
  fn();
  const d = process.cpuUsage(s);
  return (d.user + d.system) / 1e3;
}

function sum(ids: Int32Array): number {
  let s = 0;
  for (const id of ids) s += id + 1;
  return s;
}

function benchFile(exe: string, path: string, label: string, hot: boolean): Row[] {
  const core = nodeCore();
  const x = core.exports as unknown as Exports;
  const elf = new ElfReader(core, readFileSync(path), path);
  const table = elf.info.hasSymtab ? SymbolTableKind.SYMTAB : SymbolTableKind.DYNSYM;
  const tableName = table === SymbolTableKind.SYMTAB ? ".symtab" : ".dynsym";
  const syms = elf.symbols(table);

  // Queries: names of hashed symbols; addresses inside sized functions. "random" draws
  // from the whole table (lookups then wait on memory: a 100 MB executable's index and
  // strings do not fit in the caches); "hot" from 64 of them (everything cached: the
  // cost of the code itself).
  const rand = rng(0x5eed);
  const named = syms.filter((s) => s.name.length > 0 && s.type !== 3 && s.type !== 4);
  const funcs = syms.filter((s) => (s.type === 2 || s.type === 10) && s.shndx !== 0 && s.shndx < 0xff00 && s.size > 0n);
  const pick = <T>(a: T[]) => a[Math.floor(rand() * a.length)];
  const hotNamed = Array.from({ length: 64 }, () => pick(named));
  const hotFuncs = Array.from({ length: 64 }, () => pick(funcs));
  const sets = [querySet(x, "random", named, funcs, rand), ...(hot ? [querySet(x, "hot", hotNamed, hotFuncs, rand)] : [])];

  // The Wasm side: warm-up (V8 moves hot Wasm functions to its optimizing tier).
  const h = x.sym_index_new(elf.handle, table);
  if (!h) throw core.lastError(path);
  const build = () => {
    const k = x.sym_index_new(elf.handle, table);
    if (!k) throw core.lastError(path);
    x.sym_index_close(k);
  };
  for (let i = 0; i < 10; i++) {
    build();
    for (const q of sets) {
      x.sym_find_many(h, q.entries, N, q.out);
      x.sym_at_many(h, q.addrs, N, 0, q.out);
    }
  }

  // Interleaved: each round runs the C program on each query set (one timed run of each
  // operation after an untimed one) and then the same operations in Wasm (likewise), so that both
  // sides of a ratio see the same load on this shared machine. Reported: median times,
  // and the median of the per-round ratios.
  type Times = { build: number; find: number; at: number };
  const rounds: Array<Array<{ c: Native; w: Times }>> = [];
  for (let r = 0; r < ROUNDS; r++) {
    rounds.push(
      sets.map((q) => {
        const c = JSON.parse(execFileSync(exe, [path, String(table), q.path, "1"], { encoding: "utf8" })) as Native;
        // Like the C program: one untimed run (caches warm again after the C process), one timed.
        return { c, w: { build: warm(build), find: warm(() => x.sym_find_many(h, q.entries, N, q.out)), at: warm(() => x.sym_at_many(h, q.addrs, N, 0, q.out)) } };
      }),
    );
  }
  // The answers must be the same on both sides.
  const sums = sets.map((q) => {
    x.sym_find_many(h, q.entries, N, q.out);
    const f = sum(new Int32Array(x.memory.buffer.slice(q.out, q.out + 4 * N)));
    x.sym_at_many(h, q.addrs, N, 0, q.out);
    return { find: f, at: sum(new Int32Array(x.memory.buffer.slice(q.out, q.out + 4 * N))) };
  });
  const info = x.alloc(32);
  x.sym_index_info(h, info);
  const iv = new DataView(x.memory.buffer);
  const nsym = iv.getUint32(info, true);
  const nfun = iv.getUint32(info + 8, true);
  x.free(info);
  for (const q of sets) q.free();
  x.sym_index_close(h);
  elf.close();

  const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
  const ms = (t: number) => `${t.toFixed(2)} ms`;
  const input = `${label} ${tableName} (${nsym} symbols, ${nfun} functions)`;
  const row = (what: string, s: number, k: keyof Times, note: string): Row => ({
    what,
    input,
    wasm: ms(med(rounds.map((r) => r[s].w[k]))),
    native: ms(med(rounds.map((r) => r[s].c[`${k}_ms`]))),
    ratio: med(rounds.map((r) => r[s].w[k] / r[s].c[`${k}_ms`])),
    note,
  });
  const native = rounds[0][0].c;
  const agree = (a: number, b: number) => (a === b ? "" : `ANSWERS DIFFER (wasm ${a}, C ${b})`);
  const rows: Row[] = [
    row("build symbol index", 0, "build", nsym === native.symbols && nfun === native.functions ? "" : `COUNTS DIFFER (C ${native.symbols}/${native.functions})`),
  ];
  sets.forEach((q, s) => {
    const c = rounds[0][s].c;
    const tag = q.label === "hot" ? " (64 distinct, cached)" : "";
    rows.push(row(`100k lookups by name${tag}`, s, "find", agree(sums[s].find, c.sum_find)));
    rows.push(row(`100k lookups by address${tag}`, s, "at", agree(sums[s].at, c.sum_at)));
  });
  return rows;
}

interface QuerySet {
  label: string;
  path: string; // the queries for the C program
  entries: number; // Wasm: N (ptr, len) name entries
  addrs: number; // Wasm: N u64 addresses
  out: number;
  free(): void;
}

/** N names and N addresses drawn from `named` and `funcs`, for both sides. */
function querySet(x: Exports, label: string, named: ElfSymbol[], funcs: ElfSymbol[], rand: () => number): QuerySet {
  const enc = new TextEncoder();
  const names: Uint8Array[] = [];
  for (let i = 0; i < N; i++) names.push(enc.encode(named[Math.floor(rand() * named.length)].name));
  const addrs = new BigUint64Array(N);
  for (let i = 0; i < N; i++) {
    const f = funcs[Math.floor(rand() * funcs.length)];
    addrs[i] = f.value + BigInt(Math.floor(rand() * Number(f.size)));
  }
  // For the C program: u32 nNames, u32 nAddrs, nNames x (u32 len, bytes), nAddrs x u64.
  const total = names.reduce((a, b) => a + 4 + b.length, 8) + 8 * N;
  const file = new Uint8Array(total);
  const dv = new DataView(file.buffer);
  dv.setUint32(0, N, true);
  dv.setUint32(4, N, true);
  let o = 8;
  for (const n of names) {
    dv.setUint32(o, n.length, true);
    file.set(n, o + 4);
    o += 4 + n.length;
  }
  for (let i = 0; i < N; i++, o += 8) dv.setBigUint64(o, addrs[i], true);
  const path = join(tmpdir(), `patchc-bench-symbols-${process.pid}-${label}.bin`);
  writeFileSync(path, file);
  // For the Wasm core: the names in one blob, an entry table, the addresses.
  const blob = x.alloc(total);
  const entries = x.alloc(8 * N);
  const addrBuf = x.alloc(8 * N);
  const out = x.alloc(4 * N);
  const mem = new Uint8Array(x.memory.buffer);
  const v = new DataView(x.memory.buffer);
  let at = blob;
  names.forEach((n, i) => {
    mem.set(n, at);
    v.setUint32(entries + 8 * i, at, true);
    v.setUint32(entries + 8 * i + 4, n.length, true);
    at += n.length;
  });
  new BigUint64Array(x.memory.buffer, addrBuf, N).set(addrs);
  return {
    label,
    path,
    entries,
    addrs: addrBuf,
    out,
    free() {
      for (const p of [blob, entries, addrBuf, out]) x.free(p);
      unlinkSync(path);
    },
  };
}

export async function run(): Promise<Row[]> {
  const exe = compileNative();
  return [...benchFile(exe, LIBC, "libc.so.6", false), ...benchFile(exe, process.execPath, "node", true)];
}
