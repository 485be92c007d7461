// Worker of test/x86-fuzz.test.ts: runs decoder cases against core.wasm.
//
// Each input is placed so that it ends at the last byte of linear memory: a read past
// its end traps. As in the ELF fuzz worker, a large block is allocated and freed at
// start so the allocator keeps free heap (an error message is a managed string), and
// this host grows memory itself for the inputs; after each case the memory size must
// be unchanged (else the case did not end at the end of memory: counted, and failed).
//
// Per case: x86_decode at every offset, x86_decode_range in both modes, and the
// properties that make the decoder trustworthy on untrusted bytes:
//   - a length is 1..15 and within the input; an error is one of 400..403;
//   - the decoding does not depend on bytes after the instruction: the same bytes
//     followed by other bytes decode alike (a TRUNCATED one may then succeed);
//   - a real instruction cut anywhere is TRUNCATED, and nothing else;
//   - range records are in order, inside the input, and agree with x86_decode;
//   - the entry check over the input as a function (its own bytes as jump-table data,
//     a sub-range, targets) answers 0 or a named refusal, and its window is inside;
//     x86_jump_tables only returns targets inside the code.
import { parentPort, workerData } from "node:worker_threads";

export interface Case {
  name: string;
  what: string;
  bytes: Uint8Array;
}

export interface WorkerInput {
  wasm: Uint8Array;
  /** Code to draw real instructions from (libc's .text). */
  code: Uint8Array;
  extras: Case[]; // regression files
  count: number;
  runSeed: number;
  slowMs: number;
  start: number;
  progress: SharedArrayBuffer; // [0] ordinal being run, [1] cases done
}

export interface Failure {
  type: "fail";
  ordinal: number;
  name: string;
  what: string;
  kind: "trap" | "abort" | "violation" | "slow" | "hang" | "memory";
  message: string;
  bytes: Uint8Array;
}

export interface Done {
  type: "done";
  cases: number;
  decoded: number;
  statuses: Record<number, number>;
  entryStatuses: Record<number, number>;
  memoryMoved: number;
  ms: number;
}

class Violation extends Error {}
class AbortCalled extends Error {}

interface X {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  core_error_code(): number;
  core_error_message_len(): number;
  x86_decode(ptr: number, len: number, off: number, pc: bigint): number;
  x86_insn_kind(): number;
  x86_insn_flags(): number;
  x86_insn_target(): bigint;
  x86_insn_rel_offset(): number;
  x86_insn_rel_size(): number;
  x86_decode_range(ptr: number, len: number, from: number, to: number, pc: bigint, out: number, cap: number, mode: number): number;
  x86_range_next(): bigint;
  x86_entry_check(req: number, out: number): number;
  x86_jump_tables(code: number, codeLen: number, codeAddr: bigint, from: bigint, to: bigint, ranges: number, nranges: number, data: number, dataLen: number, dataAddr: bigint, out: number, cap: number): number;
}

const RESERVE = 16 << 20;
const PC = 0x7f0012345000n;

/** xorshift32: deterministic cases from (runSeed, ordinal). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

const PREFIXES = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65];

/** The case with ordinal n (extras first, then generated ones). */
export function caseAt(input: Pick<WorkerInput, "extras" | "code" | "runSeed" | "count">, n: number): Case | undefined {
  if (n < input.extras.length) return input.extras[n];
  const k = n - input.extras.length;
  if (k >= input.count) return undefined;
  const r = rng((input.runSeed * 2654435761) ^ (k * 40503) ^ 0x9e3779b9);
  const byte = () => r() & 255;
  const kind = k % 4;
  if (kind === 0) {
    // random bytes
    const len = 1 + (r() % 48);
    return { name: `random.${k}`, what: "random bytes", bytes: Uint8Array.from({ length: len }, byte) };
  }
  if (kind === 1) {
    // instruction-shaped: prefixes, REX, an escape or VEX/EVEX/XOP, opcode, ModRM, SIB, tail
    const b: number[] = [];
    // a few prefixes, or (1 in 8) a run long enough to pass 15 bytes
    for (let i = r() % 8 === 0 ? 10 + (r() % 8) : r() % 5; i > 0; i--) b.push(PREFIXES[r() % PREFIXES.length]);
    if (r() % 2) b.push(0x40 | (r() & 15));
    switch (r() % 8) {
      case 0: break;
      case 1: b.push(0x0f); break;
      case 2: b.push(0x0f, 0x38); break;
      case 3: b.push(0x0f, 0x3a); break;
      case 4: b.push(0xc5, byte()); break;
      case 5: b.push(0xc4, 0xe0 | (r() % 4), byte()); break;
      case 6: b.push(0x62, (byte() & 0xf7) | 0xf0, byte() | 4, byte()); break;
      default: b.push(0x8f, 0xe8 | (r() % 3), byte()); break;
    }
    b.push(byte(), byte(), byte());
    for (let i = r() % 12; i > 0; i--) b.push(byte());
    const cut = 1 + (r() % b.length);
    return { name: `shaped.${k}`, what: "instruction-shaped", bytes: Uint8Array.from(b.slice(0, cut)) };
  }
  // real code, cut (kind 2) or with a few bytes changed (kind 3)
  const at = r() % Math.max(1, input.code.length - 64);
  const len = 1 + (r() % 64);
  const bytes = input.code.slice(at, at + len);
  if (kind === 3) for (let i = 1 + (r() % 4); i > 0; i--) bytes[r() % bytes.length] = byte();
  return { name: `code.${k}`, what: kind === 2 ? "real code" : "real code, mutated", bytes };
}

export class Harness {
  x!: X;
  out!: number;
  scratch!: number;
  regionStart = 0;
  regionEnd = 0;
  memoryMoved = 0;
  decoded = 0;
  statuses: Record<number, number> = {};
  entryStatuses: Record<number, number> = {};

  constructor(module: WebAssembly.Module) {
    this.x = this.instantiate(module);
    this.out = this.x.alloc(256 * 16);
    this.scratch = this.x.alloc(4096);
  }

  /** A fresh instance (after a trap the old one may be in any state); counters are kept. */
  restart(module: WebAssembly.Module): void {
    this.x = this.instantiate(module);
    this.out = this.x.alloc(256 * 16);
    this.scratch = this.x.alloc(4096);
    this.regionStart = this.regionEnd = 0;
  }

  private instantiate(module: WebAssembly.Module): X {
    const inst = new WebAssembly.Instance(module, {
      env: {
        abort: () => {
          throw new AbortCalled("env.abort called");
        },
      },
    });
    const x = inst.exports as unknown as X;
    x.free(x.alloc(RESERVE));
    return x;
  }

  place(bytes: Uint8Array): number {
    const mem = this.x.memory;
    const end = mem.buffer.byteLength;
    if (end !== this.regionEnd || this.regionEnd - this.regionStart < bytes.length) {
      this.regionStart = end;
      mem.grow(1);
      this.regionEnd = mem.buffer.byteLength;
    }
    const ptr = this.regionEnd - bytes.length;
    new Uint8Array(mem.buffer).set(bytes, ptr);
    return ptr;
  }

  private decodeAt(ptr: number, len: number, off: number) {
    const x = this.x;
    const l = x.x86_decode(ptr, len, off, PC);
    if (l === 0) return { l, code: x.core_error_code(), kind: 0, flags: 0, target: 0n };
    return { l, code: 0, kind: x.x86_insn_kind(), flags: x.x86_insn_flags(), target: x.x86_insn_target() };
  }

  run(bytes: Uint8Array, tail: Uint8Array): void {
    const x = this.x;
    const len = bytes.length;
    const ptr = this.place(bytes);
    const results = [];
    for (let off = 0; off < len; off++) {
      const d = this.decodeAt(ptr, len, off);
      results.push(d);
      this.statuses[d.code] = (this.statuses[d.code] ?? 0) + 1;
      if (d.l) {
        this.decoded++;
        if (d.l > 15 || off + d.l > len) throw new Violation(`offset ${off}: length ${d.l} beyond the input (${len - off} bytes left)`);
        const ro = x.x86_insn_rel_offset();
        const rs = x.x86_insn_rel_size();
        if (rs !== 0 && (rs !== 1 && rs !== 4 || ro + rs > d.l)) throw new Violation(`offset ${off}: rel field ${ro}+${rs} outside the ${d.l}-byte instruction`);
      } else if (d.code < 400 || d.code > 403) {
        throw new Violation(`offset ${off}: error code ${d.code}`);
      } else if (x.core_error_message_len() === 0) {
        throw new Violation(`offset ${off}: error ${d.code} without a message`);
      }
    }
    // The same bytes followed by others (in the middle of memory): alike, but a truncated one may go on.
    const copy = new Uint8Array(len + tail.length);
    copy.set(bytes);
    copy.set(tail, len);
    new Uint8Array(x.memory.buffer).set(copy, this.scratch);
    for (let off = 0; off < len; off++) {
      const a = results[off];
      const b = this.decodeAt(this.scratch, copy.length, off);
      if (a.code === 400) {
        if (b.l !== 0 && b.l <= len - off) throw new Violation(`offset ${off}: truncated at the end, but ${b.l} bytes once followed by more`);
        continue;
      }
      if (a.l !== b.l || a.code !== b.code || a.kind !== b.kind || a.flags !== b.flags || a.target !== b.target) {
        throw new Violation(`offset ${off}: decodes differently when followed by other bytes: ${JSON.stringify([a, b], (_, v) => (typeof v === "bigint" ? v.toString(16) : v))}`);
      }
    }
    // A complete instruction cut anywhere is truncated, and only that.
    const full = this.decodeAt(this.scratch, copy.length, 0);
    if (full.l > 1) {
      for (let cut = 1; cut < full.l; cut++) {
        const p = this.place(copy.subarray(0, cut));
        const c = this.decodeAt(p, cut, 0);
        if (c.l !== 0 || c.code !== 400) throw new Violation(`a ${full.l}-byte instruction cut to ${cut} bytes: ${c.l ? `length ${c.l}` : `error ${c.code}`}, not TRUNCATED`);
      }
      this.place(bytes);
    }
    // Ranges, in both modes, in small chunks (cap 7) to exercise the resume path.
    for (const mode of [0, 1]) {
      let off = 0;
      let guard = 0;
      while (off < len) {
        if (++guard > len + 2) throw new Violation(`range mode ${mode}: no progress at ${off}`);
        const n = x.x86_decode_range(ptr, len, off, len, PC, this.out, 7, mode);
        if (n > 7) throw new Violation(`range: ${n} records for a capacity of 7`);
        const v = new DataView(x.memory.buffer);
        let prev = off - 1;
        let stopped = false;
        for (let i = 0; i < n; i++) {
          const r = this.out + i * 16;
          const o = v.getUint32(r + 8, true);
          const l = v.getUint8(r + 12);
          const st = v.getUint8(r + 15);
          if (o <= prev || o >= len) throw new Violation(`range mode ${mode}: record offset ${o} after ${prev} (input ${len})`);
          prev = o;
          const d = results[o];
          if (st === 0 ? l !== d.l || v.getUint8(r + 13) !== d.kind || v.getUint8(r + 14) !== d.flags || v.getBigUint64(r, true) !== BigInt.asUintN(64, d.target) : l !== 0 || st + 399 !== d.code) {
            throw new Violation(`range mode ${mode}: record at ${o} disagrees with x86_decode`);
          }
          if (st !== 0 && mode === 0) stopped = true;
        }
        const next = Number(x.x86_range_next());
        if (next > len || next < off) throw new Violation(`range: next ${next} outside [${off}, ${len}]`);
        if (stopped) break;
        if (n === 0) throw new Violation(`range: no record at ${off}`);
        off = next;
      }
    }
    this.entry(ptr, len);
    if (x.memory.buffer.byteLength !== this.regionEnd) this.memoryMoved++;
  }

  private entry(ptr: number, len: number): void {
    const x = this.x;
    const req = this.out; // 96 bytes of the record buffer, then the result, ranges, targets
    const res = this.out + 96;
    const ranges = this.out + 176;
    const targets = this.out + 208;
    const code = 0x555500001000n;
    let v = new DataView(x.memory.buffer);
    for (let i = 0; i < 256; i += 4) v.setUint32(req + i, 0, true);
    v.setUint32(req, ptr, true);
    v.setUint32(req + 4, len, true);
    v.setBigUint64(req + 8, code, true);
    v.setBigUint64(req + 16, code, true);
    v.setBigUint64(req + 24, BigInt(Math.max(1, len >> 1)), true);
    v.setBigUint64(req + 32, code + (len & 1 ? 0x40n : 0x7f0000000000n), true);
    v.setBigUint64(req + 40, code + BigInt(len), true);
    v.setBigUint64(ranges, code + BigInt(len >> 2), true);
    v.setBigUint64(ranges + 8, code + BigInt(len), true);
    v.setUint32(req + 48, ranges, true);
    v.setUint32(req + 52, len >= 4 ? 1 : 0, true);
    v.setBigUint64(targets, code + 3n, true);
    v.setUint32(req + 56, targets, true);
    v.setUint32(req + 60, 1, true);
    v.setUint32(req + 64, ptr, true);
    v.setUint32(req + 68, len, true);
    v.setBigUint64(req + 72, code, true);
    const st = x.x86_entry_check(req, res);
    v = new DataView(x.memory.buffer);
    if (st !== 0 && st !== 420 && st !== 421 && st !== 422) throw new Violation(`entry check: status ${st}`);
    this.entryStatuses[st] = (this.entryStatuses[st] ?? 0) + 1;
    if (v.getInt32(res, true) !== st) throw new Violation("entry check: result status differs from the return value");
    if (st === 0) {
      const w = v.getBigUint64(res + 16, true);
      const wl = v.getUint32(res + 8, true);
      if (w < code || w + BigInt(wl) > code + BigInt(len)) throw new Violation(`entry check: window ${w.toString(16)}+${wl} outside the code`);
      if (v.getUint32(res + 60, true) !== wl) throw new Violation("entry check: patch length differs from the window");
    }
    const n = x.x86_jump_tables(ptr, len, code, code, code + BigInt(len), 0, 0, ptr, len, code, targets, 4);
    if (n < 0) throw new Violation("x86_jump_tables failed");
    v = new DataView(x.memory.buffer);
    for (let i = 0; i < Math.min(n, 4); i++) {
      const t = v.getBigUint64(targets + i * 8, true);
      if (t < code || t >= code + BigInt(len)) throw new Violation(`x86_jump_tables: target ${t.toString(16)} outside the code`);
    }
  }
}

function main(): void {
  const input = workerData as WorkerInput;
  const module = new WebAssembly.Module(input.wasm as Uint8Array<ArrayBuffer>);
  const h = new Harness(module);
  const p = new Int32Array(input.progress);
  const t0 = performance.now();
  let cases = 0;
  const tail = Uint8Array.from({ length: 20 }, (_, i) => (i * 37 + 11) & 255);
  for (let n = input.start; ; n++) {
    const c = caseAt(input, n);
    if (!c) break;
    Atomics.store(p, 0, n);
    const t = performance.now();
    try {
      h.run(c.bytes, tail);
    } catch (e) {
      const kind = e instanceof Violation ? "violation" : e instanceof AbortCalled ? "abort" : "trap";
      parentPort!.postMessage({ type: "fail", ordinal: n, name: c.name, what: c.what, kind, message: String((e as Error).stack ?? e), bytes: c.bytes } satisfies Failure);
      // a trap may leave the instance in any state: start afresh
      h.restart(module);
    }
    const ms = performance.now() - t;
    if (ms > input.slowMs) parentPort!.postMessage({ type: "fail", ordinal: n, name: c.name, what: c.what, kind: "slow", message: `${ms.toFixed(0)} ms`, bytes: c.bytes } satisfies Failure);
    cases++;
    Atomics.store(p, 1, cases);
  }
  parentPort!.postMessage({ type: "done", cases, decoded: h.decoded, statuses: h.statuses, entryStatuses: h.entryStatuses, memoryMoved: h.memoryMoved, ms: performance.now() - t0 } satisfies Done);
}

if (parentPort && workerData) main();
