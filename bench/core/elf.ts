// bench/core section "elf": the ELF reader of the Wasm core beside the same validation
// algorithm and data layout in C (bench/core/elf.c, gcc -O2, built here), on libc.so.6
// and the node executable (process.execPath).
//
// Timed in both implementations, the input already in memory:
//   - opening the file: elf_open + elf_close, i.e. validating every header, table, name,
//     symbol, version and relocation symbol index (elf.c mirrors assembly/elf/file.ts)
//   - reading every symbol of .symtab and .dynsym through elf_symbols (48-byte records
//     with names and versions), 4096 records per call
// Interleaved: each round runs the C program (a warm-up, then RUNS timed runs, medians)
// and then the same operations in Wasm, so both sides of a ratio see the same load on
// this shared machine. Reported: median times, and the median of the per-round ratios.
// Counts and a checksum of the symbol records must agree, or the row says so.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { nodeCore } from "../../src/node/core-file.js";
import { type Row } from "../table.js";

const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";
const ROUNDS = 9;
const RUNS = 5;
const CHUNK = 4096;

interface Native {
  open_ms: number;
  symbols_ms: number;
  sections: number;
  segments: number;
  symtab: number;
  dynsym: number;
  relas: number;
  versions: number;
  dynamic: number;
  build_id_len: number;
  records: number;
  sum: string;
  error?: number;
}

interface Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  elf_open(ptr: number, len: number): number;
  elf_close(h: number): number;
  elf_info(h: number, out: number): number;
  elf_symbols(h: number, table: number, first: number, count: number, out: number): number;
}

function compileNative(): string {
  const dir = join("build", "bench");
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, "elf-c");
  execFileSync("gcc", ["-O2", "-o", exe, join("bench", "core", "elf.c")], { stdio: "inherit" });
  return exe;
}

function median(a: number[]): number {
  return [...a].sort((p, q) => p - q)[a.length >> 1];
}

function timed(fn: () => void): number {
  const s = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - s) / 1e6;
}

function benchFile(exe: string, path: string, label: string): Row[] {
  const core = nodeCore();
  const x = core.exports as unknown as Exports;
  const data = readFileSync(path);
  const ptr = core.copyIn(data);
  const out = x.alloc(CHUNK * 48);
  const info = x.alloc(96);

  const open = () => {
    const h = x.elf_open(ptr, data.length);
    if (!h) throw core.lastError(path);
    x.elf_close(h);
  };
  const h = x.elf_open(ptr, data.length);
  if (!h) throw core.lastError(path);
  x.elf_info(h, info);
  let v = new DataView(x.memory.buffer);
  const counts = {
    sections: v.getUint32(info + 16, true),
    segments: v.getUint32(info + 20, true),
    symtab: v.getUint32(info + 24, true),
    dynsym: v.getUint32(info + 28, true),
    relas: v.getUint32(info + 32, true),
    versions: v.getUint32(info + 36, true),
    dynamic: v.getUint32(info + 40, true),
    build_id_len: v.getUint32(info + 44, true),
  };
  const flags = v.getUint32(info + 52, true);
  const tables = [flags & 2 ? counts.symtab : -1, flags & 4 ? counts.dynsym : -1];
  let sum = 0n;
  let records = 0;
  const readSymbols = (check: boolean) => {
    for (let t = 0; t < 2; t++) {
      const n = tables[t];
      for (let first = 0; first < n; first += CHUNK) {
        const c = Math.min(CHUNK, n - first);
        if (x.elf_symbols(h, t, first, c, out) !== c) throw core.lastError(path);
        if (!check) continue;
        v = new DataView(x.memory.buffer);
        for (let i = 0; i < c; i++) {
          const o = out + i * 48;
          sum +=
            BigInt(v.getUint32(o + 4, true)) + v.getBigUint64(o + 8, true) + v.getBigUint64(o + 16, true) +
            BigInt(v.getUint8(o + 24) + v.getUint8(o + 25) + v.getUint16(o + 26, true) + v.getUint32(o + 28, true) + v.getUint32(o + 36, true) + v.getUint32(o + 44, true));
        }
        records += c;
      }
    }
  };
  readSymbols(true);
  sum = BigInt.asUintN(64, sum);
  // Warm-up: V8 tiers hot Wasm functions up.
  for (let i = 0; i < 5; i++) {
    open();
    readSymbols(false);
  }

  const rounds: Array<{ c: Native; w: [number, number] }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c = JSON.parse(execFileSync(exe, [path, String(RUNS)], { encoding: "utf8" })) as Native;
    if (c.error) throw new Error(`bench/core/elf.c: ${path}: error ${c.error}`);
    const wo: number[] = [];
    const ws: number[] = [];
    for (let i = 0; i < RUNS; i++) wo.push(timed(open));
    for (let i = 0; i < RUNS; i++) ws.push(timed(() => readSymbols(false)));
    rounds.push({ c, w: [median(wo), median(ws)] });
  }
  x.elf_close(h);
  for (const p of [ptr, out, info]) x.free(p);

  const c = rounds[0].c;
  const differ: string[] = [];
  for (const k of Object.keys(counts) as Array<keyof typeof counts>) if (counts[k] !== c[k]) differ.push(`${k} wasm ${counts[k]} C ${c[k]}`);
  const symNote = records !== c.records || sum.toString() !== c.sum ? `RECORDS DIFFER (wasm ${records}/${sum}, C ${c.records}/${c.sum})` : "";
  const ms = (t: number) => `${t.toFixed(2)} ms`;
  const input = `${label} (${(data.length / 1048576).toFixed(1)} MiB, ${counts.sections} sections, ${counts.symtab} .symtab + ${counts.dynsym} .dynsym symbols, ${counts.versions} versions)`;
  return [
    {
      what: "open ELF (validate everything)",
      input,
      wasm: ms(median(rounds.map((r) => r.w[0]))),
      native: ms(median(rounds.map((r) => r.c.open_ms))),
      ratio: median(rounds.map((r) => r.w[0] / r.c.open_ms)),
      note: differ.length ? `COUNTS DIFFER: ${differ.join(", ")}` : "",
    },
    {
      what: "read all symbol records",
      input: `${label} (${records} records)`,
      wasm: ms(median(rounds.map((r) => r.w[1]))),
      native: ms(median(rounds.map((r) => r.c.symbols_ms))),
      ratio: median(rounds.map((r) => r.w[1] / r.c.symbols_ms)),
      note: symNote,
    },
  ];
}

export async function run(): Promise<Row[]> {
  const exe = compileNative();
  return [...benchFile(exe, LIBC, "libc.so.6"), ...benchFile(exe, process.execPath, "node")];
}
