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
// row says so.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeCore } from "../../src/node/core-file.js";
import { ElfReader, SymbolTableKind } from "../../src/core/elf.js";
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

/** Wall time of one call, in ms. */
function once(fn: () => void): number {
  const s = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - s) / 1e6;
}

function sum(ids: Int32Array): number {
  let s = 0;
  for (const id of ids) s += id + 1;
  return s;
}

function benchFile(exe: string, path: string, label: string): Row[] {
  const core = nodeCore();
  const x = core.exports as unknown as Exports;
  const elf = new ElfReader(core, readFileSync(path), path);
  const table = elf.info.hasSymtab ? SymbolTableKind.SYMTAB : SymbolTableKind.DYNSYM;
  const tableName = table === SymbolTableKind.SYMTAB ? ".symtab" : ".dynsym";
  const syms = elf.symbols(table);

  // Queries: names of hashed symbols; addresses inside sized functions.
  const rand = rng(0x5eed);
  const named = syms.filter((s) => s.name.length > 0 && s.type !== 3 && s.type !== 4);
  const funcs = syms.filter((s) => (s.type === 2 || s.type === 10) && s.shndx !== 0 && s.shndx < 0xff00 && s.size > 0n);
  const names: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < N; i++) names.push(enc.encode(named[Math.floor(rand() * named.length)].name));
  const addrs = new BigUint64Array(N);
  for (let i = 0; i < N; i++) {
    const f = funcs[Math.floor(rand() * funcs.length)];
    addrs[i] = f.value + BigInt(Math.floor(rand() * Number(f.size)));
  }

  // The same queries for the C program.
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
  const qpath = join(tmpdir(), `patchc-bench-symbols-${process.pid}.bin`);
  writeFileSync(qpath, file);

  // The Wasm side: buffers, and warm-up (V8 moves hot Wasm functions to its optimizing tier).
  const h = x.sym_index_new(elf.handle, table);
  if (!h) throw core.lastError(path);
  const blob = x.alloc(total);
  const entries = x.alloc(8 * N);
  const out = x.alloc(4 * N);
  const addrBuf = x.alloc(8 * N);
  {
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
  }
  const build = () => {
    const k = x.sym_index_new(elf.handle, table);
    if (!k) throw core.lastError(path);
    x.sym_index_close(k);
  };
  const find = () => x.sym_find_many(h, entries, N, out);
  const at = () => x.sym_at_many(h, addrBuf, N, 0, out);
  for (let i = 0; i < 10; i++) {
    build();
    find();
    at();
  }
  find();
  const sumFind = sum(new Int32Array(x.memory.buffer.slice(out, out + 4 * N)));
  at();
  const sumAt = sum(new Int32Array(x.memory.buffer.slice(out, out + 4 * N)));

  // Interleaved: each round runs the C program (one timed run of each operation after
  // its own warm-up) and then the same operations in Wasm, so that both sides of a
  // ratio see the same load on this shared machine. Reported: median times, and the
  // median of the per-round ratios.
  const rounds: Array<{ c: Native; w: [number, number, number] }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c = JSON.parse(execFileSync(exe, [path, String(table), qpath, "1"], { encoding: "utf8" })) as Native;
    rounds.push({ c, w: [once(build), once(find), once(at)] });
  }
  const native = rounds[0].c;
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
  const cMs = (k: "build_ms" | "find_ms" | "at_ms") => med(rounds.map((r) => r.c[k]));
  const wMs = (i: number) => med(rounds.map((r) => r.w[i]));
  const ratio = (k: "build_ms" | "find_ms" | "at_ms", i: number) => med(rounds.map((r) => r.w[i] / r.c[k]));
  const info = x.alloc(32);
  x.sym_index_info(h, info);
  const iv = new DataView(x.memory.buffer);
  const nsym = iv.getUint32(info, true);
  const nfun = iv.getUint32(info + 8, true);
  for (const p of [blob, entries, out, addrBuf, info]) x.free(p);
  x.sym_index_close(h);
  elf.close();
  unlinkSync(qpath);

  const agree = (a: number, b: number) => (a === b ? "" : ` ANSWERS DIFFER (wasm ${a}, C ${b})`);
  const input = `${label} ${tableName} (${nsym} symbols, ${nfun} functions)`;
  const ms = (t: number) => `${t.toFixed(2)} ms`;
  return [
    {
      what: "build symbol index",
      input,
      wasm: ms(wMs(0)),
      native: ms(cMs("build_ms")),
      ratio: ratio("build_ms", 0),
      note: nsym === native.symbols && nfun === native.functions ? "" : `COUNTS DIFFER (C ${native.symbols}/${native.functions})`,
    },
    { what: "100k lookups by name", input, wasm: ms(wMs(1)), native: ms(cMs("find_ms")), ratio: ratio("find_ms", 1), note: agree(sumFind, native.sum_find) },
    { what: "100k lookups by address", input, wasm: ms(wMs(2)), native: ms(cMs("at_ms")), ratio: ratio("at_ms", 2), note: agree(sumAt, native.sum_at) },
  ];
}

export async function run(): Promise<Row[]> {
  const exe = compileNative();
  return [...benchFile(exe, LIBC, "libc.so.6"), ...benchFile(exe, process.execPath, "node")];
}
