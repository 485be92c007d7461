// bench/core section "x86": the instruction decoder of the Wasm core beside the same
// algorithm and tables in C (bench/core/x86.c, gcc -O2, built here; the tables are the
// core's own, written out through x86_table), and `objdump -d` over the same text.
//
//   - decode throughput over libc.so.6's .text: a linear sweep into 16-byte records
//     (x86_decode_range, sweep mode), MB/s; both sides' records must agree (checksum).
//     CPU times, median of ROUNDS rounds alternating C and Wasm; the ratio is the median
//     of the per-round ratios. objdump's CPU time (user + system, of the child) for
//     `objdump -d -j .text` is the reference of the third row.
//   - agreement with objdump over node's .text (data tables, unsized symbols): decoded
//     as objdump walks it, symbol to symbol, and compared instruction by instruction.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nodeCore } from "../../src/node/core-file.js";
import { readSections } from "../../test/x86-objdump.js";
import { type Row } from "../table.js";

const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";
const ROUNDS = 11;

interface Exports {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  x86_decode_range(ptr: number, len: number, from: number, to: number, pc: bigint, out: number, cap: number, mode: number): number;
  x86_range_next(): bigint;
  x86_table(which: number): number;
  x86_table_size(which: number): number;
}

interface Native {
  ms: number;
  records: number;
  errors: number;
  checksum: string;
}

function once(fn: () => void): number {
  const s = process.cpuUsage();
  fn();
  const d = process.cpuUsage(s);
  return (d.user + d.system) / 1e3;
}

function textOf(path: string): { bytes: Uint8Array; addr: bigint } {
  const s = readSections(path).find((x) => x.name === ".text")!;
  const f = readFileSync(path);
  return { bytes: new Uint8Array(f.buffer, f.byteOffset + s.offset, s.size), addr: BigInt(s.addr) };
}

/** The same checksum as x86.c over n records at `out`. */
function checksum(x: Exports, out: number, n: number): { sum: bigint; errors: number } {
  const v = new DataView(x.memory.buffer);
  const M = (1n << 64n) - 1n;
  let sum = 0n;
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const r = out + i * 16;
    sum = (sum * 1099511628211n + (v.getBigUint64(r, true) ^ v.getBigUint64(r + 8, true))) & M;
    if (v.getUint8(r + 15)) errors++;
  }
  return { sum, errors };
}

/** CPU time (user + system) of a child process, in ms, through bash's `time`. */
function childCpuMs(cmd: string): number {
  const r = spawnSync("bash", ["-c", `TIMEFORMAT='%3U %3S'; time (${cmd}) > /dev/null`], { encoding: "utf8", maxBuffer: 1 << 20 });
  const m = /([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd}: ${r.stderr}`);
  return (Number(m[1]) + Number(m[2])) * 1e3;
}

function throughput(): Row[] {
  const dir = join("build", "bench");
  mkdirSync(dir, { recursive: true });
  const exe = join(dir, "x86-c");
  execFileSync("gcc", ["-O2", "-o", exe, join("bench", "core", "x86.c")], { stdio: "inherit" });
  const core = nodeCore();
  const x = core.exports as unknown as Exports;
  // The core's tables, for the C program.
  const mem = () => new Uint8Array(x.memory.buffer);
  const tables = join(dir, "x86-tables.bin");
  const t0 = mem().slice(x.x86_table(0), x.x86_table(0) + x.x86_table_size(0));
  const t1 = mem().slice(x.x86_table(1), x.x86_table(1) + x.x86_table_size(1));
  const e8f = new DataView(x.memory.buffer).getUint32(x.x86_table(2), true);
  writeFileSync(tables, Buffer.concat([t0, t1]));
  const text = textOf(LIBC);
  const codeFile = join(dir, "x86-libc-text.bin");
  writeFileSync(codeFile, text.bytes);
  const len = text.bytes.length;
  const code = x.alloc(len);
  mem().set(text.bytes, code);
  const out = x.alloc(len * 16);
  let n = 0;
  const decode = () => {
    n = x.x86_decode_range(code, len, 0, len, text.addr, out, len, 1);
  };
  for (let i = 0; i < 10; i++) decode(); // V8's optimizing tier
  const objdumpCmd = `objdump -d -w -j .text ${LIBC}`;
  const rounds: Array<{ c: Native; w: number; o: number }> = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c = JSON.parse(execFileSync(exe, [tables, codeFile, "0x" + text.addr.toString(16), "0x" + e8f.toString(16)], { encoding: "utf8" })) as Native;
    decode();
    const w = once(decode);
    const o = r < 3 ? childCpuMs(objdumpCmd) : rounds[r % 3].o; // objdump is slow: 3 runs
    rounds.push({ c, w, o });
  }
  const { sum, errors } = checksum(x, out, n);
  x.free(out);
  x.free(code);
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
  const mb = len / (1 << 20);
  const rate = (ms: number) => `${(mb / (ms / 1e3)).toFixed(0)} MB/s`;
  const c0 = rounds[0].c;
  const agree = c0.records === n && c0.checksum === sum.toString() && c0.errors === errors ? "" : `RECORDS DIFFER (C ${c0.records}/${c0.errors}, Wasm ${n}/${errors})`;
  const input = `libc.so.6 .text (${mb.toFixed(2)} MiB, ${n} instructions)`;
  const wMed = med(rounds.map((r) => r.w));
  const oMed = med(rounds.slice(0, 3).map((r) => r.o));
  return [
    {
      what: "decode (length, kind, target) into records",
      input,
      wasm: `${rate(wMed)} (${wMed.toFixed(2)} ms)`,
      native: `${rate(med(rounds.map((r) => r.c.ms)))} (C -O2)`,
      ratio: med(rounds.map((r) => r.w / r.c.ms)),
      note: agree || `same records; ${errors} undecodable bytes`,
    },
    {
      what: "decode, against objdump -d",
      input,
      wasm: `${rate(wMed)}`,
      native: `${rate(oMed)} (objdump -d, text output)`,
      ratio: wMed / oMed,
      note: "objdump also formats every instruction",
    },
  ];
}

// ---- agreement with objdump over node's .text -------------------------------------

interface Piece {
  start: number;
  addr: number[];
  len: number[];
  branch: number[];
  rip: number[];
  bad: boolean[];
  lone: boolean[]; // objdump printed a lone prefix byte as an instruction
}

const PREFIX_WORDS = /^(?:(?:bnd|notrack|data16|addr32|rex(?:\.\w+)?|cs|ds|es|ss|fs|gs|lock|rep|repz|repnz|\{\w+\})\s+)*/;
// objdump prints a REX followed by another prefix, or a prefix before a symbol boundary,
// as an instruction of its own; the CPU ignores such a REX and reads on (SDM vol. 2, 2.2.1).
const LONE_PREFIX = /^(rex(\.\w+)?|data16|addr32|cs|ds|es|ss|fs|gs|lock|repz|repnz)$/;
const BRANCH = /^(j\w+|call\w*|loop\w*|xbegin\w*)(?:,p[nt])?\s+([0-9a-f]+)(?:\s|$)/;

async function agreement(path: string, label: string): Promise<Row> {
  const core = nodeCore();
  const x = core.exports as unknown as Exports;
  const text = textOf(path);
  const base = Number(text.addr);
  const len = text.bytes.length;
  const code = x.alloc(len);
  new Uint8Array(x.memory.buffer).set(text.bytes, code);
  const CAP = 1 << 18;
  const out = x.alloc(CAP * 16);
  const stats = { objdump: 0, same: 0, ourError: 0, ambiguous: 0, unknown: 0, objdumpBad: 0, lonePrefix: 0, lenDiffers: 0, targetDiffers: 0, notAligned: 0, fwait: 0 };
  const examples: string[] = [];
  const unknownAt: string[] = [];

  const finish = (p: Piece, end: number) => {
    if (end <= p.start) return;
    // our records of [start, end), sweep mode: address -> record
    const ours = new Map<number, { len: number; kind: number; flags: number; target: number; status: number }>();
    let off = p.start - base;
    const to = end - base;
    while (off < to) {
      const n = x.x86_decode_range(code, len, off, to, text.addr, out, CAP, 1);
      const v = new DataView(x.memory.buffer);
      for (let i = 0; i < n; i++) {
        const r = out + i * 16;
        ours.set(base + v.getUint32(r + 8, true), { len: v.getUint8(r + 12), kind: v.getUint8(r + 13), flags: v.getUint8(r + 14), target: Number(v.getBigUint64(r, true)), status: v.getUint8(r + 15) });
      }
      const next = Number(x.x86_range_next());
      if (next <= off) break;
      off = next;
    }
    let fwaitPending = false;
    for (let i = 0; i < p.addr.length; i++) {
      stats.objdump++;
      const o = ours.get(p.addr[i]);
      if (fwaitPending) fwaitPending = false;
      if (p.bad[i]) {
        stats.objdumpBad++;
        if (o && o.status !== 0) stats.same++; // both reject
        continue;
      }
      if (!o) {
        stats.notAligned++;
        continue;
      }
      if (o.status !== 0) {
        const code = 399 + o.status;
        if (code === 402) stats.ambiguous++;
        else if (code === 401) {
          stats.unknown++;
          if (unknownAt.length < 8) unknownAt.push(p.addr[i].toString(16));
        }
        else stats.ourError++;
        continue;
      }
      if (o.len === 1 && p.len[i] > 1 && text.bytes[p.addr[i] - base] === 0x9b) {
        stats.fwait++;
        stats.same++;
        continue;
      }
      if (o.len !== p.len[i]) {
        if (p.lone[i]) stats.lonePrefix++;
        else {
          stats.lenDiffers++;
          if (examples.length < 5) examples.push(`${p.addr[i].toString(16)}: ours ${o.len}, objdump ${p.len[i]}`);
        }
        continue;
      }
      const rel = o.kind === 1 || o.kind === 2 || o.kind === 3;
      const rip = (o.flags & 1) !== 0;
      if ((rel ? o.target : -1) !== p.branch[i] || (rip ? o.target : -1) !== p.rip[i]) {
        stats.targetDiffers++;
        continue;
      }
      stats.same++;
    }
  };

  const child = spawn("objdump", ["-d", "-w", "-z", "--insn-width=15", "-j", ".text", path], { stdio: ["ignore", "pipe", "inherit"] });
  let cur: Piece = { start: base, addr: [], len: [], branch: [], rip: [], bad: [], lone: [] };
  let rest = "";
  const onLine = (line: string) => {
    if (line.length === 0) return;
    if (line.charCodeAt(0) !== 32) {
      const sp = line.indexOf(" <");
      if (sp > 0 && line.endsWith(">:")) {
        const a = parseInt(line.slice(0, sp), 16);
        if (a > cur.start) {
          finish(cur, a);
          cur = { start: a, addr: [], len: [], branch: [], rip: [], bad: [], lone: [] };
        }
      }
      return;
    }
    const t1 = line.indexOf(":\t");
    if (t1 < 0) return;
    const t2 = line.indexOf("\t", t1 + 2);
    if (t2 < 0) return; // a data dump (an object symbol in code): bytes and their ASCII, no instruction
    const bytes = line.slice(t1 + 2, t2).trim();
    if (!bytes) return;
    const txt = line.slice(t2 + 1).trim();
    const body = txt.replace(PREFIX_WORDS, "");
    const m = BRANCH.exec(body);
    let rip = -1;
    if (txt.includes("(%rip)") || txt.includes("(%eip)")) {
      const c = txt.lastIndexOf("# ");
      if (c >= 0) rip = parseInt(txt.slice(c + 2), 16);
    }
    cur.addr.push(parseInt(line.slice(0, t1), 16));
    cur.len.push((bytes.length + 1) / 3);
    cur.branch.push(m ? parseInt(m[2], 16) : -1);
    cur.rip.push(rip);
    cur.bad.push(txt.includes("(bad)") || txt.startsWith(".byte"));
    cur.lone.push(LONE_PREFIX.test(txt));
  };
  for await (const chunk of child.stdout!) {
    const s = rest + (chunk as Buffer).toString("latin1");
    let pos = 0;
    for (;;) {
      const nl = s.indexOf("\n", pos);
      if (nl < 0) break;
      onLine(s.slice(pos, nl));
      pos = nl + 1;
    }
    rest = s.slice(pos);
  }
  onLine(rest);
  finish(cur, base + len);
  x.free(out);
  x.free(code);
  const pct = (k: number) => `${((100 * k) / stats.objdump).toFixed(3)}%`;
  return {
    what: "agreement with objdump -d, symbol to symbol",
    input: `${label} .text (${(len / (1 << 20)).toFixed(1)} MiB, ${stats.objdump} objdump instructions)`,
    wasm: `${pct(stats.same)} same`,
    native: "objdump -d",
    note:
      `differ: ${stats.lenDiffers} length${examples.length ? ` (${examples.join(", ")})` : ""}, ${stats.targetDiffers} target; ` +
      `objdump splits a lone prefix off: ${stats.lonePrefix}; we refuse: ${stats.ambiguous} ambiguous 0x66 branches, ` +
      `${stats.unknown} unknown opcodes${unknownAt.length ? ` (at ${unknownAt.join(", ")})` : ""}, ${stats.ourError} truncated/too long; objdump (bad)/.byte: ${stats.objdumpBad}; ` +
      `not at one of our instruction starts: ${stats.notAligned}; fwait merged by objdump: ${stats.fwait}`,
  };
}

export async function run(): Promise<Row[]> {
  return [...throughput(), await agreement(process.execPath, "node")];
}
