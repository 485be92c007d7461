// Exports of the x86 area (documented in docs/core-abi.md, "x86 decoder and writer").
import { Err, fail, hex } from "../error";
import {
  decodeOne, decodeRange, failDecode, insnFlags, insnKind, insnOpcode, insnRelOffset, insnRelSize, insnStatus,
  insnTarget, rangeNext, MAP_COUNT, TABLES, EXTRA_ENTRIES,
} from "./decode";
import { GROUP_RECORDS } from "./tables";
import { jmpSize, X86Writer } from "./writer";
import { entryCheck, jumpTables } from "./entry";

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
 * 0: the 15 maps of 256 u32 entries; 1: the validity records (8 u64 each); 2: entries
 * outside the maps (u32: the 8F entry when it is POP r/m).
 */
export function x86_table(which: u32): usize {
  if (which == 0) return TABLES;
  if (which == 1) return changetype<usize>(GROUP_RECORDS);
  if (which == 2) return EXTRA_ENTRIES;
  return 0;
}

/** Size in bytes of x86_table(which). */
export function x86_table_size(which: u32): u32 {
  if (which == 0) return MAP_COUNT * 1024;
  if (which == 1) return <u32>GROUP_RECORDS.length * 8;
  if (which == 2) return 4;
  return 0;
}

// ---- writer ------------------------------------------------------------------------

const W = new X86Writer(0, 0, 0);

/**
 * Writes one named sequence at `buf` (room for `cap` bytes) for code that will run at
 * `pc`; `arg` is its destination, slot address or count (docs/core-abi.md lists the
 * ops). Returns the bytes written, or 0 with X86_NO_ROOM, X86_OUT_OF_RANGE or
 * BAD_ARGUMENT recorded.
 */
export function x86_write(op: u32, buf: usize, cap: u32, pc: u64, arg: u64): u32 {
  W.reset(buf, cap, pc);
  let ok = false;
  switch (op) {
    case 1: ok = W.putJmp(arg); break;
    case 2: ok = W.putJmpRel8(arg); break;
    case 3: ok = W.putJmpRel32(arg); break;
    case 4: ok = W.putJmpAbs(arg); break;
    case 5: ok = W.putJmpRip(arg); break;
    case 6: ok = W.putCall(arg); break;
    case 7: ok = W.putCallRel32(arg); break;
    case 8: ok = W.putCallAbs(arg); break;
    case 9: ok = W.putCallRip(arg); break;
    case 10: ok = W.putEndbr64(); break;
    case 11:
    case 12:
      if (arg > 4096) {
        fail(Err.BAD_ARGUMENT, "x86_write: count " + arg.toString() + " above 4096");
        return 0;
      }
      ok = op == 11 ? W.putNops(<u32>arg) : W.putInt3(<u32>arg);
      break;
    case 13: ok = W.putJumpStub(arg); break;
    case 14: ok = W.putPltStub(arg); break;
    default:
      fail(Err.BAD_ARGUMENT, "x86_write: unknown op " + op.toString());
      return 0;
  }
  if (ok) return W.size;
  if (W.failure == Err.X86_NO_ROOM) {
    fail(Err.X86_NO_ROOM, "x86_write op " + op.toString() + " at " + hex(pc) + ": no room in " + cap.toString() + " bytes");
  } else {
    fail(Err.X86_OUT_OF_RANGE, "x86_write op " + op.toString() + " at " + hex(pc) + ": " + hex(arg) + " is beyond the reach of its displacement");
  }
  return 0;
}

/** Size of the shortest jump from `at` to `dest`: 2 (rel8), 5 (rel32) or 14 (jmp [rip+0] + address). */
export function x86_jmp_size(at: u64, dest: u64): u32 {
  return jmpSize(at, dest);
}

// ---- entry check ---------------------------------------------------------------------

/**
 * Whether a function's entry can take the jump to its replacement: reads the 96-byte
 * request at `req`, writes the 80-byte result at `out` (layouts in entry.ts and
 * docs/core-abi.md). Returns 0, or the refusal's code (X86_TOO_SHORT,
 * X86_BRANCH_INTO_PATCH_SITE, X86_UNDECODABLE) with its message recorded, or
 * BAD_ARGUMENT.
 */
export function x86_entry_check(req: usize, out: usize): i32 {
  return entryCheck(req, out);
}


/**
 * Jump-table targets of linked code [from, to) (and `nranges` extra ranges: u64 start,
 * end pairs at `ranges`) in the `code_len` bytes at `code` (code[0] at `code_addr`),
 * through the tables they reference in the data at `data` (at `data_addr`). Writes up
 * to `cap` u64 targets at `out`; returns their number (all of them), or -1 (BAD_ARGUMENT).
 */
export function x86_jump_tables(code: usize, code_len: usize, code_addr: u64, from: u64, to: u64, ranges: usize, nranges: u32,
  data: usize, data_len: usize, data_addr: u64, out: usize, cap: u32): i32 {
  return jumpTables(code, <u64>code_len, code_addr, from, to, ranges, nranges, data, <u64>data_len, data_addr, out, cap);
}
