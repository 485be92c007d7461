// The function-level diff of two ET_REL objects: the original build's and the patched one's.
//
// A function is unchanged when its unrelocated bytes are equal (relocation fields masked)
// and every relocation refers to the same thing, which is decided by what the relocation
// resolves to (resolve() below), never by raw symbol numbers or addends:
//
//   undefined symbol         the same name, the same addend
//   function of the object   its counterpart (paired by normalized name: `foo.part.0` and
//                            `foo.part.3` are one), the same offset from its start
//   named data               its counterpart (globals and file-scope statics by name,
//                            block-scope statics `x.N` through the references of both
//                            versions of the functions that use them), the same offset
//   .rodata.str* (merged)    the same NUL-terminated string at S + A + tail
//   .rodata.cst* (merged)    the same constant (sh_entsize bytes) at S + A + tail
//   compiler-made rodata     equivalent contents, compared recursively the same way:
//                            jump tables (`.rodata.<fn>`, entries are references into
//                            the function), CSWTCH tables, __func__, LSDA
//
// so a string or constant elsewhere in the file changing, or gcc renumbering `.LC5`,
// `calls.3` or `foo.constprop.1`, does not make a function differ, while any change
// of what the code reads, calls or jumps to does.
//
// Then: a cold piece and its parent change together (the piece jumps back into the
// parent's body); a function that refers into the middle of a changed one changes too.
// A function whose only differences are 32-bit immediates that look like source line
// numbers (__LINE__ in assert and logging macros) is reported as line-only when the line
// table proves it (see checkLines). Named data that exists in both objects must keep its
// size and initial value; new thread-local variables and new constructors are refused.
import { Err } from "../error";
import { fnv1a } from "../bytes";
import * as D from "../elf/defs";
import { Obj } from "./object";
import { Lines, readLines } from "./lines";
import { ripTail } from "./tail";
import { constantLoadImm } from "./insn";
import { normalize } from "./names";
import {
  relocFieldSize, relocIsPcRelative,
  SK_TEXT, SK_DATA, SK_RODATA, SK_STR, SK_CONST, SK_TLS, SK_INIT, SK_LSDA,
  T_NONE, T_EXTERNAL, T_FUNC, T_DATA, T_STR, T_CONST, T_PRIVATE, T_ABS, T_SECTION,
  KIND_COLD,
  ST_UNCHANGED, ST_CHANGED, ST_LINE_ONLY, ST_ADDED, ST_REMOVED,
  WHY_NONE, WHY_SIZE, WHY_BYTES, WHY_RELOC_COUNT, WHY_RELOC_LAYOUT, WHY_RELOC_TARGET, WHY_PIECE, WHY_COUPLED,
  WHY_NO_LINES, WHY_LINE_MISMATCH, WHY_LSDA,
  REF_PRIVATE, REF_STRINGS, REF_CONSTS, REF_LSDA, REF_DATA, REF_NEW_DATA, REF_FUNCTION, REF_EXTERNAL, REF_SECTION, REF_ABS,
  DWHY_SIZE, DWHY_VALUE, DWHY_KIND,
  FUNC_REC, REF_REC, DATA_REC, REFUSAL_REC, SITE_REC, LINE_SLACK, LINE_MAX,
} from "./defs";

/** A growable array of fixed-size records in one buffer. */
export class Buf {
  data: StaticArray<u8> = new StaticArray<u8>(0);
  len: u32 = 0; // bytes used

  /** Appends `size` zeroed bytes; returns their address (valid until the next push). */
  push(size: u32): usize {
    if (<u64>this.len + size > <u64>this.data.length) {
      let cap = max<i32>(256, this.data.length);
      while (<i64>cap < <i64>this.len + size) cap *= 2;
      const grown = new StaticArray<u8>(cap);
      memory.copy(changetype<usize>(grown), changetype<usize>(this.data), this.len);
      this.data = grown;
    }
    const p = changetype<usize>(this.data) + this.len;
    memory.fill(p, 0, size);
    this.len += size;
    return p;
  }

  @inline at(offset: u32): usize {
    return changetype<usize>(this.data) + offset;
  }
}

// Result of resolve(): what a relocation refers to.
let tKind: u8 = 0;
let tIdx: i64 = 0; // symbol (external, abs), function, data or section index
let tOff: i64 = 0; // offset from the start of the function or object; position in the section otherwise

// Result of a comparison that differs: why and where (offset from the start of the range).
let cWhy: u8 = 0;
let cAt: i64 = -1;

const MAX_DEPTH: i32 = 32;

export class Diff {
  a: Obj;
  b: Obj;
  linesA: Lines | null = null;
  linesB: Lines | null = null;
  linesRead: bool = false;

  fPairA: StaticArray<i32>; // function of A -> function of B, -1
  fPairB: StaticArray<i32>;
  dPairA: StaticArray<i32>; // data of A -> data of B, -1
  dPairB: StaticArray<i32>;

  fStatus: StaticArray<u8>; // per function of B
  fWhy: StaticArray<u8>;
  fAt: StaticArray<i32>;
  fSiteFirst: StaticArray<u32>;
  fSiteCount: StaticArray<u32>;
  fParentB: StaticArray<i32>; // the B function a cold piece or clone belongs to, -1
  dStatus: StaticArray<u8>; // per data of B
  dWhy: StaticArray<u8>;
  dAmbiguous: StaticArray<i32>; // B data paired two ways: the other A candidate symbol, else -1

  memoPeer: StaticArray<i32>; // per section of A: the section of B last compared as private data
  memoRes: StaticArray<u8>; // 0 none, 1 in progress, 2 equal, 3 different
  depth: i32 = 0;

  tmpSites: Buf = new Buf(); // sites of the function being compared: offset, old, new (u32 each)
  funcs: Buf = new Buf();
  refs: Buf = new Buf();
  datas: Buf = new Buf();
  refusals: Buf = new Buf();
  sites: Buf = new Buf();
  messages: Array<ArrayBuffer> = [];
  nfuncRec: u32 = 0;
  ndataRec: u32 = 0;

  // scratch for normalized section names
  scratchA: StaticArray<u8> = new StaticArray<u8>(0);
  scratchB: StaticArray<u8> = new StaticArray<u8>(0);

  constructor(a: Obj, b: Obj) {
    this.a = a;
    this.b = b;
    this.fPairA = filled(a.nfunc, -1);
    this.fPairB = filled(b.nfunc, -1);
    this.dPairA = filled(a.ndata, -1);
    this.dPairB = filled(b.ndata, -1);
    this.fStatus = new StaticArray<u8>(b.nfunc);
    this.fWhy = new StaticArray<u8>(b.nfunc);
    this.fAt = filled(b.nfunc, -1);
    this.fSiteFirst = new StaticArray<u32>(b.nfunc);
    this.fSiteCount = new StaticArray<u32>(b.nfunc);
    this.fParentB = filled(b.nfunc, -1);
    this.dStatus = new StaticArray<u8>(b.ndata);
    this.dWhy = new StaticArray<u8>(b.ndata);
    this.dAmbiguous = filled(b.ndata, -1);
    this.memoPeer = filled(a.nsec, -1);
    this.memoRes = new StaticArray<u8>(a.nsec);
  }

  run(): void {
    this.pairFunctions();
    this.pairData();
    for (let fb: u32 = 0; fb < this.b.nfunc; fb++) {
      const fa = unchecked(this.fPairB[fb]);
      if (fa < 0) {
        unchecked(this.fStatus[fb] = ST_ADDED);
        continue;
      }
      this.compareFunction(<u32>fa, fb);
    }
    this.findParents();
    this.propagate();
    this.compareData();
    this.checkConstructors();
    this.writeRecords();
  }

  // ---- pairing ------------------------------------------------------------------

  /**
   * Functions pair by normalized name; gcc's numbers only tell apart clones of one
   * function (`foo.constprop.0`, `foo.constprop.1`), which pair in symbol order.
   */
  private pairFunctions(): void {
    const a = this.a;
    const b = this.b;
    const cursor = filled(a.nsym, -2); // per chain head: next A symbol to pair, -1 when exhausted
    for (let fb: u32 = 0; fb < b.nfunc; fb++) {
      const sb = unchecked(b.funcs[fb]);
      const head = a.lookup(false, b, sb);
      if (head < 0) continue;
      let cur = unchecked(cursor[head]);
      if (cur == -2) cur = head;
      if (cur < 0) continue;
      unchecked(cursor[head] = unchecked(a.sameNext[cur]));
      const fa = unchecked(a.sFunc[cur]);
      unchecked(this.fPairA[fa] = <i32>fb);
      unchecked(this.fPairB[fb] = fa);
    }
  }

  /**
   * Named data pairs by name, except block-scope statics (`calls.0`), whose numbers
   * follow every static of the file: those pair through the functions that use them.
   * For each pair of functions, the k-th distinct static named `x.*` that the original
   * refers to (in relocation order) is the k-th one the patched version refers to.
   * Every function must agree; a static no paired function refers to pairs by name
   * when the name is unique on both sides.
   */
  private pairData(): void {
    const a = this.a;
    const b = this.b;
    // Named data without gcc's number: by exact name.
    for (let db: u32 = 0; db < b.ndata; db++) {
      const sb = unchecked(b.datas[db]);
      if (b.isNumberedLocal(sb)) continue;
      let s = a.lookup(true, b, sb);
      while (s >= 0) {
        const da = unchecked(a.sData[s]);
        if (!a.isNumberedLocal(<u32>s) && unchecked(this.dPairA[da]) < 0 && a.sameName(<u32>s, b, sb)) {
          unchecked(this.dPairA[da] = <i32>db);
          unchecked(this.dPairB[db] = da);
          break;
        }
        s = unchecked(a.sameNext[s]);
      }
    }
    // Block-scope statics through references.
    const vote = filled(b.ndata, -1);
    const stampA = filled(a.nsym, -1);
    const stampB = filled(b.nsym, -1);
    const listA = new StaticArray<u32>(256);
    const listB = new StaticArray<u32>(256);
    for (let fb: u32 = 0; fb < b.nfunc; fb++) {
      const fa = unchecked(this.fPairB[fb]);
      if (fa < 0) continue;
      const na = this.numberedRefs(a, <u32>fa, stampA, <i32>fb, listA);
      const nb = this.numberedRefs(b, fb, stampB, <i32>fb, listB);
      if (na < 0 || nb < 0) continue; // too many to pair this way
      for (let j: i32 = 0; j < nb; j++) {
        const sb = unchecked(listB[j]);
        let k = 0;
        for (let i: i32 = 0; i < j; i++) if (b.sameNorm(unchecked(listB[i]), b, sb)) k++;
        let found: i32 = -1;
        for (let i: i32 = 0; i < na && found < 0; i++) {
          const sa = unchecked(listA[i]);
          if (a.sameNorm(sa, b, sb)) {
            if (k == 0) found = <i32>sa;
            else k--;
          }
        }
        if (found < 0) continue;
        const db = unchecked(b.sData[sb]);
        const prev = unchecked(vote[db]);
        if (prev < 0) unchecked(vote[db] = found);
        else if (prev != found) unchecked(this.dAmbiguous[db] = found);
      }
    }
    for (let db: u32 = 0; db < b.ndata; db++) {
      const sb = unchecked(b.datas[db]);
      if (!b.isNumberedLocal(sb)) continue;
      let sa = unchecked(vote[db]);
      if (sa < 0) {
        // Unreferenced by paired functions: by name when it is unique on both sides.
        const ha = a.lookup(true, b, sb);
        if (ha < 0 || !a.isNumberedLocal(<u32>ha)) continue;
        if (this.countNumbered(a, ha) != 1) continue;
        const hb = b.lookup(true, b, sb);
        if (hb < 0 || this.countNumbered(b, hb) != 1) continue;
        sa = ha;
      }
      if (unchecked(this.dAmbiguous[db]) >= 0) continue;
      const da = unchecked(a.sData[sa]);
      if (da < 0 || unchecked(this.dPairA[da]) >= 0) continue;
      unchecked(this.dPairA[da] = <i32>db);
      unchecked(this.dPairB[db] = da);
    }
  }

  private countNumbered(o: Obj, head: i32): u32 {
    let n: u32 = 0;
    let s = head;
    while (s >= 0) {
      if (o.isNumberedLocal(<u32>s)) n++;
      s = unchecked(o.sameNext[s]);
    }
    return n;
  }

  /** The distinct numbered statics function f refers to, in order; -1 when more than the list holds. */
  private numberedRefs(o: Obj, f: u32, stamp: StaticArray<i32>, mark: i32, list: StaticArray<u32>): i32 {
    const sym = unchecked(o.funcs[f]);
    const sec = unchecked(o.sShndx[sym]);
    const start = unchecked(o.fStart[f]);
    const r0 = o.relLowerBound(sec, start);
    const r1 = o.relLowerBound(sec, start + unchecked(o.fSize[f]));
    let n: i32 = 0;
    for (let r = r0; r < r1; r++) {
      resolve(o, r, sec, true);
      if (tKind != T_DATA) continue;
      const s = unchecked(o.datas[<u32>tIdx]);
      if (!o.isNumberedLocal(s) || unchecked(stamp[s]) == mark) continue;
      unchecked(stamp[s] = mark);
      if (n >= list.length) return -1;
      unchecked(list[n++] = s);
    }
    return n;
  }

  // ---- comparing ------------------------------------------------------------------

  private compareFunction(fa: u32, fb: u32): void {
    const a = this.a;
    const b = this.b;
    const secA = unchecked(a.sShndx[unchecked(a.funcs[fa])]);
    const secB = unchecked(b.sShndx[unchecked(b.funcs[fb])]);
    this.tmpSites.len = 0;
    let r = this.compareRange(secA, unchecked(a.fStart[fa]), unchecked(a.fSize[fa]), secB, unchecked(b.fStart[fb]), unchecked(b.fSize[fb]), true, true);
    if (r != 2) {
      const la = unchecked(a.secLsda[secA]);
      const lb = unchecked(b.secLsda[secB]);
      if ((la < 0) != (lb < 0) || (la >= 0 && !this.privateEqual(<u32>la, <u32>lb))) {
        r = 2;
        cWhy = WHY_LSDA;
        cAt = -1;
      }
    }
    if (r == 1) r = this.checkLines(fa, fb, secA, secB);
    if (r == 0) {
      unchecked(this.fStatus[fb] = ST_UNCHANGED);
    } else if (r == 1) {
      unchecked(this.fStatus[fb] = ST_LINE_ONLY);
    } else {
      unchecked(this.fStatus[fb] = ST_CHANGED);
      unchecked(this.fWhy[fb] = cWhy);
      unchecked(this.fAt[fb] = <i32>cAt);
    }
  }

  /**
   * Compares the byte ranges [startA, +sizeA) of section secA and [startB, +sizeB) of
   * secB with their relocations: 0 equal, 1 equal but for line-like immediates (code
   * only; listed in tmpSites), 2 different (cWhy, cAt say why and where).
   */
  compareRange(secA: u32, startA: u64, sizeA: u64, secB: u32, startB: u64, sizeB: u64, code: bool, sites: bool): i32 {
    const a = this.a;
    const b = this.b;
    if (sizeA != sizeB) return differ(WHY_SIZE, -1);
    const ra0 = a.relLowerBound(secA, startA);
    const ra1 = a.relLowerBound(secA, startA + sizeA);
    const rb0 = b.relLowerBound(secB, startB);
    const rb1 = b.relLowerBound(secB, startB + sizeB);
    const na = ra1 - ra0;
    const nb = rb1 - rb0;
    let result = 0;
    let pos: u64 = 0;
    const n = min(na, nb);
    for (let i: u32 = 0; i < n; i++) {
      const ra = ra0 + i;
      const rb = rb0 + i;
      const offA = a.relOff(ra) - startA;
      const offB = b.relOff(rb) - startB;
      const type = a.relType(ra);
      if (offA != offB || type != b.relType(rb)) {
        // Bytes before the first relocation that moved decide first.
        const at = min(offA, offB);
        if (at > pos) {
          const s = this.compareBytes(secA, startA, secB, startB, pos, at, code && sites);
          if (s == 2) return 2;
        }
        return differ(WHY_RELOC_LAYOUT, <i64>at);
      }
      if (offA > pos) {
        const s = this.compareBytes(secA, startA, secB, startB, pos, offA, code && sites);
        if (s == 2) return 2;
        if (s == 1) result = 1;
      }
      if (!this.targetEqual(ra, secA, rb, secB, code)) return differ(WHY_RELOC_TARGET, <i64>offA);
      const end = offA + <u64>relocFieldSize(type);
      if (end > pos) pos = end;
    }
    if (na != nb) {
      const at = na > nb ? a.relOff(ra0 + n) - startA : b.relOff(rb0 + n) - startB;
      if (at > pos) {
        const s = this.compareBytes(secA, startA, secB, startB, pos, at, code && sites);
        if (s == 2) return 2;
      }
      return differ(WHY_RELOC_COUNT, <i64>at);
    }
    if (sizeA > pos) {
      const s = this.compareBytes(secA, startA, secB, startB, pos, sizeA, code && sites);
      if (s == 2) return 2;
      if (s == 1) result = 1;
    }
    return result;
  }

  /** Bytes [from, to) of both ranges: 0 equal, 1 line-like immediates differ (listed), 2 different. */
  private compareBytes(secA: u32, startA: u64, secB: u32, startB: u64, from: u64, to: u64, sites: bool): i32 {
    const a = this.a;
    const b = this.b;
    const len = <usize>(to - from);
    const hasA = a.secHasData(secA);
    const hasB = b.secHasData(secB);
    if (!hasA || !hasB) {
      // SHT_NOBITS reads as zeros.
      if (!hasA && !hasB) return 0;
      const p = hasA ? a.secData(secA) + <usize>(startA + from) : b.secData(secB) + <usize>(startB + from);
      for (let i: usize = 0; i < len; i++) if (load<u8>(p + i) != 0) return differ(WHY_BYTES, <i64>(from + i));
      return 0;
    }
    const pa = a.secData(secA) + <usize>startA;
    const pb = b.secData(secB) + <usize>startB;
    if (memory.compare(pa + <usize>from, pb + <usize>from, len) == 0) return 0;
    let i = <usize>from;
    const end = <usize>to;
    while (i < end && load<u8>(pa + i) == load<u8>(pb + i)) i++;
    if (!sites) return differ(WHY_BYTES, <i64>i);
    // Every differing run must be the immediate of an instruction that loads a line-like constant.
    while (i < end) {
      if (load<u8>(pa + i) == load<u8>(pb + i)) { i++; continue; }
      let e = i;
      while (e < end && load<u8>(pa + e) != load<u8>(pb + e)) e++;
      const next = this.lineSite(pa, pb, <usize>from, end, i, e, secA, startA);
      if (next == 0) return differ(WHY_BYTES, <i64>i);
      i = next;
    }
    return 1;
  }

  /**
   * The differing run [s, e) of a code range (offsets from the function's start at
   * `start` of section secA) as the immediate of an instruction that loads a constant
   * argument (insn.ts constantLoadImm), found by decoding the function: records the
   * site and returns the offset after the immediate, or 0 when the run is anything else.
   * The immediate must lie inside the compared segment [from, end).
   */
  private lineSite(pa: usize, pb: usize, from: usize, end: usize, s: usize, e: usize, secA: u32, start: u64): usize {
    const a = this.a;
    const ins = a.insns;
    if (!ins.decode(a.secData(secA), a.secSize(secA))) return 0;
    const i = ins.at(start + <u64>s);
    if (i < 0) return 0;
    const w = <usize>constantLoadImm(ins, i);
    if (w == 0) return 0;
    const fe = <usize>(ins.end(i) - start); // the immediate, from the function's start
    const fs = fe - w;
    if (s < fs || e > fe || fs < from || fe > end) return 0;
    let va: u64 = 0;
    let vb: u64 = 0;
    if (w == 1) { va = <u64>load<u8>(pa + fs); vb = <u64>load<u8>(pb + fs); if (va >= 0x80 || vb >= 0x80) return 0; }
    else if (w == 4) { va = <u64>load<u32>(pa + fs); vb = <u64>load<u32>(pb + fs); }
    else { va = load<u64>(pa + fs); vb = load<u64>(pb + fs); }
    if (va == 0 || vb == 0 || va > LINE_MAX || vb > LINE_MAX) return 0;
    const q = this.tmpSites.push(12);
    store<u32>(q, <u32>fs);
    store<u32>(q + 4, <u32>va);
    store<u32>(q + 8, <u32>vb);
    return fe;
  }

  /**
   * A candidate is line-only when, at every site, the constant moved exactly as far as
   * the source line of its instruction did (read from .debug_line of both objects), that
   * distance is not 0, and the constant is within LINE_SLACK of the instruction's line:
   *   new - old == lineB(pc) - lineA(pc) != 0   and   |old - lineA(pc)| <= LINE_SLACK.
   * __LINE__ in a macro expands to the line of the macro's use, the line of the code it
   * feeds, so a shifted assert or log call passes; a constant the fix changed (a buffer
   * size, a limit) would have to move by exactly its code's line shift and sit within a
   * few units of its own line number to pass. Without line tables nothing passes.
   */
  private checkLines(fa: u32, fb: u32, secA: u32, secB: u32): i32 {
    if (!this.linesRead) {
      this.linesRead = true;
      this.linesA = readLines(this.a);
      this.linesB = readLines(this.b);
    }
    const first = this.tmpSites.len > 0 ? <i64>load<u32>(this.tmpSites.at(0)) : -1;
    const la = this.linesA;
    const lb = this.linesB;
    if (la === null || lb === null) return differ(WHY_NO_LINES, first);
    const n = this.tmpSites.len / 12;
    const startA = unchecked(this.a.fStart[fa]);
    const startB = unchecked(this.b.fStart[fb]);
    const siteFirst = this.sites.len / SITE_REC;
    for (let i: u32 = 0; i < n; i++) {
      const q = this.tmpSites.at(i * 12);
      const off = load<u32>(q);
      const va = <i64>load<u32>(q + 4);
      const vb = <i64>load<u32>(q + 8);
      const lineA = <i64>la.lineAt(secA, startA + off);
      const lineB = <i64>lb.lineAt(secB, startB + off);
      if (lineA == 0 || lineB == 0 || vb - va != lineB - lineA || lineB == lineA || abs(va - lineA) > LINE_SLACK) {
        this.sites.len = siteFirst * SITE_REC;
        return differ(WHY_LINE_MISMATCH, <i64>off);
      }
      const s = this.sites.push(SITE_REC);
      store<u32>(s, fb);
      store<u32>(s + 4, off);
      store<u32>(s + 8, <u32>va);
      store<u32>(s + 12, <u32>vb);
      store<u32>(s + 16, <u32>lineA);
      store<u32>(s + 20, <u32>lineB);
    }
    unchecked(this.fSiteFirst[fb] = siteFirst);
    unchecked(this.fSiteCount[fb] = n);
    return 1;
  }

  /** Whether relocation ra of section secA (original) and rb of secB (patched) refer to the same thing. */
  targetEqual(ra: u32, secA: u32, rb: u32, secB: u32, code: bool): bool {
    const a = this.a;
    const b = this.b;
    resolve(a, ra, secA, code);
    const ka = tKind;
    const ia = tIdx;
    const oa = tOff;
    resolve(b, rb, secB, code);
    if (tKind != ka) return false;
    const ib = tIdx;
    const ob = tOff;
    switch (ka) {
      case T_NONE:
      case T_ABS:
        return oa == ob;
      case T_EXTERNAL:
        return oa == ob && a.sameName(<u32>ia, b, <u32>ib);
      case T_FUNC:
        return oa == ob && unchecked(this.fPairA[<i32>ia]) == <i32>ib;
      case T_DATA:
        return oa == ob && unchecked(this.dPairA[<i32>ia]) == <i32>ib;
      case T_STR:
      case T_CONST: {
        const ta = tailOf(a, ra, secA, code);
        const tb = tailOf(b, rb, secB, code);
        if (ta != tb) return false;
        return this.contentEqual(ka, <u32>ia, oa, <u32>ib, ob, ta);
      }
      case T_PRIVATE:
        return oa == ob && this.privateEqual(<u32>ia, <u32>ib);
      case T_SECTION:
        return oa == ob && this.sectionNamesEqual(<u32>ia, <u32>ib);
    }
    return false;
  }

  /**
   * Content at position p + tail of a merged section on both sides: tail >= 0 known;
   * -1: code whose instruction could not be read back, any of 4..8 (all must agree);
   * -2: anywhere (PC-relative data): the whole sections must be equal.
   */
  private contentEqual(kind: u8, sa: u32, pa: i64, sb: u32, pb: i64, tail: i32): bool {
    if (tail == -2) return pa == pb && this.sectionBytesEqual(sa, sb);
    if (tail >= 0) return this.contentAt(kind, sa, pa + tail, sb, pb + tail);
    for (let t: i64 = 4; t <= 8; t++) {
      if (!this.contentAt(kind, sa, pa + t, sb, pb + t)) return false;
    }
    return true;
  }

  private contentAt(kind: u8, sa: u32, pa: i64, sb: u32, pb: i64): bool {
    const a = this.a;
    const b = this.b;
    const sizeA = <i64>a.secSize(sa);
    const sizeB = <i64>b.secSize(sb);
    const inA = pa >= 0 && pa < sizeA && a.secHasData(sa);
    const inB = pb >= 0 && pb < sizeB && b.secHasData(sb);
    if (!inA || !inB) return !inA && !inB;
    const da = a.secData(sa);
    const db = b.secData(sb);
    if (kind == T_STR) {
      // The NUL-terminated strings at pa and pb (an unterminated tail compares to the section's end).
      let i: i64 = 0;
      while (true) {
        const ea = pa + i >= sizeA;
        const eb = pb + i >= sizeB;
        if (ea || eb) return ea && eb;
        const ca = load<u8>(da + <usize>(pa + i));
        if (ca != load<u8>(db + <usize>(pb + i))) return false;
        if (ca == 0) return true;
        i++;
      }
    }
    // A constant: the sh_entsize entry holding the position, and the position inside it.
    const ea = <i64>a.f.sections[sa].entsize;
    const eb = <i64>b.f.sections[sb].entsize;
    if (ea != eb) return false;
    if (ea <= 0) return pa == pb && this.sectionBytesEqual(sa, sb);
    const qa = pa - pa % ea;
    const qb = pb - pb % ea;
    if (pa - qa != pb - qb || qa + ea > sizeA || qb + ea > sizeB) return false;
    return memory.compare(da + <usize>qa, db + <usize>qb, <usize>ea) == 0;
  }

  private sectionBytesEqual(sa: u32, sb: u32): bool {
    return this.compareRange(sa, 0, this.a.secSize(sa), sb, 0, this.b.secSize(sb), false, false) == 0;
  }

  /** Compiler-made read-only data (a whole section) compared as content with its references. */
  privateEqual(sa: u32, sb: u32): bool {
    const a = this.a;
    const b = this.b;
    if (unchecked(a.secKind[sa]) != unchecked(b.secKind[sb])) return false;
    if (unchecked(this.memoPeer[sa]) == <i32>sb) {
      const m = unchecked(this.memoRes[sa]);
      if (m != 0) return m != 3; // 1: in progress, assumed equal (a cycle of tables)
    }
    if (this.depth >= MAX_DEPTH) return false;
    unchecked(this.memoPeer[sa] = <i32>sb);
    unchecked(this.memoRes[sa] = 1);
    this.depth++;
    const why = cWhy;
    const at = cAt;
    const r = this.compareRange(sa, 0, a.secSize(sa), sb, 0, b.secSize(sb), false, false);
    cWhy = why;
    cAt = at;
    this.depth--;
    // The memo may have been taken over by a nested comparison with another peer.
    unchecked(this.memoPeer[sa] = <i32>sb);
    unchecked(this.memoRes[sa] = r == 0 ? 2 : 3);
    return r == 0;
  }

  private sectionNamesEqual(sa: u32, sb: u32): bool {
    const a = this.a;
    const b = this.b;
    const la = unchecked(a.secNameLen[sa]);
    const lb = unchecked(b.secNameLen[sb]);
    if (this.scratchA.length < <i32>la) this.scratchA = new StaticArray<u8>(<i32>la);
    if (this.scratchB.length < <i32>lb) this.scratchB = new StaticArray<u8>(<i32>lb);
    const na = normalize(a.secNamePtr(sa), la, changetype<usize>(this.scratchA));
    const nb = normalize(b.secNamePtr(sb), lb, changetype<usize>(this.scratchB));
    return na == nb && memory.compare(changetype<usize>(this.scratchA), changetype<usize>(this.scratchB), <usize>na) == 0;
  }

  // ---- pieces, coupling -------------------------------------------------------------

  /** Parent of each cold piece and clone of B (the function named by the name's prefix). */
  private findParents(): void {
    const b = this.b;
    for (let fb: u32 = 0; fb < b.nfunc; fb++) {
      const sym = unchecked(b.funcs[fb]);
      const pl = unchecked(b.fParentLen[fb]);
      if (pl == unchecked(b.sNameLen[sym])) continue;
      unchecked(this.fParentB[fb] = findFunction(b, b.namePtr(sym), pl));
    }
  }

  /**
   * A cold piece and its parent form one function: if either changed both did (the piece
   * jumps back into the parent's body at offsets of its version). Likewise a function
   * that refers into the middle of another (not to its entry) changes with it. Then a
   * piece group that is otherwise unchanged is line-only if any member is.
   */
  private propagate(): void {
    const b = this.b;
    const n = b.nfunc;
    // Edges "if F changes, G changes": (F, G) pairs, sorted by F through a count.
    const cnt = new StaticArray<u32>(n + 1);
    let m: u32 = 0;
    // pass 1 counts, pass 2 fills
    let edges = new StaticArray<u32>(0);
    for (let pass = 0; pass < 2; pass++) {
      if (pass == 1) {
        let sum: u32 = 0;
        for (let f: u32 = 0; f <= n; f++) { const c = unchecked(cnt[f]); unchecked(cnt[f] = sum); sum += c; }
        edges = new StaticArray<u32>(<i32>max<u32>(sum * 2, 1));
        m = sum;
      }
      const fill = new StaticArray<u32>(n + 1);
      for (let g: u32 = 0; g < n; g++) {
        const p = unchecked(this.fParentB[g]);
        if (p >= 0 && unchecked(b.fKind[g]) == KIND_COLD) {
          this.edge(pass, cnt, fill, edges, <u32>p, g, 1);
          this.edge(pass, cnt, fill, edges, g, <u32>p, 1);
        }
        const sym = unchecked(b.funcs[g]);
        const sec = unchecked(b.sShndx[sym]);
        const start = unchecked(b.fStart[g]);
        const r0 = b.relLowerBound(sec, start);
        const r1 = b.relLowerBound(sec, start + unchecked(b.fSize[g]));
        for (let r = r0; r < r1; r++) {
          resolve(b, r, sec, true);
          if (tKind != T_FUNC || <u32>tIdx == g) continue;
          const f = <u32>tIdx;
          if (unchecked(this.fParentB[f]) == <i32>g || unchecked(this.fParentB[g]) == <i32>f) continue;
          const t = tailOf(b, r, sec, true);
          const interior = t >= 0 ? tOff + t != 0 : (tOff < -8 || tOff > -4);
          if (interior) this.edge(pass, cnt, fill, edges, f, g, 2);
        }
      }
    }
    // Worklist from every changed or added function.
    const work = new StaticArray<u32>(n);
    let top: u32 = 0;
    for (let f: u32 = 0; f < n; f++) {
      const st = unchecked(this.fStatus[f]);
      if (st == ST_CHANGED || st == ST_ADDED) unchecked(work[top++] = f);
    }
    while (top > 0) {
      const f = unchecked(work[--top]);
      const e0 = unchecked(cnt[f]);
      const e1 = f + 1 <= n ? unchecked(cnt[f + 1]) : m;
      for (let e = e0; e < e1 && e < m; e++) {
        const g = unchecked(edges[e * 2]);
        const st = unchecked(this.fStatus[g]);
        if (st == ST_CHANGED || st == ST_ADDED) continue;
        unchecked(this.fStatus[g] = ST_CHANGED);
        unchecked(this.fWhy[g] = unchecked(edges[e * 2 + 1]) == 1 ? WHY_PIECE : WHY_COUPLED);
        unchecked(this.fAt[g] = -1);
        unchecked(this.fSiteCount[g] = 0);
        unchecked(work[top++] = g);
      }
    }
    // Line-only spreads within a piece group.
    for (let g: u32 = 0; g < n; g++) {
      const p = unchecked(this.fParentB[g]);
      if (p < 0 || unchecked(b.fKind[g]) != KIND_COLD) continue;
      const sg = unchecked(this.fStatus[g]);
      const sp = unchecked(this.fStatus[p]);
      if (sg == ST_LINE_ONLY && sp == ST_UNCHANGED) { unchecked(this.fStatus[p] = ST_LINE_ONLY); unchecked(this.fWhy[p] = WHY_PIECE); }
      if (sp == ST_LINE_ONLY && sg == ST_UNCHANGED) { unchecked(this.fStatus[g] = ST_LINE_ONLY); unchecked(this.fWhy[g] = WHY_PIECE); }
    }
  }

  private edge(pass: i32, cnt: StaticArray<u32>, fill: StaticArray<u32>, edges: StaticArray<u32>, f: u32, g: u32, why: u32): void {
    if (pass == 0) {
      unchecked(cnt[f] = unchecked(cnt[f]) + 1);
      return;
    }
    const at = unchecked(cnt[f]) + unchecked(fill[f]);
    unchecked(fill[f] = unchecked(fill[f]) + 1);
    unchecked(edges[at * 2] = g);
    unchecked(edges[at * 2 + 1] = why);
  }

  // ---- data -------------------------------------------------------------------------

  private compareData(): void {
    const a = this.a;
    const b = this.b;
    for (let db: u32 = 0; db < b.ndata; db++) {
      const sb = unchecked(b.datas[db]);
      const da = unchecked(this.dPairB[db]);
      if (da < 0) {
        unchecked(this.dStatus[db] = ST_ADDED);
        continue;
      }
      const sa = unchecked(a.datas[da]);
      const sizeA = unchecked(a.sSize[sa]);
      const sizeB = unchecked(b.sSize[sb]);
      let why: u8 = 0;
      if (sizeA != sizeB) why = DWHY_SIZE;
      else if (dataClass(a, sa) != dataClass(b, sb)) why = DWHY_KIND;
      else if (!this.dataValueEqual(sa, sb)) why = DWHY_VALUE;
      unchecked(this.dStatus[db] = why == 0 ? ST_UNCHANGED : ST_CHANGED);
      unchecked(this.dWhy[db] = why);
    }
  }

  private dataValueEqual(sa: u32, sb: u32): bool {
    const a = this.a;
    const b = this.b;
    const xa = unchecked(a.sShndx[sa]);
    const xb = unchecked(b.sShndx[sb]);
    const ca = xa == D.SHN_COMMON || !a.isDefined(sa);
    const cb = xb == D.SHN_COMMON || !b.isDefined(sb);
    if (ca || cb) return ca && cb;
    const size = unchecked(a.sSize[sa]);
    const va = unchecked(a.sValue[sa]);
    const vb = unchecked(b.sValue[sb]);
    if (va > a.secSize(xa) || size > a.secSize(xa) - va || vb > b.secSize(xb) || size > b.secSize(xb) - vb) return false;
    return this.compareRange(xa, va, size, xb, vb, size, false, false) == 0;
  }

  /**
   * Constructors: functions .init_array (or .ctors, .preinit_array, and at exit
   * .fini_array, .dtors) runs at program start, before a patch exists. A patched object
   * whose table names a new or changed function, or a function the original's did not,
   * needs startup work that will never run in the running program: refused.
   */
  private checkConstructors(): void {
    const a = this.a;
    const b = this.b;
    const inA = new StaticArray<u8>(a.nfunc);
    for (let s: u32 = 0; s < a.nsec; s++) {
      if (unchecked(a.secKind[s]) != SK_INIT) continue;
      const r0 = unchecked(a.secRelStart[s]);
      const r1 = r0 + unchecked(a.secRelCount[s]);
      for (let r = r0; r < r1; r++) {
        resolve(a, r, s, false);
        if (tKind == T_FUNC) unchecked(inA[<i32>tIdx] = 1);
      }
    }
    for (let s: u32 = 0; s < b.nsec; s++) {
      if (unchecked(b.secKind[s]) != SK_INIT) continue;
      const r0 = unchecked(b.secRelStart[s]);
      const r1 = r0 + unchecked(b.secRelCount[s]);
      for (let r = r0; r < r1; r++) {
        resolve(b, r, s, false);
        if (tKind != T_FUNC) continue;
        const f = <u32>tIdx;
        const st = unchecked(this.fStatus[f]);
        const fa = unchecked(this.fPairB[f]);
        const known = fa >= 0 && unchecked(inA[fa]) != 0;
        if (known && st != ST_CHANGED && st != ST_ADDED) continue;
        this.refuseConstructor(f, s, st, known);
      }
    }
  }

  private refuseConstructor(f: u32, sec: u32, st: u8, known: bool): void {
    const b = this.b;
    // The new data it initializes, for the message.
    let news = "";
    const sym = unchecked(b.funcs[f]);
    const fsec = unchecked(b.sShndx[sym]);
    const start = unchecked(b.fStart[f]);
    const r0 = b.relLowerBound(fsec, start);
    const r1 = b.relLowerBound(fsec, start + unchecked(b.fSize[f]));
    let count = 0;
    for (let r = r0; r < r1; r++) {
      resolve(b, r, fsec, true);
      if (tKind != T_DATA || unchecked(this.dPairB[<i32>tIdx]) >= 0) continue;
      const name = b.symString(unchecked(b.datas[<i32>tIdx]));
      if (news.indexOf("`" + name + "`") >= 0) continue;
      if (count++ < 8) news += (news.length > 0 ? ", `" : "`") + name + "`";
    }
    const what = st == ST_ADDED ? "is new" : (!known ? "is newly listed there" : "changed");
    let msg = "function `" + b.symString(sym) + "` runs from " + b.secString(sec) + " (a constructor, run once at program start) and " + what;
    if (count > 0) msg += ": the new global" + (count > 1 ? "s " : " ") + news + " would never be initialized in the running program";
    else msg += ": startup work that already ran in the running program cannot be redone by a patch";
    this.refuse(Err.DIFF_CONSTRUCTOR, <i32>f, -1, msg);
  }

  // ---- records ------------------------------------------------------------------------

  refuse(code: i32, func: i32, data: i32, msg: string): void {
    const buf = String.UTF8.encode(msg);
    this.messages.push(buf);
    const q = this.refusals.push(REFUSAL_REC);
    store<u32>(q, <u32>code);
    store<i32>(q + 4, func);
    store<i32>(q + 8, data);
    store<u32>(q + 12, <u32>changetype<usize>(buf));
    store<u32>(q + 16, <u32>buf.byteLength);
  }

  private writeRecords(): void {
    const a = this.a;
    const b = this.b;
    // Functions of B, then those only in A.
    for (let fb: u32 = 0; fb < b.nfunc; fb++) {
      const fa = unchecked(this.fPairB[fb]);
      const q = this.funcs.push(FUNC_REC);
      const sym = unchecked(b.funcs[fb]);
      store<u32>(q, <u32>b.namePtr(sym));
      store<u32>(q + 4, unchecked(b.sNameLen[sym]));
      store<u32>(q + 8, unchecked(b.fParentLen[fb]));
      store<u8>(q + 12, unchecked(b.fKind[fb]));
      store<u8>(q + 13, bindCode(b.symBind(sym)));
      store<u8>(q + 14, unchecked(this.fStatus[fb]));
      store<u8>(q + 15, unchecked(this.fWhy[fb]));
      store<u32>(q + 16, fa >= 0 ? unchecked(a.funcs[fa]) : 0);
      store<u32>(q + 20, sym);
      store<u32>(q + 24, fa >= 0 ? unchecked(a.sShndx[unchecked(a.funcs[fa])]) : 0);
      store<u32>(q + 28, unchecked(b.sShndx[sym]));
      store<u32>(q + 32, fa >= 0 ? <u32>unchecked(a.fSize[fa]) : 0);
      store<u32>(q + 36, <u32>unchecked(b.fSize[fb]));
      store<i32>(q + 40, unchecked(this.fAt[fb]));
      store<i32>(q + 44, unchecked(this.fParentB[fb]));
      store<u32>(q + 56, unchecked(this.fSiteFirst[fb]));
      store<u32>(q + 60, unchecked(this.fSiteCount[fb]));
    }
    let removedFuncs: u32 = 0;
    for (let fa: u32 = 0; fa < a.nfunc; fa++) {
      if (unchecked(this.fPairA[fa]) >= 0) continue;
      const q = this.funcs.push(FUNC_REC);
      const sym = unchecked(a.funcs[fa]);
      store<u32>(q, <u32>a.namePtr(sym));
      store<u32>(q + 4, unchecked(a.sNameLen[sym]));
      store<u32>(q + 8, unchecked(a.fParentLen[fa]));
      store<u8>(q + 12, unchecked(a.fKind[fa]));
      store<u8>(q + 13, bindCode(a.symBind(sym)));
      store<u8>(q + 14, ST_REMOVED);
      store<u32>(q + 16, sym);
      store<u32>(q + 24, unchecked(a.sShndx[sym]));
      store<u32>(q + 32, <u32>unchecked(a.fSize[fa]));
      store<i32>(q + 40, -1);
      const pl = unchecked(a.fParentLen[fa]);
      let parent: i32 = -1;
      if (pl != unchecked(a.sNameLen[sym])) {
        // The parent's record: its B counterpart's, or its own removed record.
        const pa = findFunction(a, a.namePtr(sym), pl);
        if (pa >= 0) parent = unchecked(this.fPairA[pa]) >= 0 ? unchecked(this.fPairA[pa]) : -2 - pa;
      }
      store<i32>(q + 44, parent);
      removedFuncs++;
    }
    this.nfuncRec = b.nfunc + removedFuncs;
    // Resolve "-2 - pa" parents of removed functions to their records.
    if (removedFuncs > 0) {
      const recOfA = filled(a.nfunc, -1);
      let k = b.nfunc;
      for (let fa: u32 = 0; fa < a.nfunc; fa++) {
        if (unchecked(this.fPairA[fa]) < 0) { unchecked(recOfA[fa] = <i32>k); k++; }
      }
      for (let i = b.nfunc; i < this.nfuncRec; i++) {
        const q = this.funcs.at(i * FUNC_REC);
        const p = load<i32>(q + 44);
        if (p <= -2) store<i32>(q + 44, unchecked(recOfA[-2 - p]));
      }
    }
    // Data of B, then data only in A.
    for (let db: u32 = 0; db < b.ndata; db++) {
      const da = unchecked(this.dPairB[db]);
      const sym = unchecked(b.datas[db]);
      const q = this.datas.push(DATA_REC);
      store<u32>(q, <u32>b.namePtr(sym));
      store<u32>(q + 4, unchecked(b.sNameLen[sym]));
      store<u8>(q + 8, unchecked(this.dStatus[db]));
      store<u8>(q + 9, bindCode(b.symBind(sym)));
      store<u8>(q + 10, dataFlags(b, sym));
      store<u8>(q + 11, unchecked(this.dWhy[db]));
      const sa: u32 = da >= 0 ? unchecked(a.datas[da]) : 0;
      store<u32>(q + 12, sa);
      store<u32>(q + 16, sym);
      store<u32>(q + 20, da >= 0 ? unchecked(a.sShndx[sa]) : 0);
      store<u32>(q + 24, unchecked(b.sShndx[sym]));
      store<u32>(q + 28, da >= 0 ? <u32>unchecked(a.sSize[sa]) : 0);
      store<u32>(q + 32, <u32>unchecked(b.sSize[sym]));
      if (da >= 0) {
        store<u32>(q + 40, <u32>a.namePtr(sa));
        store<u32>(q + 44, unchecked(a.sNameLen[sa]));
      }
    }
    let removedData: u32 = 0;
    for (let da: u32 = 0; da < a.ndata; da++) {
      if (unchecked(this.dPairA[da]) >= 0) continue;
      const sym = unchecked(a.datas[da]);
      const q = this.datas.push(DATA_REC);
      store<u32>(q, <u32>a.namePtr(sym));
      store<u32>(q + 4, unchecked(a.sNameLen[sym]));
      store<u8>(q + 8, ST_REMOVED);
      store<u8>(q + 9, bindCode(a.symBind(sym)));
      store<u8>(q + 10, dataFlags(a, sym));
      store<u32>(q + 12, sym);
      store<u32>(q + 20, unchecked(a.sShndx[sym]));
      store<u32>(q + 28, <u32>unchecked(a.sSize[sym]));
      store<u32>(q + 40, <u32>a.namePtr(sym));
      store<u32>(q + 44, unchecked(a.sNameLen[sym]));
      removedData++;
    }
    this.ndataRec = b.ndata + removedData;
    // Refusals about data.
    for (let db: u32 = 0; db < b.ndata; db++) {
      const sym = unchecked(b.datas[db]);
      const name = "`" + b.symString(sym) + "` (" + (b.symBind(sym) == D.STB_LOCAL ? "file-local" : "global") + ")";
      const amb = unchecked(this.dAmbiguous[db]);
      if (amb >= 0) {
        this.refuse(Err.DIFF_AMBIGUOUS_STATIC, -1, <i32>db, "static variable " + name + " cannot be paired with one variable of the original object: the functions that use it use `" + a.symString(<u32>amb) + "` and another static of that name in the original; the running program keeps one of them, so patched code would not know which");
        continue;
      }
      const st = unchecked(this.dStatus[db]);
      if (st == ST_ADDED && (dataFlags(b, sym) & 1) != 0) {
        this.refuse(Err.DIFF_NEW_TLS, -1, <i32>db, "new thread-local variable " + name + ": the running program's threads have their TLS blocks laid out already, so a patch cannot add thread-local storage");
      } else if (st == ST_CHANGED) {
        const sa = unchecked(a.datas[unchecked(this.dPairB[db])]);
        const why = unchecked(this.dWhy[db]);
        let msg = "data object " + name + " ";
        if (why == DWHY_SIZE) msg += "changes size from " + unchecked(a.sSize[sa]).toString() + " to " + unchecked(b.sSize[sym]).toString() + " bytes";
        else if (why == DWHY_KIND) msg += "moves between thread-local, writable and read-only storage";
        else msg += "changes its initial value";
        msg += ": existing data stays in the running program as it is (its size, place and current value), so a patch cannot change its layout or re-initialize it";
        this.refuse(Err.DIFF_DATA_CHANGED, -1, <i32>db, msg);
      }
    }
    // References of every function that is not unchanged.
    const symStamp = filled(b.nsym, -1);
    const secStamp = filled(b.nsec, -1);
    const stack = new Buf();
    for (let fb: u32 = 0; fb < b.nfunc; fb++) {
      const st = unchecked(this.fStatus[fb]);
      if (st == ST_UNCHANGED) continue;
      const first = this.refs.len / REF_REC;
      const sym = unchecked(b.funcs[fb]);
      const sec = unchecked(b.sShndx[sym]);
      const start = unchecked(b.fStart[fb]);
      const mark = <i32>fb;
      this.collectRefs(sec, start, start + unchecked(b.fSize[fb]), true, mark, symStamp, secStamp, stack);
      const lsda = unchecked(b.secLsda[sec]);
      if (lsda >= 0) this.addSectionRef(REF_LSDA, <u32>lsda, mark, secStamp, stack);
      // Sections reached through moved data (tables of pointers, LSDA type tables).
      while (stack.len > 0) {
        stack.len -= 4;
        const s = load<u32>(stack.at(stack.len));
        this.collectRefs(s, 0, b.secSize(s), false, mark, symStamp, secStamp, stack);
      }
      const q = this.funcs.at(fb * FUNC_REC);
      store<u32>(q + 48, first);
      store<u32>(q + 52, this.refs.len / REF_REC - first);
    }
  }

  private collectRefs(sec: u32, from: u64, to: u64, code: bool, mark: i32, symStamp: StaticArray<i32>, secStamp: StaticArray<i32>, stack: Buf): void {
    const b = this.b;
    const r0 = b.relLowerBound(sec, from);
    const r1 = b.relLowerBound(sec, to);
    for (let r = r0; r < r1; r++) {
      resolve(b, r, sec, code);
      const k = tKind;
      switch (k) {
        case T_NONE: break;
        case T_STR: this.addSectionRef(REF_STRINGS, <u32>tIdx, mark, secStamp, stack); break;
        case T_CONST: this.addSectionRef(REF_CONSTS, <u32>tIdx, mark, secStamp, stack); break;
        case T_PRIVATE: this.addSectionRef(unchecked(b.secKind[<i32>tIdx]) == SK_LSDA ? REF_LSDA : REF_PRIVATE, <u32>tIdx, mark, secStamp, stack); break;
        case T_SECTION: this.addSectionRef(REF_SECTION, <u32>tIdx, mark, secStamp, stack); break;
        case T_FUNC: {
          const f = <u32>tIdx;
          if (<i32>f == mark) break; // itself (its jump tables point back into it)
          const sym = unchecked(b.funcs[f]);
          if (unchecked(symStamp[sym]) == mark) break;
          unchecked(symStamp[sym] = mark);
          const fa = unchecked(this.fPairB[f]);
          const q = this.refs.push(REF_REC);
          store<u8>(q, REF_FUNCTION);
          store<u8>(q + 1, b.symBind(sym) == D.STB_LOCAL ? 0 : 2);
          store<u32>(q + 4, unchecked(b.sShndx[sym]));
          store<u32>(q + 8, sym);
          store<i32>(q + 16, <i32>f);
          store<i32>(q + 20, -1);
          store<u32>(q + 24, <u32>b.namePtr(sym));
          store<u32>(q + 28, unchecked(b.sNameLen[sym]));
          if (fa >= 0) this.originalOf(q, unchecked(this.a.funcs[fa]));
          break;
        }
        case T_DATA: {
          const d = <u32>tIdx;
          const sym = unchecked(b.datas[d]);
          if (unchecked(symStamp[sym]) == mark) break;
          unchecked(symStamp[sym] = mark);
          const da = unchecked(this.dPairB[d]);
          const q = this.refs.push(REF_REC);
          store<u8>(q, da >= 0 ? REF_DATA : REF_NEW_DATA);
          store<u8>(q + 1, dataFlags(b, sym) | (b.symBind(sym) == D.STB_LOCAL ? 0 : 2) << 4);
          store<u32>(q + 4, unchecked(b.sShndx[sym]) < b.nsec ? unchecked(b.sShndx[sym]) : 0);
          store<u32>(q + 8, sym);
          store<i32>(q + 16, -1);
          store<i32>(q + 20, <i32>d);
          store<u32>(q + 24, <u32>b.namePtr(sym));
          store<u32>(q + 28, unchecked(b.sNameLen[sym]));
          if (da >= 0) this.originalOf(q, unchecked(this.a.datas[da]));
          break;
        }
        case T_EXTERNAL:
        case T_ABS: {
          const sym = <u32>tIdx;
          if (unchecked(symStamp[sym]) == mark) break;
          unchecked(symStamp[sym] = mark);
          const q = this.refs.push(REF_REC);
          store<u8>(q, k == T_EXTERNAL ? REF_EXTERNAL : REF_ABS);
          store<u8>(q + 1, b.symBind(sym) == D.STB_WEAK ? 4 : 0);
          store<u32>(q + 8, sym);
          store<i32>(q + 16, -1);
          store<i32>(q + 20, -1);
          store<u32>(q + 24, <u32>b.namePtr(sym));
          store<u32>(q + 28, unchecked(b.sNameLen[sym]));
          break;
        }
      }
    }
  }

  /** Original symbol of a reference record: index and name. */
  private originalOf(q: usize, sa: u32): void {
    store<u32>(q + 12, sa);
    store<u32>(q + 32, <u32>this.a.namePtr(sa));
    store<u32>(q + 36, unchecked(this.a.sNameLen[sa]));
  }

  private addSectionRef(kind: u8, s: u32, mark: i32, secStamp: StaticArray<i32>, stack: Buf): void {
    const b = this.b;
    if (unchecked(secStamp[s]) == mark) return;
    unchecked(secStamp[s] = mark);
    const q = this.refs.push(REF_REC);
    store<u8>(q, kind);
    store<u32>(q + 4, s);
    store<i32>(q + 16, -1);
    store<i32>(q + 20, -1);
    store<u32>(q + 24, <u32>b.secNamePtr(s));
    store<u32>(q + 28, unchecked(b.secNameLen[s]));
    // What moves with the code brings its own references along.
    if ((kind == REF_PRIVATE || kind == REF_LSDA) && unchecked(b.secRelCount[s]) > 0) store<u32>(stack.push(4), s);
  }
}

// ---- helpers ------------------------------------------------------------------------

function filled(n: u32, v: i32): StaticArray<i32> {
  const a = new StaticArray<i32>(<i32>n);
  if (v != 0) for (let i: u32 = 0; i < n; i++) unchecked(a[i] = v);
  return a;
}

function differ(why: u8, at: i64): i32 {
  cWhy = why;
  cAt = at;
  return 2;
}

@inline function bindCode(bind: u8): u8 {
  return bind == D.STB_LOCAL ? 0 : bind == D.STB_WEAK ? 2 : 1;
}

/** Data flags: 1 thread-local, 2 read-only, 4 zero-initialized (bss/common), 8 common. */
function dataFlags(o: Obj, s: u32): u8 {
  const x = unchecked(o.sShndx[s]);
  if (x == D.SHN_COMMON) return 4 | 8;
  let fl: u8 = 0;
  if (o.symType(s) == D.STT_TLS) fl |= 1;
  if (!o.isDefined(s)) return fl;
  const k = unchecked(o.secKind[x]);
  if (k == SK_TLS) fl |= 1;
  if (k != SK_DATA && k != SK_TLS) fl |= 2;
  if (!o.secHasData(x)) fl |= 4;
  return fl;
}

/** Storage class of a data object: thread-local, writable or read-only. */
function dataClass(o: Obj, s: u32): u8 {
  return dataFlags(o, s) & 3;
}

/**
 * The tail of relocation r (see tail.ts): 0 for an absolute one; in code, the bytes from
 * the field to the end of its instruction, decoded from the start of the section (else
 * read backwards), -1 when neither says; -2 in data (PC-relative data: any).
 */
function tailOf(o: Obj, r: u32, sec: u32, code: bool): i32 {
  if (!relocIsPcRelative(o.relType(r))) return 0;
  if (!code) return -2;
  if (!o.secHasData(sec)) return -1;
  const off = o.relOff(r);
  const ins = o.insns;
  if (ins.decode(o.secData(sec), o.secSize(sec))) {
    const i = ins.at(off);
    if (i >= 0) {
      const end = ins.end(i);
      const fs = <u64>relocFieldSize(o.relType(r));
      if (off > ins.start(i) && off + fs <= end) return <i32>(end - off);
    }
  }
  return ripTail(o.secData(sec), 0, <i64>off);
}

/** The function of `o` whose full name is [p, p+len), or -1. */
function findFunction(o: Obj, p: usize, len: u32): i32 {
  // Walk the chain of its normalized name in the function table.
  const tmp = new StaticArray<u8>(<i32>max<u32>(len, 1));
  const nlen = normalize(p, len, changetype<usize>(tmp));
  const t = o.funcTable;
  const mask = <u32>t.length - 1;
  let h = fnv1a(changetype<usize>(tmp), <usize>nlen) & mask;
  while (true) {
    const e = unchecked(t[h]);
    if (e == 0) return -1;
    const s = e - 1;
    if (unchecked(o.sNormLen[s]) == nlen && memory.compare(o.normPtr(s), changetype<usize>(tmp), <usize>nlen) == 0) {
      let c: i32 = <i32>s;
      while (c >= 0) {
        if (unchecked(o.sNameLen[c]) == len && memory.compare(o.namePtr(<u32>c), p, <usize>len) == 0) return unchecked(o.sFunc[c]);
        c = unchecked(o.sameNext[c]);
      }
      return -1;
    }
    h = (h + 1) & mask;
  }
}

/**
 * What relocation r of section `sec` refers to: sets tKind, tIdx, tOff. `code`: the
 * section is code (its PC-relative fields have a tail that can be read back).
 */
export function resolve(o: Obj, r: u32, sec: u32, code: bool): void {
  const s = o.relSym(r);
  const add = o.relAdd(r);
  if (s == 0 || s >= o.nsym) {
    tKind = T_NONE; tIdx = 0; tOff = add;
    return;
  }
  const x = unchecked(o.sShndx[s]);
  const value = unchecked(o.sValue[s]);
  if (x == D.SHN_ABS) { tKind = T_ABS; tIdx = s; tOff = <i64>value + add; return; }
  if (x == D.SHN_COMMON) {
    const d = unchecked(o.sData[s]);
    if (d >= 0) { tKind = T_DATA; tIdx = d; tOff = add; return; }
  }
  if (!o.isDefined(s)) { tKind = T_EXTERNAL; tIdx = s; tOff = add; return; }
  const k = unchecked(o.secKind[x]);
  const pos = <i64>value + add; // position in the section, before the tail
  if (k == SK_STR) { tKind = T_STR; tIdx = x; tOff = pos; return; }
  if (k == SK_CONST) { tKind = T_CONST; tIdx = x; tOff = pos; return; }
  const f = unchecked(o.sFunc[s]);
  if (f >= 0) { tKind = T_FUNC; tIdx = f; tOff = pos - <i64>unchecked(o.fStart[f]); return; }
  const d = unchecked(o.sData[s]);
  if (d >= 0) { tKind = T_DATA; tIdx = d; tOff = add; return; }
  if (unchecked(o.sPrivate[s]) != 0) { tKind = T_PRIVATE; tIdx = x; tOff = pos; return; }
  // A section symbol or a local label: what lies at that position of the section.
  if (k == SK_TEXT) {
    const sf = unchecked(o.secFunc[x]);
    if (sf >= 0) { tKind = T_FUNC; tIdx = sf; tOff = pos - <i64>unchecked(o.fStart[sf]); return; }
  } else if (k == SK_DATA || k == SK_RODATA || k == SK_TLS || k == SK_LSDA) {
    const cnt = unchecked(o.secDataCount[x]);
    if (cnt == 0) {
      if (k == SK_RODATA || k == SK_LSDA) { tKind = T_PRIVATE; tIdx = x; tOff = pos; return; }
    } else {
      let which: i32 = -1;
      const first = unchecked(o.secDataFirst[x]);
      if (cnt == 1) which = <i32>unchecked(o.dataBySec[first]);
      else {
        // Several objects share the section (a section attribute): the one holding the position.
        let t = tailOf(o, r, sec, code);
        const lo = t >= 0 ? pos + t : (t == -1 ? pos + 4 : pos);
        const hi = t >= 0 ? pos + t : (t == -1 ? pos + 8 : pos);
        const wl = objectAt(o, first, cnt, lo);
        if (wl >= 0 && wl == objectAt(o, first, cnt, hi)) which = wl;
      }
      if (which >= 0) {
        tKind = T_DATA; tIdx = which; tOff = pos - <i64>unchecked(o.sValue[unchecked(o.datas[which])]);
        return;
      }
    }
  }
  tKind = T_SECTION; tIdx = x; tOff = pos;
}

/** The data object (of the section's sorted slice) whose bytes hold position p, or -1. */
function objectAt(o: Obj, first: i32, cnt: u32, p: i64): i32 {
  if (p < 0) return -1;
  let lo: u32 = 0;
  let hi = cnt;
  let found: i32 = -1;
  while (lo < hi) {
    const mid = lo + ((hi - lo) >> 1);
    const d = unchecked(o.dataBySec[<u32>first + mid]);
    if (<i64>unchecked(o.sValue[unchecked(o.datas[d])]) <= p) { found = <i32>d; lo = mid + 1; }
    else hi = mid;
  }
  if (found < 0) return -1;
  const s = unchecked(o.datas[found]);
  const size = <i64>unchecked(o.sSize[s]);
  return p < <i64>unchecked(o.sValue[s]) + max<i64>(size, 1) ? found : -1;
}

