// Typed wrapper over the x86 exports of core.wasm (see docs/core-abi.md, "x86 decoder
// and writer"). Pure: runs in any JavaScript host.
import { Core, CoreError, type CoreExports } from "./instance.js";

interface X86Exports extends CoreExports {
  x86_decode(ptr: number, len: number, off: number, pc: bigint): number;
  x86_insn_kind(): number;
  x86_insn_flags(): number;
  x86_insn_target(): bigint;
  x86_insn_rel_offset(): number;
  x86_insn_rel_size(): number;
  x86_insn_opcode(): number;
  x86_decode_range(ptr: number, len: number, from: number, to: number, pc: bigint, out: number, cap: number, mode: number): number;
  x86_range_next(): bigint;
  x86_table(which: number): number;
  x86_table_size(which: number): number;
}

/** Instruction kinds (assembly/x86/decode.ts Kind). */
export enum InsnKind {
  Other = 0,
  Jmp = 1,
  Jcc = 2,
  Call = 3,
  JmpInd = 4,
  CallInd = 5,
  Ret = 6,
  Syscall = 7,
  Int3 = 8,
  Ud = 9,
  Endbr64 = 10,
  Nop = 11,
  Int = 12,
  Hlt = 13,
}

/** Instruction flags (assembly/x86/decode.ts Flag). */
export const InsnFlag = {
  RipRel: 1,
  OpSize: 2,
  AddrSize: 4,
  Lock: 8,
  Rep: 16,
  RepNe: 32,
  RexW: 64,
  Vex: 128,
} as const;

/** Error codes of the x86 area (assembly/error.ts). */
export const X86Err = {
  Truncated: 400,
  UnknownOpcode: 401,
  AmbiguousEncoding: 402,
  TooLong: 403,
  NoRoom: 410,
  OutOfRange: 411,
  TooShort: 420,
  BranchIntoPatchSite: 421,
  Undecodable: 422,
} as const;

export interface Insn {
  /** Address of the first byte. */
  pc: bigint;
  /** Offset in the input. */
  offset: number;
  /** Length in bytes; 0 when `status` is an error. */
  length: number;
  kind: InsnKind;
  flags: number;
  /** Branch target (rel branches) or RIP-relative address (flags & RipRel); 0n otherwise. */
  target: bigint;
  /** 0, or the X86Err code that stopped the decoding here. */
  status: number;
}

const RECORD = 16;

export class X86 {
  private readonly e: X86Exports;

  constructor(readonly core: Core) {
    this.e = core.exports as X86Exports;
  }

  /** Decodes the instruction at `offset` of `code` (code[0] runs at `pc`); throws CoreError on failure. */
  decode(code: Uint8Array, offset = 0, pc = 0n): Insn & { relOffset: number; relSize: number; opcode: number } {
    return this.core.withBytes(code, (ptr, len) => {
      const l = this.e.x86_decode(ptr, len, offset, pc);
      if (l === 0) throw this.core.lastError();
      return {
        pc: pc + BigInt(offset),
        offset,
        length: l,
        kind: this.e.x86_insn_kind() as InsnKind,
        flags: this.e.x86_insn_flags(),
        target: BigInt.asUintN(64, this.e.x86_insn_target()),
        status: 0,
        relOffset: this.e.x86_insn_rel_offset(),
        relSize: this.e.x86_insn_rel_size(),
        opcode: this.e.x86_insn_opcode(),
      };
    });
  }

  /**
   * Decodes linearly from `from` (default 0) while below `to` (default the end).
   * sweep=false stops at the first error: the last Insn then has a nonzero status.
   * sweep=true goes on one byte past each error (records with status != 0).
   */
  decodeRange(code: Uint8Array, pc = 0n, from = 0, to = code.length, sweep = false): Insn[] {
    const { core, e } = this;
    const out: Insn[] = [];
    const cap = 4096;
    return core.withBytes(code, (ptr, len) => {
      const buf = e.alloc(cap * RECORD);
      try {
        let off = from;
        while (off < to) {
          const n = e.x86_decode_range(ptr, len, off, to, pc, buf, cap, sweep ? 1 : 0);
          const v = core.view;
          for (let i = 0; i < n; i++) out.push(readRecord(v, buf + i * RECORD, pc));
          const next = Number(e.x86_range_next());
          if (n === 0 || next === off) break;
          if (!sweep && out.length && out[out.length - 1].status !== 0) break;
          off = next;
        }
        return out;
      } finally {
        e.free(buf);
      }
    });
  }

  /** Raw access for hot loops (tests, bench): the exports. */
  get raw(): X86Exports {
    return this.e;
  }
}

export function readRecord(v: DataView, at: number, pc: bigint): Insn {
  const offset = v.getUint32(at + 8, true);
  const st = v.getUint8(at + 15);
  return {
    pc: pc + BigInt(offset),
    offset,
    length: v.getUint8(at + 12),
    kind: v.getUint8(at + 13) as InsnKind,
    flags: v.getUint8(at + 14),
    target: v.getBigUint64(at, true),
    status: st === 0 ? 0 : 399 + st,
  };
}

export { CoreError };

/** Ops of x86_write (docs/core-abi.md). */
export const WriteOp = {
  Jmp: 1,
  JmpRel8: 2,
  JmpRel32: 3,
  JmpAbs: 4,
  JmpRip: 5,
  Call: 6,
  CallRel32: 7,
  CallAbs: 8,
  CallRip: 9,
  Endbr64: 10,
  Nops: 11,
  Int3: 12,
  JumpStub: 13,
  PltStub: 14,
} as const;
export type WriteOp = (typeof WriteOp)[keyof typeof WriteOp];

export interface X86WriterExports {
  x86_write(op: number, buf: number, cap: number, pc: bigint, arg: bigint): number;
  x86_jmp_size(at: bigint, dest: bigint): number;
}

/** Writes one named sequence for code that will run at `pc`; throws CoreError (X86_NO_ROOM, X86_OUT_OF_RANGE). */
export function x86Write(core: Core, op: WriteOp, pc: bigint, arg: bigint, cap = 64): Uint8Array {
  const e = core.exports as unknown as X86WriterExports & CoreExports;
  const buf = e.alloc(Math.max(cap, 1));
  try {
    const n = e.x86_write(op, buf, cap, pc, arg);
    if (n === 0) throw core.lastError();
    return core.copyOut(buf, n);
  } finally {
    e.free(buf);
  }
}

/** Size of the shortest jump from `at` to `dest`: 2, 5 or 14. */
export function x86JmpSize(core: Core, at: bigint, dest: bigint): number {
  return (core.exports as unknown as X86WriterExports).x86_jmp_size(at, dest);
}

// ---- entry check ---------------------------------------------------------------------

export interface EntryRequest {
  /** Bytes holding the function (and every extra range and the padding after it). */
  code: Uint8Array;
  /** Address of code[0] in the target. */
  codeAddr: bigint;
  fnStart: bigint;
  fnSize: bigint;
  /** Where the jump goes (the replacement's entry). */
  dest: bigint;
  /** Address of the next symbol after the function (for padding); 0n or absent: unknown. */
  nextSymbol?: bigint;
  /** Extra code to scan: .cold/.part pieces, overlapping and falling-through symbols, [start, end). */
  ranges?: Array<[bigint, bigint]>;
  /** Extra branch targets: jump-table entries from relocations, other symbols' addresses. */
  targets?: bigint[];
  /** Read-only data holding jump tables of linked code (found through their references). */
  data?: Uint8Array;
  dataAddr?: bigint;
}

export interface EntryResult {
  /** 0: the entry can take the jump; else X86Err.TooShort, BranchIntoPatchSite or Undecodable. */
  status: number;
  message: string;
  /** Window: offset from the entry (0, or 4 after endbr64), length, address. */
  windowOffset: number;
  windowLength: number;
  windowAddr: bigint;
  /** Bytes from the window start to the end of the last instruction it touches (save at least these for revert). */
  cover: number;
  /** The instruction (or table entry) that refuses, and where it arrives. */
  culprit: bigint;
  culpritTarget: bigint;
  endbr64Kept: boolean;
  /** The jump is the 14-byte indirect form: under IBT the destination must start with endbr64. */
  indirectJump: boolean;
  /** Bytes of proven padding used past the function's end. */
  padding: number;
  instructions: number;
  /** Indirect jumps in the function (their targets are known only through jump tables). */
  indirect: number;
  tableTargets: number;
  /** The bytes to write at windowAddr. */
  patch: Uint8Array;
}

interface X86EntryExports extends CoreExports {
  x86_entry_check(req: number, out: number): number;
  x86_jump_tables(code: number, codeLen: number, codeAddr: bigint, from: bigint, to: bigint, ranges: number, nranges: number, data: number, dataLen: number, dataAddr: bigint, out: number, cap: number): number;
}

const REQ = 96;
const RES = 80;

function putPairs(core: Core, pairs: Array<[bigint, bigint]>): number {
  const e = core.exports;
  const p = e.alloc(Math.max(1, pairs.length * 16));
  const v = core.view;
  pairs.forEach(([a, b], i) => {
    v.setBigUint64(p + i * 16, a, true);
    v.setBigUint64(p + i * 16 + 8, b, true);
  });
  return p;
}

function putU64s(core: Core, xs: bigint[]): number {
  const p = core.exports.alloc(Math.max(1, xs.length * 8));
  const v = core.view;
  xs.forEach((x, i) => v.setBigUint64(p + i * 8, x, true));
  return p;
}

/** Whether a function's entry can take the jump to its replacement (assembly/x86/entry.ts). */
export function entryCheck(core: Core, r: EntryRequest): EntryResult {
  const e = core.exports as X86EntryExports;
  const ptrs: number[] = [];
  try {
    const code = core.copyIn(r.code);
    ptrs.push(code);
    const ranges = putPairs(core, r.ranges ?? []);
    ptrs.push(ranges);
    const targets = putU64s(core, r.targets ?? []);
    ptrs.push(targets);
    const data = r.data ? core.copyIn(r.data) : 0;
    if (data) ptrs.push(data);
    const req = e.alloc(REQ);
    ptrs.push(req);
    const out = e.alloc(RES);
    ptrs.push(out);
    let v = core.view;
    for (let i = 0; i < REQ; i += 4) v.setUint32(req + i, 0, true);
    v.setUint32(req, code, true);
    v.setUint32(req + 4, r.code.length, true);
    v.setBigUint64(req + 8, r.codeAddr, true);
    v.setBigUint64(req + 16, r.fnStart, true);
    v.setBigUint64(req + 24, r.fnSize, true);
    v.setBigUint64(req + 32, r.dest, true);
    v.setBigUint64(req + 40, r.nextSymbol ?? 0n, true);
    v.setUint32(req + 48, ranges, true);
    v.setUint32(req + 52, r.ranges?.length ?? 0, true);
    v.setUint32(req + 56, targets, true);
    v.setUint32(req + 60, r.targets?.length ?? 0, true);
    v.setUint32(req + 64, data, true);
    v.setUint32(req + 68, r.data?.length ?? 0, true);
    v.setBigUint64(req + 72, r.dataAddr ?? 0n, true);
    const status = e.x86_entry_check(req, out);
    if (status === 2) throw core.lastError("x86_entry_check");
    v = core.view;
    const flags = v.getUint32(out + 40, true);
    const plen = v.getUint32(out + 60, true);
    return {
      status,
      message: status ? core.lastError().message : "",
      windowOffset: v.getUint32(out + 4, true),
      windowLength: v.getUint32(out + 8, true),
      cover: v.getUint32(out + 12, true),
      windowAddr: v.getBigUint64(out + 16, true),
      culprit: v.getBigUint64(out + 24, true),
      culpritTarget: v.getBigUint64(out + 32, true),
      endbr64Kept: (flags & 1) !== 0,
      indirectJump: (flags & 2) !== 0,
      padding: v.getUint32(out + 44, true),
      instructions: v.getUint32(out + 48, true),
      indirect: v.getUint32(out + 52, true),
      tableTargets: v.getUint32(out + 56, true),
      patch: core.copyOut(out + 64, plen),
    };
  } finally {
    for (const p of ptrs) e.free(p);
  }
}

/** Jump-table targets of linked code [from, to) (and extra ranges) through the tables they reference in `data`. */
export function jumpTables(core: Core, code: Uint8Array, codeAddr: bigint, from: bigint, to: bigint, data: Uint8Array, dataAddr: bigint, ranges: Array<[bigint, bigint]> = []): bigint[] {
  const e = core.exports as X86EntryExports;
  const ptrs: number[] = [];
  try {
    const c = core.copyIn(code);
    ptrs.push(c);
    const d = core.copyIn(data);
    ptrs.push(d);
    const rs = putPairs(core, ranges);
    ptrs.push(rs);
    let cap = 256;
    for (;;) {
      const out = e.alloc(cap * 8);
      ptrs.push(out);
      const n = e.x86_jump_tables(c, code.length, codeAddr, from, to, rs, ranges.length, d, data.length, dataAddr, out, cap);
      if (n < 0) throw core.lastError("x86_jump_tables");
      if (n <= cap) {
        const v = core.view;
        return Array.from({ length: n }, (_, i) => v.getBigUint64(out + i * 8, true));
      }
      cap = n;
    }
  } finally {
    for (const p of ptrs) e.free(p);
  }
}

/**
 * Every direct branch target (jmp/jcc/call/loop/xbegin rel8/rel32) of linked code,
 * sorted and unique: decodes each piece [start, end) linearly (pieces: from each symbol
 * to the next, as objdump walks a section; an undecodable byte is stepped over). A
 * module-wide answer to "where do branches go", for the entry check's `targets`.
 */
export function branchTargets(x86: X86, code: Uint8Array, codeAddr: bigint, pieces: Array<[bigint, bigint]>): BigUint64Array {
  const { core, raw: e } = x86;
  const found: bigint[] = [];
  const CAP = 1 << 14;
  core.withBytes(code, (ptr, len) => {
    const out = e.alloc(CAP * RECORD);
    try {
      for (const [lo, hi] of pieces) {
        let off = Number(lo - codeAddr);
        const end = Number(hi - codeAddr);
        if (off < 0 || end > len || end <= off) throw new CoreError(2, `branchTargets: piece [${lo.toString(16)}, ${hi.toString(16)}) is not inside the code`);
        while (off < end) {
          const n = e.x86_decode_range(ptr, len, off, end, codeAddr, out, CAP, 1);
          const v = core.view;
          for (let i = 0; i < n; i++) {
            const r = out + i * RECORD;
            const kind = v.getUint8(r + 13);
            if (v.getUint8(r + 15) === 0 && (kind === InsnKind.Jmp || kind === InsnKind.Jcc || kind === InsnKind.Call)) found.push(v.getBigUint64(r, true));
          }
          const next = Number(e.x86_range_next());
          if (next <= off) break;
          off = next;
        }
      }
    } finally {
      e.free(out);
    }
  });
  const sorted = BigUint64Array.from(found).sort();
  let k = 0;
  for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[k - 1]) sorted[k++] = sorted[i];
  return sorted.slice(0, k);
}
