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
