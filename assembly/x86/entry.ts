// The entry check: can a function's entry take a jump to its replacement?
//
// patchc replaces a function by overwriting the first bytes of its entry (the
// *window*) with a jump to the new code, while every thread is stopped and none is
// inside the function. That is safe when nothing ever arrives inside the window at
// another byte than its first: the rest of the bytes in the window are then dead.
// So the window [s, s+J) is refused (funchook's named refusals, in spirit):
//
//   TOO_SHORT                  s+J runs past the function's end (size from the symbol
//                              table) and what follows up to the next symbol is not
//                              proven padding (only nop and int3 instructions, decoded
//                              up to exactly the next symbol).
//   BRANCH_INTO_PATCH_SITE     something arrives at s+1 .. s+J-1:
//                                - a rel8/rel32 jmp/jcc/call/loop/xbegin of the function
//                                  or of any extra code range (its .cold/.part pieces,
//                                  symbols that overlap it or fall through into it);
//                                - a `lea x(%rip)` that takes the address (computed goto,
//                                  a table base inside the code);
//                                - a target of the caller's list (jump-table entries from
//                                  relocations, other symbols' addresses), or of the jump
//                                  tables found through the data given (below);
//                                - an extra range that starts inside the window, straddles
//                                  its first byte, or falls through into it other than at s.
//   UNDECODABLE                the function or a range does not decode (unknown opcode,
//                              a 0x66 near branch, an instruction crossing its end): no
//                              proof is possible.
//
// A branch to s itself is harmless once no thread is inside: it runs the new jump.
// An entry that starts with endbr64 (F3 0F 1E FA, -fcf-protection) keeps it: the window
// starts after it (s = entry + 4), so indirect calls still land on an endbr64 and a
// branch to the entry runs endbr64, then the jump.
//
//   entry                    s = entry (+4 after endbr64)            s+J          end
//   | endbr64 |  jmp rel32 (5) / jmp rel8 (2) / jmp *0(%rip); .quad (14)  | rest ... |
//
// The jump is the shortest that reaches (writer.ts). The 14-byte form is an indirect
// jump: under IBT its destination must start with endbr64 (flag 2 of the result).
//
// Jump tables in linked code (x86_jump_tables): gcc's PIC switch is
//     lea T(%rip), %rdx ; movslq (%rdx,%rax,4), %rax ; add %rdx, %rax ; jmp *%rax
// with int32 entries relative to T, and without PIC  jmp *T(,%rax,8)  with 8-byte
// absolute entries. A table is read from each such reference into the data given,
// entry by entry while the entry lands in the code ranges, until another table's start.
// Over-reading only adds targets (more refusals, never fewer).
import { Err, fail, hex } from "../error";
import {
  decodeOne, insnDispOffset, insnDispSize, insnFlags, insnKind, insnModrm, insnOpcode, insnSib, insnStatus,
  insnTarget, Kind, Flag,
} from "./decode";
import { jmpSize, X86Writer, JMP_ABS_SIZE } from "./writer";

// Request record (little-endian), 96 bytes:
//
//    0 code ptr u32     4 code len u32      8 code address u64 (of code[0] in the target)
//   16 function start u64                   24 function size u64
//   32 destination u64 (the replacement)    40 next symbol u64 (0: unknown, no padding)
//   48 ranges ptr u32  52 ranges count u32  (extra code: u64 start, u64 end pairs, inside code)
//   56 targets ptr u32 60 targets count u32 (extra branch targets: u64 addresses)
//   64 data ptr u32    68 data len u32      72 data address u64 (read-only data holding jump
//                                            tables; len 0: none)
//   80 flags u32 (0)   84..95 reserved (0)
export const REQ_SIZE: u32 = 96;

// Result record, 80 bytes:
//
//    0 status i32 (0, or the refusal's code)     4 window offset u32 (from the entry: 0 or 4)
//    8 window length u32 (2, 5, 14)              12 cover u32: bytes from the window start to
//                                                   the end of the last instruction it touches
//   16 window address u64                        24 culprit u64: the instruction (or target
//                                                   source) that refuses, 0
//   32 culprit target u64: where it arrives, 0   40 flags u32: 1 endbr64 kept, 2 indirect
//                                                   jump (destination needs endbr64 under IBT),
//                                                   4 padding used
//   44 padding u32: bytes used past the function's end
//   48 instructions u32 (decoded)                52 indirect u32 (indirect jmp in the function)
//   56 table targets u32 (found through the data) 60 patch length u32
//   64 patch [16]: the bytes to write at the window address (patch length of them)
export const RES_SIZE: u32 = 80;

const MAX_LIST: u32 = 1 << 22; // ranges, targets: a bound on what a host may pass
const MAX_TABLE: u32 = 1 << 16; // entries read per jump table


class Check {
  code: usize = 0;
  codeLen: u64 = 0;
  codeAddr: u64 = 0;
  s: u64 = 0; // window start
  e: u64 = 0; // window end
  culprit: u64 = 0;
  culpritTarget: u64 = 0;
  status: i32 = 0;
  message: string = "";
  insns: u32 = 0;
  indirect: u32 = 0;

  @inline inCode(a: u64, n: u64): bool {
    return a >= this.codeAddr && a - this.codeAddr <= this.codeLen && n <= this.codeLen - (a - this.codeAddr);
  }

  @inline inside(t: u64): bool {
    return t > this.s && t < this.e;
  }

  refuse(code: i32, culprit: u64, target: u64, message: string): bool {
    if (this.status == 0) {
      this.status = code;
      this.culprit = culprit;
      this.culpritTarget = target;
      this.message = message;
    }
    return false;
  }
}

@inline function inMemory(p: usize, n: u64): bool {
  const top = <u64>memory.size() << 16;
  return <u64>p <= top && n <= top - <u64>p;
}

function kindFallsThrough(kind: u32): bool {
  return !(kind == Kind.JMP || kind == Kind.JMP_IND || kind == Kind.RET || kind == Kind.UD || kind == Kind.INT3 || kind == Kind.HLT);
}

/**
 * Decodes [from, to) of the code linearly and checks what arrives in the window.
 * `what` names the range in messages; `own` is true for the function itself.
 */
function scan(c: Check, from: u64, to: u64, what: string, own: bool): bool {
  let a = from;
  const end = c.codeAddr + c.codeLen;
  let prevFalls = false; // the previous instruction (in this range) can fall through
  let prevAddr: u64 = 0;
  let first = true;
  if (!own && c.inside(from)) {
    return c.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, from, from, what + " starts at " + hex(from) + ", inside the window [" + hex(c.s) + ", " + hex(c.e) + ")");
  }
  while (a < to) {
    const l = decodeOne(c.code + <usize>(a - c.codeAddr), c.code + <usize>c.codeLen, a);
    if (l == 0) {
      return c.refuse(Err.X86_UNDECODABLE, a, 0, what + ": cannot decode the instruction at " + hex(a) + " (" + statusText(insnStatus) + "): no proof that nothing branches into the window");
    }
    const next = a + <u64>l;
    if (next > to) {
      return c.refuse(Err.X86_UNDECODABLE, a, 0, what + ": the instruction at " + hex(a) + " (" + l.toString() + " bytes) runs past its end " + hex(to));
    }
    c.insns++;
    const kind = insnKind;
    if (kind == Kind.JMP || kind == Kind.JCC || kind == Kind.CALL) {
      if (c.inside(insnTarget)) {
        return c.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, a, insnTarget, what + ": the branch at " + hex(a) + " goes to " + hex(insnTarget) + ", inside the window [" + hex(c.s) + ", " + hex(c.e) + ")");
      }
    } else if ((insnFlags & Flag.RIP_REL) != 0 && insnOpcode == 0x8d && c.inside(insnTarget)) {
      return c.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, a, insnTarget, what + ": the lea at " + hex(a) + " takes the address " + hex(insnTarget) + ", inside the window [" + hex(c.s) + ", " + hex(c.e) + ")");
    }
    if (own && kind == Kind.JMP_IND) c.indirect++;
    if (!own) {
      if (a < c.s && next > c.s) {
        return c.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, a, c.s, what + ": its instruction at " + hex(a) + " (" + l.toString() + " bytes) straddles the window start " + hex(c.s));
      }
      if (c.inside(a) && !first && prevAddr < c.s && prevFalls) {
        return c.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, prevAddr, a, what + ": falls through from " + hex(prevAddr) + " into " + hex(a) + ", inside the window [" + hex(c.s) + ", " + hex(c.e) + ")");
      }
    }
    prevFalls = kindFallsThrough(kind);
    prevAddr = a;
    first = false;
    a = next;
    if (a >= end) break;
  }
  return true;
}

function statusText(code: i32): string {
  if (code == Err.X86_TRUNCATED) return "truncated";
  if (code == Err.X86_UNKNOWN_OPCODE) return "unknown opcode";
  if (code == Err.X86_AMBIGUOUS_ENCODING) return "ambiguous 0x66 near branch";
  if (code == Err.X86_TOO_LONG) return "longer than 15 bytes";
  return "decode error";
}

// ---- jump tables -----------------------------------------------------------------

/** Code ranges a table entry may land in: the function and its extra ranges. */
class Ranges {
  lo: StaticArray<u64>;
  hi: StaticArray<u64>;
  n: i32 = 0;
  constructor(cap: i32) {
    this.lo = new StaticArray<u64>(cap);
    this.hi = new StaticArray<u64>(cap);
  }
  add(lo: u64, hi: u64): void {
    unchecked((this.lo[this.n] = lo));
    unchecked((this.hi[this.n] = hi));
    this.n++;
  }
  has(a: u64): bool {
    for (let i = 0; i < this.n; i++) if (a >= unchecked(this.lo[i]) && a < unchecked(this.hi[i])) return true;
    return false;
  }
}

/** Table references found while decoding: base address and entry size (4: PIC relative, 8: absolute). */
class TableRefs {
  base: Array<u64> = [];
  size: Array<u32> = [];
}

function collectTableRefs(c: Check, from: u64, to: u64, data: u64, dataLen: u64, refs: TableRefs): void {
  let a = from;
  while (a < to) {
    const l = decodeOne(c.code + <usize>(a - c.codeAddr), c.code + <usize>c.codeLen, a);
    if (l == 0) return; // the scan reports it
    const op = insnOpcode;
    if ((insnFlags & Flag.RIP_REL) != 0 && op == 0x8d) {
      const t = insnTarget;
      if (t >= data && t - data < dataLen) { refs.base.push(t); refs.size.push(4); }
    } else if ((op == 0xff && (insnModrm & 0x38) == 0x20) || op == 0x8b) {
      // jmp *disp32(,%reg,8) / mov disp32(,%reg,8), %reg: ModRM mod 00 rm 100, SIB scale 8, base 101
      if ((insnModrm & 0xc7) == 0x04 && (insnSib & 0xc7) == 0xc5 && insnDispSize == 4) {
        const d = <u64><i64>load<i32>(c.code + <usize>(a - c.codeAddr) + insnDispOffset);
        if (d >= data && d - data < dataLen) { refs.base.push(d); refs.size.push(8); }
      }
    }
    a += <u64>l;
  }
}

/**
 * Reads the tables referenced in the code and calls back with each entry that lands
 * in the ranges. Returns the number of targets.
 */
function readTables(refs: TableRefs, data: usize, dataLen: u64, dataAddr: u64, ranges: Ranges, out: usize, cap: u32, check: Check | null): u32 {
  let n: u32 = 0;
  for (let k = 0; k < refs.base.length; k++) {
    const base = unchecked(refs.base[k]);
    const es = <u64>unchecked(refs.size[k]);
    let at = base;
    for (let i: u32 = 0; i < MAX_TABLE; i++) {
      if (at - dataAddr + es > dataLen) break;
      if (i > 0) {
        // another table starts here
        let other = false;
        for (let j = 0; j < refs.base.length; j++) if (j != k && unchecked(refs.base[j]) == at) other = true;
        if (other) break;
      }
      const p = data + <usize>(at - dataAddr);
      const t: u64 = es == 4 ? base + <u64><i64>load<i32>(p) : load<u64>(p);
      if (!ranges.has(t)) break;
      if (out != 0 && n < cap) store<u64>(out + (<usize>n << 3), t);
      n++;
      if (check != null && check.inside(t)) {
        check!.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, at, t, "the jump table at " + hex(base) + " (entry " + i.toString() + " at " + hex(at) + ") goes to " + hex(t) + ", inside the window [" + hex(check.s) + ", " + hex(check.e) + ")");
      }
      at += es;
    }
  }
  return n;
}

// ---- the check ---------------------------------------------------------------------

const W = new X86Writer(0, 0, 0);

/** Runs the entry check of the request at `req`, writing the result at `out`. Returns its status. */
export function entryCheck(req: usize, out: usize): i32 {
  memory.fill(out, 0, RES_SIZE);
  const c = new Check();
  c.code = <usize>load<u32>(req);
  c.codeLen = load<u32>(req, 4);
  c.codeAddr = load<u64>(req, 8);
  const fn = load<u64>(req, 16);
  const size = load<u64>(req, 24);
  const dest = load<u64>(req, 32);
  const nextSym = load<u64>(req, 40);
  const ranges = <usize>load<u32>(req, 48);
  const nranges = load<u32>(req, 52);
  const targets = <usize>load<u32>(req, 56);
  const ntargets = load<u32>(req, 60);
  const data = <usize>load<u32>(req, 64);
  const dataLen = <u64>load<u32>(req, 68);
  const dataAddr = load<u64>(req, 72);
  // The buffers the host points to must lie in memory (a read outside it would trap).
  if (!inMemory(c.code, c.codeLen) || !inMemory(ranges, <u64>nranges << 4) || !inMemory(targets, <u64>ntargets << 3) || !inMemory(data, dataLen)) {
    return done(out, c, fail(Err.BAD_ARGUMENT, "x86_entry_check: a buffer of the request (code, ranges, targets or data) lies outside memory"));
  }
  if (size == 0 || !c.inCode(fn, size)) {
    return done(out, c, fail(Err.BAD_ARGUMENT, "x86_entry_check: the function [" + hex(fn) + ", +" + hex(size) + ") is not inside the code given [" + hex(c.codeAddr) + ", +" + hex(c.codeLen) + ")"));
  }
  if (nranges > MAX_LIST || ntargets > MAX_LIST) {
    return done(out, c, fail(Err.BAD_ARGUMENT, "x86_entry_check: more than " + MAX_LIST.toString() + " ranges or targets"));
  }
  for (let i: u32 = 0; i < nranges; i++) {
    const lo = load<u64>(ranges + (<usize>i << 4));
    const hi = load<u64>(ranges + (<usize>i << 4), 8);
    if (hi <= lo || !c.inCode(lo, hi - lo)) {
      return done(out, c, fail(Err.BAD_ARGUMENT, "x86_entry_check: range " + i.toString() + " [" + hex(lo) + ", " + hex(hi) + ") is empty or not inside the code given"));
    }
  }
  const fnEnd = fn + size;
  const p0 = c.code + <usize>(fn - c.codeAddr);
  // endbr64 stays first.
  let flags: u32 = 0;
  c.s = fn;
  if (size >= 4 && load<u32>(p0) == 0xfa1e0ff3) {
    c.s = fn + 4;
    flags |= 1;
  }
  const J = jmpSize(c.s, dest);
  c.e = c.s + <u64>J;
  if (J == JMP_ABS_SIZE) flags |= 2;
  store<u32>(out, <u32>(c.s - fn), 4);
  store<u32>(out, J, 8);
  store<u64>(out, c.s, 16);
  // Room: the function, or proven padding up to the next symbol.
  let padding: u32 = 0;
  if (c.e > fnEnd) {
    let why = "";
    if (nextSym == 0) why = "the next symbol is not known";
    else if (nextSym < c.e) why = "the next symbol is at " + hex(nextSym);
    else if (!c.inCode(fnEnd, nextSym - fnEnd)) why = "the bytes up to the next symbol " + hex(nextSym) + " are not in the code given";
    else {
      let a = fnEnd;
      while (a < nextSym) {
        const l = decodeOne(c.code + <usize>(a - c.codeAddr), c.code + <usize>c.codeLen, a);
        if (l == 0 || (insnKind != Kind.NOP && insnKind != Kind.INT3) || a + <u64>l > nextSym) {
          why = "the byte" + (l == 0 ? "s" : "s of the instruction") + " at " + hex(a) + " are not padding (nop or int3 up to the next symbol " + hex(nextSym) + ")";
          break;
        }
        a += <u64>l;
      }
    }
    if (why.length > 0) {
      c.refuse(Err.X86_TOO_SHORT, fn, 0, "the function at " + hex(fn) + " is " + size.toString() + " bytes; the jump to " + hex(dest) + " needs " +
        J.toString() + (c.s > fn ? " after its endbr64" : "") + " (" + (c.e - fn).toString() + " bytes), and " + why);
      return done(out, c, fail(c.status, c.message));
    }
    padding = <u32>(c.e - fnEnd);
    flags |= 4;
  }
  // The function itself, then the extra ranges.
  if (!scan(c, fn, fnEnd, "the function at " + hex(fn), true)) return done(out, c, fail(c.status, c.message));
  // Cover: from s to the end of the last instruction the window touches.
  {
    let a = fn;
    let coverEnd = c.e;
    while (a < fnEnd) {
      const l = decodeOne(c.code + <usize>(a - c.codeAddr), c.code + <usize>c.codeLen, a);
      const next = a + <u64>l;
      if (a < c.e && next > c.e) coverEnd = next;
      if (next >= c.e || l == 0) break;
      a = next;
    }
    store<u32>(out, <u32>(coverEnd - c.s), 12);
  }
  for (let i: u32 = 0; i < nranges; i++) {
    const lo = load<u64>(ranges + (<usize>i << 4));
    const hi = load<u64>(ranges + (<usize>i << 4), 8);
    if (!scan(c, lo, hi, "range " + i.toString() + " [" + hex(lo) + ", " + hex(hi) + ")", false)) return done(out, c, fail(c.status, c.message));
  }
  for (let i: u32 = 0; i < ntargets; i++) {
    const t = load<u64>(targets + (<usize>i << 3));
    if (c.inside(t)) {
      c.refuse(Err.X86_BRANCH_INTO_PATCH_SITE, 0, t, "target " + i.toString() + " of the list given, " + hex(t) + ", is inside the window [" + hex(c.s) + ", " + hex(c.e) + ")");
      return done(out, c, fail(c.status, c.message));
    }
  }
  // Jump tables through the data given.
  if (dataLen > 0) {
    const rs = new Ranges(<i32>nranges + 1);
    rs.add(fn, fnEnd);
    const refs = new TableRefs();
    collectTableRefs(c, fn, fnEnd, dataAddr, dataLen, refs);
    for (let i: u32 = 0; i < nranges; i++) {
      const lo = load<u64>(ranges + (<usize>i << 4));
      const hi = load<u64>(ranges + (<usize>i << 4), 8);
      rs.add(lo, hi);
      collectTableRefs(c, lo, hi, dataAddr, dataLen, refs);
    }
    const n = readTables(refs, data, dataLen, dataAddr, rs, 0, 0, c);
    store<u32>(out, n, 56);
    if (c.status != 0) return done(out, c, fail(c.status, c.message));
  }
  // The jump.
  W.reset(out + 64, 16, c.s);
  W.putJmp(dest);
  store<u32>(out, W.size, 60);
  store<u32>(out, flags, 40);
  store<u32>(out, padding, 44);
  return done(out, c, 0);
}

function done(out: usize, c: Check, status: i32): i32 {
  store<i32>(out, status);
  store<u64>(out, c.culprit, 24);
  store<u64>(out, c.culpritTarget, 32);
  store<u32>(out, c.insns, 48);
  store<u32>(out, c.indirect, 52);
  return status;
}

/**
 * Jump-table targets of linked code: decodes [from, to) of the code (and the extra
 * ranges), follows the table references into the data, writes the targets (u64) to
 * `out` (room for `cap`) and returns how many there are (all of them, even past cap).
 */
export function jumpTables(code: usize, codeLen: u64, codeAddr: u64, from: u64, to: u64, ranges: usize, nranges: u32,
  data: usize, dataLen: u64, dataAddr: u64, out: usize, cap: u32): i32 {
  const c = new Check();
  c.code = code;
  c.codeLen = codeLen;
  c.codeAddr = codeAddr;
  if (!inMemory(code, codeLen) || !inMemory(ranges, <u64>nranges << 4) || !inMemory(data, dataLen) || !inMemory(out, <u64>cap << 3)) {
    fail(Err.BAD_ARGUMENT, "x86_jump_tables: a buffer lies outside memory");
    return -1;
  }
  if (to <= from || !c.inCode(from, to - from) || nranges > MAX_LIST) {
    fail(Err.BAD_ARGUMENT, "x86_jump_tables: the code range [" + hex(from) + ", " + hex(to) + ") is not inside the code given, or too many ranges");
    return -1;
  }
  const rs = new Ranges(<i32>nranges + 1);
  rs.add(from, to);
  const refs = new TableRefs();
  collectTableRefs(c, from, to, dataAddr, dataLen, refs);
  for (let i: u32 = 0; i < nranges; i++) {
    const lo = load<u64>(ranges + (<usize>i << 4));
    const hi = load<u64>(ranges + (<usize>i << 4), 8);
    if (hi <= lo || !c.inCode(lo, hi - lo)) {
      fail(Err.BAD_ARGUMENT, "x86_jump_tables: range " + i.toString() + " is empty or not inside the code given");
      return -1;
    }
    rs.add(lo, hi);
    collectTableRefs(c, lo, hi, dataAddr, dataLen, refs);
  }
  return <i32>readTables(refs, data, dataLen, dataAddr, rs, out, cap, null);
}
