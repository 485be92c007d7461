// Per-thread stack-scan analysis: is any frame of this thread inside code about to
// be replaced (the forbidden ranges), or is a pc inside an entry window about to
// be overwritten?
//
// Precise mode unwinds with CFI (unwind.ts) and checks every frame:
//   frame 0, and a frame a signal interrupted: pc is exact, checked as is;
//   other frames: pc is a return address, checked as pc-1 (the call instruction:
//   a call that ends a function returns to the next function's first byte).
//   Entry windows [lo, hi): a pc strictly inside (lo < pc < hi) would resume in the
//   middle of the jump written there; pc == lo runs the new jump, which is fine.
// The outermost forbidden frame is reported with its return address and the CFA
// (the stack pointer once it has returned), what the caller waits on.
//
// Conservative mode checks pc and every aligned word from the stack pointer to the
// top of the stack's mapping, as a return address (word-1 in a range, word
// strictly inside a window). Used where precise unwinding fails, and said so.
//
// Both run on the memory the host gave (mem.ts). When that is not enough they
// report NEED_MEMORY and the address wanted, so the host copies more and asks
// again, instead of copying whole stacks inside the pause.
//
// The word scan's hot loop tests 8 words at a time with Wasm SIMD against the
// bounding box of all ranges: (w - 1 - boxLo) < (boxHi - boxLo), unsigned; Wasm
// has only signed i64x2 compares, so both sides have their sign bit flipped.
// Words in the box go through the exact range search.
import { Err, fail, hex } from "../error";
import { Registry } from "./cfi";
import { errDepth } from "./errors";
import { sortByKey } from "./sort";
import { setSegments, segs, nsegs, SEG_SIZE, memFault, MEM_OUTSIDE, needAddr } from "./mem";
import { regs, step, startFrame, STEP_OK, STEP_OUTERMOST, stepCfa, stepSignal, stepRaSlot, stepMemory } from "./unwind";
import { REG_RSP, REG_RIP, USER_REGS_OFF } from "./dwarf";

// Range record (32 bytes): u64 lo, u64 hi, u64 max hi of this and all before (sorted by lo), u32 id.
const RANGE_SIZE: usize = 32;

@final @unmanaged
export class RangeSet {
  p: usize = 0;
  n: u32 = 0;
  cap: u32 = 0;
  sorted: bool = true;

  add(lo: u64, hi: u64, id: u32): void {
    if (this.n == this.cap) {
      const cap = this.cap == 0 ? 16 : this.cap * 2;
      const q = heap.alloc(<usize>cap * RANGE_SIZE);
      if (this.p != 0) { memory.copy(q, this.p, <usize>this.n * RANGE_SIZE); heap.free(this.p); }
      this.p = q;
      this.cap = cap;
    }
    const e = this.p + <usize>this.n * RANGE_SIZE;
    store<u64>(e, lo);
    store<u64>(e, hi, 8);
    store<u64>(e, 0, 16);
    store<u32>(e, id, 24);
    store<u32>(e, 0, 28);
    this.n++;
    this.sorted = false;
  }

  prepare(): void {
    if (this.sorted) return;
    sortByKey(this.p, this.n, RANGE_SIZE);
    let m: u64 = 0;
    for (let i: u32 = 0; i < this.n; i++) {
      const e = this.p + <usize>i * RANGE_SIZE;
      const hi = load<u64>(e, 8);
      if (hi > m) m = hi;
      store<u64>(e, m, 16);
    }
    this.sorted = true;
  }

  /** Index of a range holding a, or -1. Ranges may overlap (memcpy/memmove share code). */
  @inline find(a: u64): i32 {
    let lo: i32 = 0;
    let hi: i32 = <i32>this.n - 1;
    let idx: i32 = -1;
    const p = this.p;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (load<u64>(p + <usize>mid * RANGE_SIZE) <= a) { idx = mid; lo = mid + 1; }
      else hi = mid - 1;
    }
    for (let j = idx; j >= 0; j--) {
      const e = p + <usize>j * RANGE_SIZE;
      if (load<u64>(e, 16) <= a) return -1; // no range at or before j reaches a
      if (a < load<u64>(e, 8)) return j;
    }
    return -1;
  }

  @inline id(i: i32): u32 { return load<u32>(this.p + <usize>i * RANGE_SIZE, 24); }
  @inline lo(): u64 { return this.n == 0 ? <u64>-1 : load<u64>(this.p); }
  @inline hi(): u64 { return this.n == 0 ? 0 : load<u64>(this.p + <usize>(this.n - 1) * RANGE_SIZE, 16); }

  free(): void {
    if (this.p != 0) heap.free(this.p);
    heap.free(changetype<usize>(this));
  }
}

@final @unmanaged
export class ScanSet {
  reg: Registry;
  forbidden: RangeSet = new RangeSet();
  // Entry windows stored as [lo, hi-1) and searched with pc-1: "lo < pc < hi".
  windows: RangeSet = new RangeSet();
  constructor(reg: Registry) { this.reg = reg; reg.users++; }

  addForbidden(lo: u64, hi: u64, id: u32): void { this.forbidden.add(lo, hi, id); }
  addWindow(lo: u64, hi: u64, id: u32): void { this.windows.add(lo, hi - 1, id); }
  free(): void {
    this.forbidden.free();
    this.windows.free();
    this.reg.release();
    heap.free(changetype<usize>(this));
  }
}

// Flags of stack_scan_thread.
export const SCAN_PRECISE: u32 = 1;
export const SCAN_CONSERVATIVE: u32 = 2;
export const SCAN_NO_MORE: u32 = 4; // the host has no more memory to give: missing memory is a failure

// Result record (see docs/core-abi.md), 96 bytes.
export const RESULT_SIZE: usize = 96;
export const STATUS_CLEAR: u32 = 0;
export const STATUS_FORBIDDEN: u32 = 1;
export const STATUS_NEED_MEMORY: u32 = 2;
export const STATUS_FAILED: u32 = 3;
export const MODE_PRECISE: u32 = 1;
export const MODE_CONSERVATIVE: u32 = 2;
export const RES_OUTERMOST: u32 = 1; //  precise: reached the outermost frame
export const RES_INCOMPLETE: u32 = 2; // conservative: some stack was missing (SCAN_NO_MORE)
export const RES_OUTSIDE: u32 = 4; //    NEED_MEMORY: the address is in no segment's mapping
export const RES_TRUNCATED: u32 = 8; //  more frames than the frame buffer holds

// Frame record, 32 bytes: u64 pc, u64 cfa, u64 sp, u32 flags, i32 forbidden range id.
export const FRAME_SIZE: usize = 32;
export const FRAME_EXACT: u32 = 1; //      pc is exact (frame 0, or interrupted by a signal)
export const FRAME_SIGNAL: u32 = 2; //     a signal trampoline: its caller was interrupted
export const FRAME_OUTERMOST: u32 = 4; //  the return address is undefined: no caller
export const FRAME_FAILED: u32 = 8; //     unwinding stopped here on an error
export const FRAME_WINDOW: u32 = 16; //    pc strictly inside an entry window

// Result fields, kept in globals while a scan runs and written out at the end.
let rStatus: u32 = 0;
let rMode: u32 = 0;
let rFrames: u32 = 0;
let rFlags: u32 = 0;
let rDepth: i32 = -1;
let rRange: i32 = -1;
let rWindow: i32 = -1;
let rWindowDepth: i32 = -1;
let rHits: u32 = 0;
let rFallback: i32 = 0;
let rNeed: u64 = 0;
let rPc: u64 = 0;
let rReturn: u64 = 0;
let rReturnSp: u64 = 0;
let rSlot: u64 = 0;
let rEndPc: u64 = 0;
let rWords: u64 = 0;

function resetResult(): void {
  rStatus = STATUS_CLEAR; rMode = 0; rFrames = 0; rFlags = 0; rDepth = -1; rRange = -1; rWindow = -1;
  rWindowDepth = -1; rHits = 0; rFallback = 0; rNeed = 0; rPc = 0; rReturn = 0; rReturnSp = 0;
  rSlot = 0; rEndPc = 0; rWords = 0;
}

function writeResult(out: usize): void {
  if (rStatus == STATUS_CLEAR && (rHits > 0 || rWindow >= 0)) rStatus = STATUS_FORBIDDEN;
  store<u32>(out, rStatus);
  store<u32>(out, rMode, 4);
  store<u32>(out, rFrames, 8);
  store<u32>(out, rFlags, 12);
  store<i32>(out, rDepth, 16);
  store<i32>(out, rRange, 20);
  store<i32>(out, rWindow, 24);
  store<i32>(out, rWindowDepth, 28);
  store<u32>(out, rHits, 32);
  store<i32>(out, rFallback, 36);
  store<u64>(out, rNeed, 40);
  store<u64>(out, rPc, 48);
  store<u64>(out, rReturn, 56);
  store<u64>(out, rReturnSp, 64);
  store<u64>(out, rSlot, 72);
  store<u64>(out, rEndPc, 80);
  store<u64>(out, rWords, 88);
}

/** Checks the segment records the host gave. Returns 0 or an error code. */
export function checkSegments(p: usize, n: u32): i32 {
  if (n > 16) return fail(Err.BAD_ARGUMENT, "stack_scan_thread: " + n.toString() + " stack segments (at most 16)");
  const memEnd = <u64>memory.size() << 16;
  for (let i: u32 = 0; i < n; i++) {
    const s = p + <usize>i * SEG_SIZE;
    const wp = load<u64>(s);
    const wl = load<u64>(s, 8);
    if (wp > memEnd || wl > memEnd - wp) {
      return fail(Err.BAD_ARGUMENT, "stack segment " + i.toString() + ": window " + hex(wp) + "+" + hex(wl) + " is not in core memory");
    }
    const wa = load<u64>(s, 16);
    if (wa + wl < wa) return fail(Err.BAD_ARGUMENT, "stack segment " + i.toString() + ": window address " + hex(wa) + "+" + hex(wl) + " wraps around");
    if (load<u64>(s, 24) > load<u64>(s, 32)) {
      return fail(Err.BAD_ARGUMENT, "stack segment " + i.toString() + ": mapping " + hex(load<u64>(s, 24)) + ".." + hex(load<u64>(s, 32)) + " ends before it starts");
    }
  }
  return 0;
}

/**
 * Analyses one thread. The result goes to `out` (RESULT_SIZE bytes), the frames of
 * a precise unwind to `frames` (up to `cap` records of FRAME_SIZE).
 */
export function analyze(set: ScanSet, userRegs: usize, segP: usize, nseg: u32, flags: u32, maxFrames: u32,
                        frames: usize, cap: u32, out: usize): void {
  resetResult();
  set.forbidden.prepare();
  set.windows.prepare();
  setSegments(segP, nseg);
  if ((flags & SCAN_PRECISE) != 0) {
    startFrame(userRegs);
    const r = precise(set, flags, maxFrames, frames, cap);
    if (r == 0 || rStatus == STATUS_NEED_MEMORY) { writeResult(out); return; }
    rFallback = r;
    if ((flags & SCAN_CONSERVATIVE) == 0) { rStatus = STATUS_FAILED; writeResult(out); return; }
    // Fall back: forget what the partial unwind found (the word scan covers it).
    const fb = rFallback, nf = rFrames, fl = rFlags & RES_TRUNCATED, endPc = rEndPc;
    resetResult();
    rFallback = fb; rFrames = nf; rFlags = fl; rEndPc = endPc;
    setSegments(segP, nseg);
  }
  conservative(set, userRegs, flags);
  writeResult(out);
}

/** Precise mode. Returns 0 when the unwind ended cleanly (or NEED_MEMORY was set), else the failure's code. */
function precise(set: ScanSet, flags: u32, maxFrames: u32, frames: usize, cap: u32): i32 {
  rMode = MODE_PRECISE;
  const reg = set.reg;
  let exact = true;
  let k: u32 = 0;
  let pendingReturn = false; // the outermost forbidden frame so far wants the next pc as its return address
  while (true) {
    const pc = load<u64>(regs + <usize>REG_RIP * 8);
    const sp = load<u64>(regs + <usize>REG_RSP * 8);
    rEndPc = pc;
    if (pendingReturn) { rReturn = pc; pendingReturn = false; }
    if (k >= maxFrames) {
      rFrames = k;
      return errDepth(maxFrames);
    }
    const a = exact ? pc : pc - 1;
    const fr = set.forbidden.n > 0 ? set.forbidden.find(a) : -1;
    const wi = set.windows.n > 0 ? set.windows.find(pc - 1) : -1;
    const r = step(reg, exact);
    let ff: u32 = exact ? FRAME_EXACT : 0;
    let cfa: u64 = 0;
    if (r == STEP_OK) { cfa = stepCfa; if (stepSignal) ff |= FRAME_SIGNAL; }
    else if (r == STEP_OUTERMOST) { cfa = stepCfa; ff |= FRAME_OUTERMOST; }
    else ff |= FRAME_FAILED;
    if (wi >= 0) ff |= FRAME_WINDOW;
    if (k < cap) {
      const f = frames + <usize>k * FRAME_SIZE;
      store<u64>(f, pc);
      store<u64>(f, cfa, 8);
      store<u64>(f, sp, 16);
      store<u32>(f, ff, 24);
      store<i32>(f, fr >= 0 ? <i32>set.forbidden.id(fr) : -1, 28);
    } else rFlags |= RES_TRUNCATED;
    if (fr >= 0) {
      rHits++;
      rDepth = <i32>k;
      rRange = <i32>set.forbidden.id(fr);
      rPc = pc;
      rReturnSp = cfa;
      rSlot = r == STEP_OK ? stepRaSlot : 0;
      rReturn = 0;
      pendingReturn = r == STEP_OK;
    }
    if (wi >= 0 && rWindow < 0) { rWindow = <i32>set.windows.id(wi); rWindowDepth = <i32>k; }
    k++;
    rFrames = k;
    if (r == STEP_OUTERMOST) { rFlags |= RES_OUTERMOST; return 0; }
    if (r != STEP_OK) {
      if (stepMemory && (flags & SCAN_NO_MORE) == 0) {
        rStatus = STATUS_NEED_MEMORY;
        rNeed = needAddr;
        if (memFault == MEM_OUTSIDE) rFlags |= RES_OUTSIDE;
        return 0;
      }
      return r;
    }
    exact = stepSignal;
    // A zero return address ends the stack too (libgcc's rule).
    if (load<u64>(regs + <usize>REG_RIP * 8) == 0) {
      if (pendingReturn) pendingReturn = false;
      rFlags |= RES_OUTERMOST;
      return 0;
    }
  }
  return 0;
}

// Conservative scan state.
let boxLo: u64 = 0;
let boxSpan: u64 = 0;

function conservative(set: ScanSet, userRegs: usize, flags: u32): void {
  rMode = MODE_CONSERVATIVE;
  const pc = load<u64>(userRegs + <usize>load<u32>(USER_REGS_OFF + <usize>REG_RIP * 4));
  const rsp = load<u64>(userRegs + <usize>load<u32>(USER_REGS_OFF + <usize>REG_RSP * 4));
  rEndPc = pc;
  // pc: exact.
  if (set.forbidden.n > 0) {
    const fr = set.forbidden.find(pc);
    if (fr >= 0) { rHits = 1; rDepth = 0; rRange = <i32>set.forbidden.id(fr); rPc = pc; rSlot = 0; }
  }
  if (set.windows.n > 0) {
    const wi = set.windows.find(pc - 1);
    if (wi >= 0) { rWindow = <i32>set.windows.id(wi); rWindowDepth = 0; }
  }
  const fl = set.forbidden.lo(), wl = set.windows.lo();
  const fh = set.forbidden.hi(), wh = set.windows.hi();
  const lo = fl < wl ? fl : wl;
  const hi = fh > wh ? fh : wh;
  const anything = hi > lo;
  boxLo = lo;
  boxSpan = anything ? hi - lo : 0;
  // The stack pointer's segment is scanned from rsp, others from their window's start.
  let found = false;
  for (let i: u32 = 0; i < nsegs; i++) {
    const s = segs + <usize>i * SEG_SIZE;
    const wp = <usize>load<u64>(s);
    const wlen = load<u64>(s, 8);
    const wa = load<u64>(s, 16);
    const mlo = load<u64>(s, 24);
    const mhi = load<u64>(s, 32);
    let from = wa;
    if (rsp >= mlo && rsp < mhi) { from = rsp; found = true; }
    from = (from + 7) & ~(<u64>7);
    const to = mhi & ~(<u64>7);
    if (from >= to) continue;
    const wend = wa + wlen;
    let scanFrom = from, scanTo = to;
    if (from < wa || wend < to) {
      if ((flags & SCAN_NO_MORE) == 0) {
        rStatus = STATUS_NEED_MEMORY;
        rNeed = from < wa ? from : wend;
        return;
      }
      rFlags |= RES_INCOMPLETE;
      if (scanFrom < wa) scanFrom = (wa + 7) & ~(<u64>7);
      if (scanTo > wend) scanTo = wend & ~(<u64>7);
      if (scanFrom >= scanTo) continue;
    }
    const n = (scanTo - scanFrom) >> 3;
    rWords += n;
    if (anything) scanWords(set, wp + <usize>(scanFrom - wa), <usize>n, scanFrom);
  }
  if (!found) {
    if ((flags & SCAN_NO_MORE) == 0) { rStatus = STATUS_NEED_MEMORY; rNeed = rsp; rFlags |= RES_OUTSIDE; return; }
    rFlags |= RES_INCOMPLETE;
  }
}

/** Checks one word found in the box; addr is its stack address. */
@inline function checkWord(set: ScanSet, w: u64, addr: u64): void {
  const a = w - 1;
  if (set.forbidden.n > 0) {
    const fr = set.forbidden.find(a);
    if (fr >= 0) { rHits++; rDepth = -1; rRange = <i32>set.forbidden.id(fr); rPc = w; rSlot = addr; }
  }
  if (set.windows.n > 0 && rWindow < 0) {
    const wi = set.windows.find(a);
    if (wi >= 0) { rWindow = <i32>set.windows.id(wi); rWindowDepth = -1; }
  }
}

const SIGN: u64 = 0x8000000000000000;

/** The word scan over n words at p (target address addr); hits update the result globals. */
export function scanWords(set: ScanSet, p: usize, n: usize, addr: u64): void {
  let i: usize = 0;
  if (ASC_FEATURE_SIMD) {
    const base = i64x2.splat(<i64>(boxLo + 1));
    const lim = i64x2.splat(<i64>(boxSpan ^ SIGN));
    const sign = i64x2.splat(<i64>SIGN);
    // 8 words (64 bytes) per iteration.
    const n8 = n & ~(<usize>7);
    while (i < n8) {
      const q = p + (i << 3);
      const m0 = i64x2.lt_s(v128.xor(i64x2.sub(v128.load(q), base), sign), lim);
      const m1 = i64x2.lt_s(v128.xor(i64x2.sub(v128.load(q, 16), base), sign), lim);
      const m2 = i64x2.lt_s(v128.xor(i64x2.sub(v128.load(q, 32), base), sign), lim);
      const m3 = i64x2.lt_s(v128.xor(i64x2.sub(v128.load(q, 48), base), sign), lim);
      if (v128.any_true(v128.or(v128.or(m0, m1), v128.or(m2, m3)))) {
        for (let j: usize = 0; j < 8; j++) {
          const w = load<u64>(q + (j << 3));
          if (w - boxLo - 1 < boxSpan) checkWord(set, w, addr + (<u64>(i + j) << 3));
        }
      }
      i += 8;
    }
  } else {
    // Portable build: 4 words per iteration, one branch for the four.
    const n4 = n & ~(<usize>3);
    const lo1 = boxLo + 1;
    const span = boxSpan;
    while (i < n4) {
      const q = p + (i << 3);
      const a = load<u64>(q) - lo1 < span;
      const b = load<u64>(q, 8) - lo1 < span;
      const c = load<u64>(q, 16) - lo1 < span;
      const d = load<u64>(q, 24) - lo1 < span;
      if (a | b | c | d) {
        for (let j: usize = 0; j < 4; j++) {
          const w = load<u64>(q + (j << 3));
          if (w - lo1 < span) checkWord(set, w, addr + (<u64>(i + j) << 3));
        }
      }
      i += 4;
    }
  }
  for (; i < n; i++) {
    const w = load<u64>(p + (i << 3));
    if (w - boxLo - 1 < boxSpan) checkWord(set, w, addr + (<u64>i << 3));
  }
}
