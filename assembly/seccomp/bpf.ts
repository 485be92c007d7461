// seccomp filters: the classic BPF programs of a thread, checked and run the way the
// kernel runs them, so patchc can tell before injecting a syscall into a target
// whether its filters would let the call through.
//
// Facts (kernel/seccomp.c, net/core/filter.c, include/uapi/linux/seccomp.h,
// include/uapi/linux/filter.h; https://docs.kernel.org/userspace-api/seccomp_filter.html):
//
// - An instruction is 8 bytes:   0 code u16 | 2 jt u8 | 3 jf u8 | 4 k u32
//   code = class (bits 0-2) | size/op (bits 3-7) | mode/src (bits 3-7), as below.
// - A program runs over struct seccomp_data (64 bytes, native little-endian):
//       0 nr i32   4 arch u32   8 instruction_pointer u64   16 args[6] u64
//   For a 64-bit syscall arch is AUDIT_ARCH_X86_64 (0xc000003e) and
//   instruction_pointer is the address after the `syscall` instruction.
// - Accepted programs (bpf_check_classic, then seccomp_check_filter): 1..4096
//   instructions, the last one a return; jumps only forward and inside; scratch
//   cells M[0..15] read only after a store on every path; no constant divisor 0;
//   shifts by a constant below 32; loads only of 32-bit aligned words inside
//   seccomp_data (LD W ABS) or its length (LD/LDX W LEN = 64). Allowed opcodes:
//   RET K|A; ALU ADD SUB MUL DIV AND OR XOR LSH RSH with K|X, NEG (no MOD);
//   LD/LDX IMM, MEM; ST, STX; TAX, TXA; JA; JEQ JGT JGE JSET with K|X.
// - Runtime: A, X and M are 32-bit; division by X = 0 ends the program returning 0;
//   shifts by X use X & 31 (the eBPF the kernel converts to).
// - Several filters: each is run, newest first; the result is the one whose action
//   (the top 16 bits, compared as s32, so KILL_PROCESS 0x80000000 is the least
//   permissive) is strictly lower than all seen before, starting from ALLOW.
//   Actions, least permissive first: KILL_PROCESS 0x80000000, KILL_THREAD 0,
//   TRAP 0x00030000, ERRNO 0x00050000, USER_NOTIF 0x7fc00000, TRACE 0x7ff00000,
//   LOG 0x7ffc0000, ALLOW 0x7fff0000; any other action kills the process.
//
// Filter set layout (as the shim returns it, oldest filter first, the index order of
// PTRACE_SECCOMP_GET_FILTER):
//
//   +-----------+---------+--------------------------+-----------+----
//   | count u32 | pad u32 | count x 8-byte insns     | count u32 | ...
//   +-----------+---------+--------------------------+-----------+----
import { Bytes } from "../bytes";
import { Err, fail } from "../error";

export const DATA_SIZE: u32 = 64;
export const MAX_INSNS: u32 = 4096;
export const MEM_CELLS: u32 = 16;

export const RET_KILL_PROCESS: u32 = 0x80000000;
export const RET_KILL_THREAD: u32 = 0x00000000;
export const RET_TRAP: u32 = 0x00030000;
export const RET_ERRNO: u32 = 0x00050000;
export const RET_USER_NOTIF: u32 = 0x7fc00000;
export const RET_TRACE: u32 = 0x7ff00000;
export const RET_LOG: u32 = 0x7ffc0000;
export const RET_ALLOW: u32 = 0x7fff0000;
export const RET_ACTION_FULL: u32 = 0xffff0000;

// classes
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
// sizes and modes of loads
const W: u16 = 0x00;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
// ALU operations
const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const MUL: u16 = 0x20;
const DIV: u16 = 0x30;
const OR: u16 = 0x40;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const NEG: u16 = 0x80;
const XOR: u16 = 0xa0;
// jumps
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
// operand source
const K: u16 = 0x00;
const X: u16 = 0x08;
// return value source
const RA: u16 = 0x10;
// misc
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

@inline function code(p: usize): u16 { return load<u16>(p); }
@inline function jt(p: usize): u32 { return <u32>load<u8>(p, 2); }
@inline function jf(p: usize): u32 { return <u32>load<u8>(p, 3); }
@inline function kv(p: usize): u32 { return load<u32>(p, 4); }

function isCondJump(c: u16): bool {
  if ((c & 0x07) != JMP) return false;
  const op = c & 0xf0;
  return (op == JEQ || op == JGT || op == JGE || op == JSET) && (c & ~(0xf0 | 0x08 | 0x07)) == 0;
}

/** Is `c` one of the opcodes seccomp accepts (seccomp_check_filter)? */
function allowed(c: u16): bool {
  switch (c) {
    case RET | K:
    case RET | RA:
    case ALU | ADD | K: case ALU | ADD | X:
    case ALU | SUB | K: case ALU | SUB | X:
    case ALU | MUL | K: case ALU | MUL | X:
    case ALU | DIV | K: case ALU | DIV | X:
    case ALU | AND | K: case ALU | AND | X:
    case ALU | OR | K: case ALU | OR | X:
    case ALU | XOR | K: case ALU | XOR | X:
    case ALU | LSH | K: case ALU | LSH | X:
    case ALU | RSH | K: case ALU | RSH | X:
    case ALU | NEG:
    case LD | IMM:
    case LDX | IMM:
    case MISC | TAX:
    case MISC | TXA:
    case LD | MEM:
    case LDX | MEM:
    case ST:
    case STX:
    case LD | W | ABS:
    case LD | W | LEN:
    case LDX | W | LEN:
    case JMP | JA:
      return true;
  }
  return isCondJump(c);
}

/**
 * Checks one program of `n` instructions at `p` as the kernel does when it is
 * installed. Returns 0, or an error code (recorded with a message naming the
 * filter and the instruction).
 */
export function checkProgram(p: usize, n: u32, which: u32): i32 {
  const name = "filter " + which.toString();
  if (n == 0 || n > MAX_INSNS)
    return fail(Err.SECCOMP_BAD_LENGTH, name + ": " + n.toString() + " instructions, 1.." + MAX_INSNS.toString() + " allowed");
  for (let pc: u32 = 0; pc < n; pc++) {
    const q = p + <usize>pc * 8;
    const c = code(q);
    const at = name + ", instruction " + pc.toString();
    if (!allowed(c)) return fail(Err.SECCOMP_BAD_OPCODE, at + ": opcode 0x" + (<u32>c).toString(16) + " is not allowed in a seccomp filter");
    const k = kv(q);
    if (c == (LD | W | ABS) && (k >= DATA_SIZE || (k & 3) != 0))
      return fail(Err.SECCOMP_BAD_LOAD, at + ": load at offset " + k.toString() + " is not an aligned word of seccomp_data");
    if ((c == (LD | MEM) || c == (LDX | MEM) || c == ST || c == STX) && k >= MEM_CELLS)
      return fail(Err.SECCOMP_BAD_MEMORY, at + ": scratch cell " + k.toString() + " (16 exist)");
    if ((c == (ALU | DIV | K)) && k == 0) return fail(Err.SECCOMP_DIV_ZERO, at + ": division by the constant 0");
    if ((c == (ALU | LSH | K) || c == (ALU | RSH | K)) && k >= 32)
      return fail(Err.SECCOMP_BAD_OPCODE, at + ": shift by " + k.toString() + " (below 32 required)");
    if (c == (JMP | JA)) {
      if (<u64>k >= <u64>(n - pc - 1)) return fail(Err.SECCOMP_BAD_JUMP, at + ": jump by " + k.toString() + " leaves the program");
    } else if (isCondJump(c)) {
      if (pc + jt(q) + 1 >= n || pc + jf(q) + 1 >= n)
        return fail(Err.SECCOMP_BAD_JUMP, at + ": conditional jump (" + jt(q).toString() + ", " + jf(q).toString() + ") leaves the program");
    }
  }
  const last = code(p + <usize>(n - 1) * 8);
  if (last != (RET | K) && last != (RET | RA))
    return fail(Err.SECCOMP_NO_RETURN, name + ": the last instruction is not a return");
  // scratch cells read before written on some path (check_load_and_stores)
  const masks = heap.alloc(<usize>n * 2);
  for (let i: u32 = 0; i < n; i++) store<u16>(masks + <usize>i * 2, 0xffff);
  let valid: u32 = 0;
  let rc: i32 = 0;
  for (let pc: u32 = 0; pc < n; pc++) {
    const q = p + <usize>pc * 8;
    valid &= <u32>load<u16>(masks + <usize>pc * 2);
    const c = code(q);
    const k = kv(q);
    if (c == ST || c == STX) {
      valid |= 1 << k;
    } else if (c == (LD | MEM) || c == (LDX | MEM)) {
      if ((valid & (1 << k)) == 0) {
        rc = fail(Err.SECCOMP_BAD_MEMORY, name + ", instruction " + pc.toString() + ": scratch cell " + k.toString() + " is read before it is written");
        break;
      }
    } else if (c == (JMP | JA)) {
      const t = masks + <usize>(pc + 1 + k) * 2;
      store<u16>(t, load<u16>(t) & <u16>valid);
      valid = 0xffff;
    } else if (isCondJump(c)) {
      const a = masks + <usize>(pc + 1 + jt(q)) * 2;
      store<u16>(a, load<u16>(a) & <u16>valid);
      const b = masks + <usize>(pc + 1 + jf(q)) * 2;
      store<u16>(b, load<u16>(b) & <u16>valid);
      valid = 0xffff;
    }
  }
  heap.free(masks);
  return rc;
}

// scratch cells of the running program
const M = memory.data(<i32>MEM_CELLS * 4);

/**
 * Runs a checked program over the 64-byte seccomp_data at `data`. Instructions
 * only jump forward, so it ends within n steps.
 */
export function runProgram(p: usize, n: u32, data: usize): u32 {
  let A: u32 = 0;
  let Xr: u32 = 0;
  memory.fill(M, 0, <usize>MEM_CELLS * 4);
  let pc: u32 = 0;
  while (pc < n) {
    const q = p + <usize>pc * 8;
    const c = code(q);
    const k = kv(q);
    pc++;
    switch (c) {
      case LD | W | ABS: A = load<u32>(data + <usize>k); break;
      case LD | W | LEN: A = DATA_SIZE; break;
      case LDX | W | LEN: Xr = DATA_SIZE; break;
      case LD | IMM: A = k; break;
      case LDX | IMM: Xr = k; break;
      case LD | MEM: A = load<u32>(M + <usize>k * 4); break;
      case LDX | MEM: Xr = load<u32>(M + <usize>k * 4); break;
      case ST: store<u32>(M + <usize>k * 4, A); break;
      case STX: store<u32>(M + <usize>k * 4, Xr); break;
      case MISC | TAX: Xr = A; break;
      case MISC | TXA: A = Xr; break;
      case ALU | ADD | K: A += k; break;
      case ALU | ADD | X: A += Xr; break;
      case ALU | SUB | K: A -= k; break;
      case ALU | SUB | X: A -= Xr; break;
      case ALU | MUL | K: A *= k; break;
      case ALU | MUL | X: A *= Xr; break;
      case ALU | DIV | K: A = A / k; break;
      case ALU | DIV | X:
        if (Xr == 0) return 0;
        A = A / Xr;
        break;
      case ALU | AND | K: A &= k; break;
      case ALU | AND | X: A &= Xr; break;
      case ALU | OR | K: A |= k; break;
      case ALU | OR | X: A |= Xr; break;
      case ALU | XOR | K: A ^= k; break;
      case ALU | XOR | X: A ^= Xr; break;
      case ALU | LSH | K: A <<= k; break;
      case ALU | LSH | X: A <<= Xr & 31; break;
      case ALU | RSH | K: A >>>= k; break;
      case ALU | RSH | X: A >>>= Xr & 31; break;
      case ALU | NEG: A = 0 - A; break;
      case JMP | JA: pc += k; break;
      case JMP | JEQ | K: pc += A == k ? jt(q) : jf(q); break;
      case JMP | JEQ | X: pc += A == Xr ? jt(q) : jf(q); break;
      case JMP | JGT | K: pc += A > k ? jt(q) : jf(q); break;
      case JMP | JGT | X: pc += A > Xr ? jt(q) : jf(q); break;
      case JMP | JGE | K: pc += A >= k ? jt(q) : jf(q); break;
      case JMP | JGE | X: pc += A >= Xr ? jt(q) : jf(q); break;
      case JMP | JSET | K: pc += (A & k) != 0 ? jt(q) : jf(q); break;
      case JMP | JSET | X: pc += (A & Xr) != 0 ? jt(q) : jf(q); break;
      case RET | K: return k;
      case RET | RA: return A;
      default: return RET_KILL_PROCESS; // unreachable for a checked program
    }
  }
  return RET_KILL_PROCESS; // unreachable: the last instruction of a checked program returns
}

/** The action of a return value as the kernel acts on it: unknown actions kill the process. */
export function actionOf(ret: u32): u32 {
  const a = ret & RET_ACTION_FULL;
  switch (a) {
    case RET_KILL_PROCESS:
    case RET_KILL_THREAD:
    case RET_TRAP:
    case RET_ERRNO:
    case RET_USER_NOTIF:
    case RET_TRACE:
    case RET_LOG:
    case RET_ALLOW:
      return a;
  }
  return RET_KILL_PROCESS;
}

/**
 * Walks a filter set (layout above), checking each program; returns the number of
 * filters, or -1 with the failure recorded.
 */
export function checkSet(set: Bytes): i32 {
  let off: u64 = 0;
  let count: i32 = 0;
  while (off < set.length) {
    if (!set.inRange(off, 8)) {
      fail(Err.SECCOMP_TRUNCATED, "filter " + count.toString() + ": header at offset " + off.toString() + " runs past the end of the set (" + set.length.toString() + " bytes)");
      return -1;
    }
    const n = set.u32(off);
    if (n == 0 || n > MAX_INSNS) {
      fail(Err.SECCOMP_BAD_LENGTH, "filter " + count.toString() + ": " + n.toString() + " instructions, 1.." + MAX_INSNS.toString() + " allowed");
      return -1;
    }
    if (!set.inRange(off + 8, <u64>n * 8)) {
      fail(Err.SECCOMP_TRUNCATED, "filter " + count.toString() + ": " + n.toString() + " instructions at offset " + (off + 8).toString() + " run past the end of the set (" + set.length.toString() + " bytes)");
      return -1;
    }
    if (checkProgram(set.ptr(off + 8), n, <u32>count) != 0) return -1;
    off += 8 + <u64>n * 8;
    count++;
  }
  return count;
}

/**
 * The return value of a checked filter set for one seccomp_data: every filter
 * run newest first, the least permissive action winning (ties: the newest).
 */
export function runSet(set: Bytes, count: i32, data: usize): u32 {
  // offsets of the filters, to walk them newest first
  const offs = heap.alloc(<usize>max(count, 1) * 8);
  let off: u64 = 0;
  for (let i = 0; i < count; i++) {
    store<u64>(offs + <usize>i * 8, off);
    off += 8 + <u64>set.u32(off) * 8;
  }
  let ret: u32 = RET_ALLOW;
  for (let i = count - 1; i >= 0; i--) {
    const o = load<u64>(offs + <usize>i * 8);
    const cur = runProgram(set.ptr(o + 8), set.u32(o), data);
    if (<i32>(cur & RET_ACTION_FULL) < <i32>(ret & RET_ACTION_FULL)) ret = cur;
  }
  heap.free(offs);
  return ret;
}
