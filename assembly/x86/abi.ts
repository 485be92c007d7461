// Exports of the x86 area (documented in docs/core-abi.md, "x86 decoder and writer").
import { Err, fail, hex } from "../error";
import {
  decodeOne, decodeRange, failDecode, insnFlags, insnKind, insnOpcode, insnRelOffset, insnRelSize, insnStatus,
  insnTarget, rangeNext, MAP_COUNT, TABLES,
} from "./decode";
import { GROUP_RECORDS } from "./tables";

/**
 * Decodes the instruction at input offset `off` of the `len` bytes at `ptr`; `pc` is the
 * address of input byte 0. Returns its length (1..15), or 0 on failure (error recorded:
 * X86_TRUNCATED, X86_UNKNOWN_OPCODE, X86_AMBIGUOUS_ENCODING, X86_TOO_LONG, BAD_ARGUMENT).
 * The x86_insn_* getters describe the instruction decoded last.
 */
export function x86_decode(ptr: usize, len: usize, off: usize, pc: u64): u32 {
  if (off >= len) {
    fail(Err.BAD_ARGUMENT, "x86_decode: offset " + hex(off) + " is not inside the " + len.toString() + "-byte input");
    return 0;
  }
  const l = decodeOne(ptr + off, ptr + len, pc + <u64>off);
  if (l == 0) failDecode(ptr, len, off, pc);
  return l;
}

/** Kind of the last decoded instruction (see docs/core-abi.md). */
export function x86_insn_kind(): u32 { return insnKind; }
/** Flags of the last decoded instruction. */
export function x86_insn_flags(): u32 { return insnFlags; }
/** Branch target or RIP-relative address of the last decoded instruction (0 when none). */
export function x86_insn_target(): u64 { return insnTarget; }
/** Offset of its rel8/rel32/disp32 field inside the instruction (0 when none). */
export function x86_insn_rel_offset(): u32 { return insnRelOffset; }
/** Size of that field: 1 or 4 (0 when none). */
export function x86_insn_rel_size(): u32 { return insnRelSize; }
/** map << 8 | opcode byte of the last decode, also after a failure. */
export function x86_insn_opcode(): u32 { return insnOpcode; }

/**
 * Decodes linearly from input offset `from` while below `to` (instructions may extend
 * up to `len`), writing 16-byte records to `out` (room for `cap`). mode 0 stops at the
 * first error (its record is the last one; the error is recorded), mode 1 sweeps on a
 * byte further. Returns the number of records; x86_range_next() gives the offset reached.
 */
export function x86_decode_range(ptr: usize, len: usize, from: usize, to: usize, pc: u64, out: usize, cap: u32, mode: u32): u32 {
  const t = to < len ? to : len;
  const n = decodeRange(ptr, <u64>len, <u64>from, <u64>t, pc, out, cap, mode);
  if (mode == 0 && n > 0 && load<u8>(out + (<usize>(n - 1) << 4), 15) != 0) failDecode(ptr, <u64>len, rangeNext, pc);
  return n;
}

/** Offset of the first byte the last x86_decode_range() did not decode. */
export function x86_range_next(): u64 { return rangeNext; }

/**
 * The decoder's tables, for other implementations of the same algorithm (bench/core):
 * 0: the 15 maps of 256 u32 entries; 1: the validity records (8 u64 each).
 */
export function x86_table(which: u32): usize {
  if (which == 0) return TABLES;
  if (which == 1) return changetype<usize>(GROUP_RECORDS);
  return 0;
}

/** Size in bytes of x86_table(which). */
export function x86_table_size(which: u32): u32 {
  if (which == 0) return MAP_COUNT * 1024;
  if (which == 1) return <u32>GROUP_RECORDS.length * 8;
  return 0;
}
