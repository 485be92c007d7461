// The ELF fuzz worker: runs cases against core.wasm in a worker thread, so that a hang
// is caught by the test's watchdog (it terminates this thread) instead of hanging the test.
//
// Each input is placed so that it ends at the last byte of linear memory: a read past
// its end traps. How: at start a large block is allocated and freed, so the allocator
// (TLSF) keeps that much free heap and need not grow memory during a case; then this
// host grows memory itself. TLSF only ever adds pages *it* grew (from memory.size() at
// the time), so the pages grown here are the host's: the input is copied to
// [end - len, end). After each case the memory size is checked unchanged (if the core
// grew memory, the case did not test the end of memory: counted, and the test fails).
//
// After a successful open every accessor export is called over every table, and every
// pointer the core returns is checked to lie inside the input. Failures (trap, abort,
// a broken guarantee, a slow case) are posted to the test with the input's bytes.
import { parentPort, workerData } from "node:worker_threads";
import { makeCase, type Seed } from "./elf-mutate.js";

export interface Extra {
  name: string;
  bytes: Uint8Array;
  image: boolean;
  base: bigint;
}

export interface WorkerInput {
  wasm: Uint8Array;
  seeds: Seed[];
  /** Ordinal -> case: first the extras (regression files), then for each plan entry `count` cases of that seed. */
  extras: Extra[];
  plan: Array<{ seed: number; count: number }>;
  runSeed: number;
  start: number; // first ordinal to run
  progress: SharedArrayBuffer; // Int32Array: [0] ordinal running, [1] cases done
  slowMs: number;
}

export interface Failure {
  type: "fail";
  ordinal: number;
  name: string; // seed name and case id, or the regression file
  what: string;
  kind: "trap" | "abort" | "violation" | "slow" | "hang" | "error";
  message: string;
  bytes: Uint8Array;
  image: boolean;
  base: bigint;
}

export interface Done {
  type: "done";
  cases: number;
  opened: number;
  memoryMoved: number;
  errorCodes: Record<number, number>;
  perSeed: Record<string, { cases: number; opened: number }>; // seed name (or "regressions")
  ms: number;
}

class AbortCalled extends Error {}
class Violation extends Error {}

const RESERVE = 48 << 20; // free heap kept by the allocator
const CHUNK = 1024; // records per accessor call
const MAX_RECORDS = 16 * CHUNK; // records read per table (then the last chunk)

interface X {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  core_error_code(): number;
  core_error_message(): number;
  core_error_message_len(): number;
  elf_open(p: number, n: number): number;
  elf_open_image(p: number, n: number, base: bigint): number;
  elf_close(h: number): number;
  elf_info(h: number, out: number): number;
  elf_sections(h: number, first: number, count: number, out: number): number;
  elf_section_by_name(h: number, name: number, len: number): number;
  elf_segments(h: number, first: number, count: number, out: number): number;
  elf_symbols(h: number, table: number, first: number, count: number, out: number): number;
  elf_rela_tables(h: number, first: number, count: number, out: number): number;
  elf_relas(h: number, table: number, first: number, count: number, out: number): number;
  elf_dynamic(h: number, first: number, count: number, out: number): number;
  elf_dynstr(h: number, offset: number, lenOut: number): number;
  elf_versions(h: number, first: number, count: number, out: number): number;
  elf_eh_frame(h: number, out: number): number;
  elf_addr_to_offset(h: number, vaddr: bigint, size: bigint): bigint;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export class Harness {
  x: X;
  out: number;
  regionStart = 0;
  regionEnd = 0;
  memoryMoved = 0;

  constructor(module: WebAssembly.Module) {
    const inst = new WebAssembly.Instance(module, {
      env: {
        abort: () => {
          throw new AbortCalled("env.abort called");
        },
      },
    });
    this.x = inst.exports as unknown as X;
    this.x.free(this.x.alloc(RESERVE));
    this.out = this.x.alloc(CHUNK * 72);
  }

  /** Copies the input so that it ends at the last byte of memory; returns its pointer. */
  place(bytes: Uint8Array): number {
    const mem = this.x.memory;
    const end = mem.buffer.byteLength;
    if (end !== this.regionEnd || this.regionEnd - this.regionStart < bytes.length) {
      this.regionStart = end;
      mem.grow(Math.ceil(bytes.length / 65536) + 1);
      this.regionEnd = mem.buffer.byteLength;
    }
    const ptr = this.regionEnd - bytes.length;
    new Uint8Array(mem.buffer).set(bytes, ptr);
    return ptr;
  }

  private get v(): DataView {
    return new DataView(this.x.memory.buffer);
  }

  /** Runs one case; throws AbortCalled, Violation or a WebAssembly.RuntimeError (trap). Returns the error code (0: opened). */
  run(bytes: Uint8Array, image: boolean, base: bigint): number {
    const x = this.x;
    const len = bytes.length;
    const ptr = this.place(bytes);
    const h = image ? x.elf_open_image(ptr, len, base) : x.elf_open(ptr, len);
    let code = 0;
    if (h === 0) {
      code = x.core_error_code();
      if (code === 0) throw new Violation("open failed without an error code");
      const n = x.core_error_message_len();
      const p = x.core_error_message();
      if (n === 0) throw new Violation(`open failed (code ${code}) with an empty message`);
      utf8.decode(new Uint8Array(x.memory.buffer, p, n)); // throws on invalid UTF-8
    } else {
      this.accessors(h, ptr, len);
      if (x.elf_close(h) !== 0) throw new Violation("elf_close of an open handle failed");
    }
    if (x.memory.buffer.byteLength !== this.regionEnd) this.memoryMoved++;
    return code;
  }

  /** Every accessor over everything; every returned pointer must lie in [ptr, ptr+len). */
  private accessors(h: number, ptr: number, len: number): void {
    const x = this.x;
    const out = this.out;
    const inside = (p: number, n: number, what: string) => {
      if (n === 0 && (p === 0 || (p >= ptr && p <= ptr + len))) return;
      if (!(p >= ptr && p + n <= ptr + len)) throw new Violation(`${what}: [${p}, +${n}) is outside the input [${ptr}, +${len})`);
    };
    const expectCount = (r: number, n: number, what: string) => {
      if (r !== n) throw new Violation(`${what} returned ${r}, expected ${n}`);
    };
    const expectFail = (r: number | bigint, what: string) => {
      if (r !== -1 && r !== -1n) throw new Violation(`${what} accepted a bad argument (returned ${r})`);
      if (x.core_error_code() === 0) throw new Violation(`${what} failed without an error code`);
    };

    if (x.elf_info(h, out) !== 0) throw new Violation("elf_info failed on an open handle");
    let v = this.v;
    const nsec = v.getUint32(out + 16, true), nseg = v.getUint32(out + 20, true);
    const nsym = [v.getUint32(out + 24, true), v.getUint32(out + 28, true)];
    const nrela = v.getUint32(out + 32, true), nver = v.getUint32(out + 36, true), ndyn = v.getUint32(out + 40, true);
    const flags = v.getUint32(out + 52, true);
    const hasSym = [(flags & 2) !== 0, (flags & 4) !== 0];
    inside(v.getUint32(out + 48, true), v.getUint32(out + 44, true), "info build-id");
    if (v.getUint32(out + 80, true) !== ptr || v.getUint32(out + 84, true) !== len) throw new Violation("info: input ptr/length differ from the input");
    const tls = v.getInt32(out + 72, true);
    if (tls < -1 || tls >= nseg) throw new Violation(`info: TLS segment ${tls} of ${nseg}`);

    // Sections.
    for (let first = 0; first < nsec; first += CHUNK) {
      const n = Math.min(CHUNK, nsec - first);
      expectCount(x.elf_sections(h, first, n, out), n, "elf_sections");
      v = this.v;
      for (let i = 0; i < n; i++) {
        const o = out + i * 72;
        inside(v.getUint32(o, true), v.getUint32(o + 4, true), `section ${first + i} name`);
        if (v.getUint32(o + 52, true)) {
          const off = v.getBigUint64(o + 32, true), size = v.getBigUint64(o + 40, true);
          if (off + size > BigInt(len)) throw new Violation(`section ${first + i}: has data but ${off}+${size} > ${len}`);
        }
      }
    }
    expectFail(x.elf_sections(h, nsec, 1, out), "elf_sections past the end");
    expectFail(x.elf_sections(h, 0xffffffff, 2, out), "elf_sections with first+count wrapping");
    new Uint8Array(x.memory.buffer).set([0x2e, 0x64, 0x79, 0x6e, 0x73, 0x79, 0x6d], out); // ".dynsym"
    const sbn = x.elf_section_by_name(h, out, 7);
    if (sbn < -1 || sbn >= nsec) throw new Violation(`elf_section_by_name returned ${sbn} of ${nsec}`);

    // Segments.
    if (nseg > 0) expectCount(x.elf_segments(h, 0, Math.min(nseg, CHUNK), out), Math.min(nseg, CHUNK), "elf_segments");
    expectFail(x.elf_segments(h, nseg + 1, 0, out), "elf_segments past the end");

    // Symbols, both tables.
    for (const t of [0, 1]) {
      if (!hasSym[t]) {
        expectFail(x.elf_symbols(h, t, 0, 0, out), `elf_symbols of absent table ${t}`);
        continue;
      }
      const n = nsym[t];
      for (const [first, count] of chunks(n)) {
        expectCount(x.elf_symbols(h, t, first, count, out), count, `elf_symbols table ${t}`);
        v = this.v;
        for (let i = 0; i < count; i++) {
          const o = out + i * 48;
          const what = `symbol ${t}:${first + i}`;
          inside(v.getUint32(o, true), v.getUint32(o + 4, true), `${what} name`);
          inside(v.getUint32(o + 32, true), v.getUint32(o + 36, true), `${what} version`);
          inside(v.getUint32(o + 40, true), v.getUint32(o + 44, true), `${what} version file`);
          const shndx = v.getUint32(o + 28, true);
          if (nsec > 0 && shndx >= nsec && !(shndx >= 0xff00 && shndx < 0xffff)) throw new Violation(`${what}: section index ${shndx} of ${nsec}`);
        }
      }
      expectFail(x.elf_symbols(h, t, n, 1, out), `elf_symbols table ${t} past the end`);
    }
    expectFail(x.elf_symbols(h, 2, 0, 0, out), "elf_symbols table 2");

    // Relocation tables and every relocation (up to MAX_RECORDS and the last chunk).
    const tables: Array<{ count: number; symtab: number; kind: number }> = [];
    for (let first = 0; first < nrela; first += CHUNK) {
      const n = Math.min(CHUNK, nrela - first);
      expectCount(x.elf_rela_tables(h, first, n, out), n, "elf_rela_tables");
      v = this.v;
      for (let i = 0; i < n; i++) {
        const o = out + i * 24;
        const kind = v.getUint32(o, true), symtab = v.getUint32(o + 16, true);
        const sec = v.getInt32(o + 8, true), target = v.getInt32(o + 12, true);
        if (kind > 3 || symtab > 1 || sec < -1 || sec >= Math.max(nsec, 1) || target < -1 || target >= Math.max(nsec, 1)) {
          throw new Violation(`rela table ${first + i}: kind ${kind} symtab ${symtab} section ${sec} target ${target} (${nsec} sections)`);
        }
        tables.push({ count: v.getUint32(o + 4, true), symtab, kind });
      }
    }
    tables.forEach((t, ti) => {
      const limit = hasSym[t.symtab] ? nsym[t.symtab] : 0;
      for (const [first, count] of chunks(t.count)) {
        expectCount(x.elf_relas(h, ti, first, count, out), count, `elf_relas table ${ti}`);
        v = this.v;
        for (let i = 0; i < count; i++) {
          const sym = v.getUint32(out + i * 24 + 12, true);
          if (sym !== 0 && sym >= limit) throw new Violation(`relocation ${ti}:${first + i} refers to symbol ${sym} of a table with ${limit}`);
        }
      }
      expectFail(x.elf_relas(h, ti, t.count, 1, out), `elf_relas table ${ti} past the end`);
    });
    expectFail(x.elf_relas(h, nrela, 0, 0, out), "elf_relas of a table that does not exist");

    // Versions.
    for (let first = 0; first < nver; first += CHUNK) {
      const n = Math.min(CHUNK, nver - first);
      expectCount(x.elf_versions(h, first, n, out), n, "elf_versions");
      v = this.v;
      for (let i = 0; i < n; i++) {
        const o = out + i * 24;
        inside(v.getUint32(o + 4, true), v.getUint32(o + 8, true), `version ${first + i} name`);
        inside(v.getUint32(o + 12, true), v.getUint32(o + 16, true), `version ${first + i} file`);
      }
    }

    // Dynamic entries, and the dynamic strings they name (and a few they do not).
    const strOffsets: number[] = [0, 1, len, 0xffffffff];
    for (let first = 0; first < ndyn; first += CHUNK) {
      const n = Math.min(CHUNK, ndyn - first);
      expectCount(x.elf_dynamic(h, first, n, out), n, "elf_dynamic");
      v = this.v;
      for (let i = 0; i < n; i++) {
        const tag = v.getBigInt64(out + i * 16, true);
        if (tag === 1n || tag === 14n || tag === 15n || tag === 29n) strOffsets.push(Number(v.getBigUint64(out + i * 16 + 8, true) & 0xffffffffn));
      }
    }
    expectFail(x.elf_dynamic(h, ndyn + 1, 0, out), "elf_dynamic past the end");
    for (const s of strOffsets) {
      const p = x.elf_dynstr(h, s, out);
      if (p === 0) {
        if (x.core_error_code() === 0) throw new Violation("elf_dynstr failed without an error code");
      } else {
        inside(p, this.v.getUint32(out, true), `dynamic string at ${s}`);
      }
    }

    // Unwind tables.
    if (x.elf_eh_frame(h, out) !== 0) throw new Violation("elf_eh_frame failed on an open handle");
    v = this.v;
    for (const [at, what] of [[8, ".eh_frame"], [32, ".eh_frame_hdr"]] as const) {
      const off = v.getBigInt64(out + at, true), size = v.getBigUint64(out + at + 8, true);
      if (off !== -1n && (off < 0n || off + size > BigInt(len))) throw new Violation(`${what}: input offset ${off} size ${size} is outside the input (${len})`);
    }

    // Address translation, at the entry and at a few edges.
    v = this.v;
    for (const [a, n] of [[v.getBigUint64(out, true), 16n], [0n, 1n], [0xfffffffffffffff0n, 0x20n], [BigInt(len), 1n], [0x1000n, 0xffffffffffffffffn]] as const) {
      const r = x.elf_addr_to_offset(h, a, n);
      if (r !== -1n && (r < 0n || r + n > BigInt(len))) throw new Violation(`elf_addr_to_offset(${a}, ${n}) = ${r}: outside the input (${len})`);
    }
  }
}

/** (first, count) chunks covering up to MAX_RECORDS records of n, and the last chunk. */
function chunks(n: number): Array<[number, number]> {
  const r: Array<[number, number]> = [];
  for (let first = 0; first < n && first < MAX_RECORDS; first += CHUNK) r.push([first, Math.min(CHUNK, n - first)]);
  if (n > MAX_RECORDS) r.push([n - Math.min(CHUNK, n), Math.min(CHUNK, n)]);
  return r;
}

/** The case at `ordinal` (a regression file or crafted input, then the plan's generated cases). */
export function caseAt(input: Pick<WorkerInput, "seeds" | "extras" | "plan" | "runSeed">, ordinal: number): { name: string; what: string; bytes: Uint8Array; image: boolean; base: bigint } | undefined {
  if (ordinal < input.extras.length) {
    const e = input.extras[ordinal];
    return { ...e, what: e.name.startsWith("crafted-") ? "crafted" : "regression file" };
  }
  let k = ordinal - input.extras.length;
  for (const p of input.plan) {
    if (k < p.count) {
      const c = makeCase(input.seeds[p.seed], k, input.runSeed);
      return { name: `${c.seed}.${c.id}`, what: c.what, bytes: c.bytes, image: c.image, base: c.base };
    }
    k -= p.count;
  }
  return undefined;
}

function main(input: WorkerInput): void {
  const module = new WebAssembly.Module(input.wasm as Uint8Array<ArrayBuffer>);
  const progress = new Int32Array(input.progress);
  let harness = new Harness(module);
  const done: Done = { type: "done", cases: 0, opened: 0, memoryMoved: 0, errorCodes: {}, perSeed: {}, ms: 0 };
  const t0 = performance.now();
  for (let ordinal = input.start; ; ordinal++) {
    const c = caseAt(input, ordinal);
    if (!c) break;
    Atomics.store(progress, 0, ordinal);
    const start = performance.now();
    let failure: Pick<Failure, "kind" | "message"> | undefined;
    try {
      const code = harness.run(c.bytes, c.image, c.base);
      const seed = c.what === "regression file" ? "regressions" : c.what === "crafted" ? "crafted" : c.name.replace(/\.\d+$/, "");
      const ps = (done.perSeed[seed] ??= { cases: 0, opened: 0 });
      ps.cases++;
      if (code === 0) {
        done.opened++;
        ps.opened++;
      }
      done.errorCodes[code] = (done.errorCodes[code] ?? 0) + 1;
    } catch (e) {
      const err = e as Error;
      const kind = e instanceof AbortCalled ? "abort" : e instanceof Violation ? "violation" : e instanceof WebAssembly.RuntimeError ? "trap" : "error";
      failure = { kind, message: `${err.message}${kind === "trap" || kind === "error" ? "\n" + (err.stack ?? "") : ""}` };
      done.memoryMoved += harness.memoryMoved;
      harness = new Harness(module); // the instance's state is unknown after a trap
    }
    const ms = performance.now() - start;
    if (!failure && ms > input.slowMs) failure = { kind: "slow", message: `took ${ms.toFixed(0)} ms (limit ${input.slowMs} ms)` };
    if (failure) {
      const f: Failure = { type: "fail", ordinal, name: c.name, what: c.what, ...failure, bytes: c.bytes, image: c.image, base: c.base };
      parentPort!.postMessage(f);
    }
    done.cases++;
    Atomics.store(progress, 1, done.cases);
  }
  done.memoryMoved += harness.memoryMoved;
  done.ms = performance.now() - t0;
  parentPort!.postMessage(done);
}

if (parentPort && workerData) main(workerData as WorkerInput);
