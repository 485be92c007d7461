// The relocation engine's loops: the scan of every relocation, symbol resolution, the
// relocation switch, and the stub-candidate table. They work on raw memory only, through
// plain functions with number parameters: a method of a managed object pays, on every
// call, the incremental GC's shadow-stack frame (a store of `this`, a bounds check of the
// shadow stack), and its field loads cannot be kept in registers across stores to linear
// memory. engine.ts (the Relocator class) owns the memory and turns the failures these
// functions report (a kind and the failing record) into messages.
//
// Layouts (all little-endian, in unmanaged memory):
//
// context (CTX bytes), one per Relocator:
//    0 syms u32          4 secs u32         8 symBase u32 (first Elf64_Sym)   12 input base u32
//   16 nsym u32         20 nsec u32        24 cands u32   28 candCount u32   32 candCap u32
//   36 hashTab u32      40 hashCap u32     44 infoFlags u32   48 planFlags u32
//   52 errKind u32      56 errValue i64    64 errLo i64   72 errHi i64
//   80 GOT u64          88 stubAddr u64    96 own TLS module u64   104 own TLS start u64
//  112 own block tpoff i64   120 own TLS flags u32 (1 set, 2 static)   124 reserved
//
// symbol record (SREC bytes, one per .symtab entry):
//    0 S u64            resolved value (an address; for a TLS symbol its offset in the block)
//    8 bound u64        bound address, or the offset in the block of a bound TLS symbol
//   16 got u64          GOT slot holding S (bound, or the engine's own after placement)
//   24 plt u64          bound PLT entry
//   32 tpGot u64        GOT slot holding tpoff(S)
//   40 gdGot u64        GOT pair (module id, offset)
//   48 ldGot u64        GOT pair (module id, 0) of S's module
//   56 tpoff i64        tpoff(S), resolved (valid with TLS_STATIC)
//   64 module u64       TLS module id, resolved or bound
//   72 blockTpoff i64   bound: tpoff of the module's block (valid with B_TLS_STATIC)
//   80 refs u32         REF_* kinds the relocations ask for
//   84 state u32        the bits below
//   88 ldPair u32       index of the engine's own LD pair (with OWN_LDGOT)
//   92 section i32      index of the section defining it (SHN_XINDEX resolved), -1: none
//
// section record (SEC bytes, one per section header):
//    0 sh_flags u64   8 sh_offset u64   16 sh_size u64   24 sh_addralign u64
//   32 address u64 (placed)   40 layout group i8 (-1: not SHF_ALLOC)   41 placed u8
//   42 has data u8   43 written by the current apply u8   44 reserved u32
//
// stub candidate (CAND bytes): sym u32, flags u32 (C_*), addend i64, stub index u32, reserved u32
// hash table entry (8 bytes): candidate index + 1 (0: empty) u32, hash u32
import * as D from "../elf/defs";
import * as R from "./defs";

export const CTX: u32 = 128;
export const C_SYMS: u32 = 0;
export const C_SECS: u32 = 4;
export const C_SYMBASE: u32 = 8;
export const C_INPUT: u32 = 12;
export const C_NSYM: u32 = 16;
export const C_NSEC: u32 = 20;
export const C_CANDS: u32 = 24;
export const C_CANDCOUNT: u32 = 28;
export const C_CANDCAP: u32 = 32;
export const C_HASH: u32 = 36;
export const C_HASHCAP: u32 = 40;
export const C_INFO: u32 = 44;
export const C_PLAN: u32 = 48;
export const C_ERRKIND: u32 = 52;
export const C_ERRVALUE: u32 = 56;
export const C_ERRLO: u32 = 64;
export const C_ERRHI: u32 = 72;
export const C_GOT: u32 = 80;
export const C_STUBADDR: u32 = 88;
export const C_OWNMODULE: u32 = 96;
export const C_OWNSTART: u32 = 104;
export const C_OWNTP: u32 = 112;
export const C_OWNFLAGS: u32 = 120;
export const OWN_SET: u32 = 1;
export const OWN_STATIC: u32 = 2;

export const SREC: u32 = 96;
export const S_VALUE: u32 = 0;
export const S_BOUND: u32 = 8;
export const S_GOT: u32 = 16;
export const S_PLT: u32 = 24;
export const S_TPGOT: u32 = 32;
export const S_GDGOT: u32 = 40;
export const S_LDGOT: u32 = 48;
export const S_TPOFF: u32 = 56;
export const S_MODULE: u32 = 64;
export const S_BLOCKTP: u32 = 72;
export const S_REFS: u32 = 80;
export const S_STATE: u32 = 84;
export const S_LDPAIR: u32 = 88;
export const S_SECTION: u32 = 92;

// state bits
export const B_ADDR: u32 = 1;
export const B_GOT: u32 = 2;
export const B_PLT: u32 = 4;
export const B_TPGOT: u32 = 8;
export const B_GDGOT: u32 = 16;
export const B_LDGOT: u32 = 32;
export const B_TLS: u32 = 64;
export const B_TLS_STATIC: u32 = 128;
export const OWN_GOT: u32 = 0x100;
export const OWN_TPGOT: u32 = 0x200;
export const OWN_GDGOT: u32 = 0x400;
export const OWN_LDGOT: u32 = 0x800;
export const RESOLVED: u32 = 0x1000;
export const TLS_STATIC: u32 = 0x2000;
export const TLS_MODULE: u32 = 0x4000; // S_MODULE valid
export const GOTSYM: u32 = 0x8000; // _GLOBAL_OFFSET_TABLE_
export const IS_TLS: u32 = 0x10000; // a thread-local symbol (STT_TLS, or defined in an SHF_TLS section)
export const IFUNC_DEF: u32 = 0x20000; // an STT_GNU_IFUNC defined in the object
export const RESOLVE_MASK: u32 = RESOLVED | TLS_STATIC | TLS_MODULE;

export const SEC: u32 = 48;
export const X_FLAGS: u32 = 0;
export const X_OFFSET: u32 = 8;
export const X_SIZE: u32 = 16;
export const X_ALIGN: u32 = 24;
export const X_ADDR: u32 = 32;
export const X_KIND: u32 = 40;
export const X_PLACED: u32 = 41;
export const X_DATA: u32 = 42;
export const X_WRITTEN: u32 = 43;

export const CAND: u32 = 24;
export const C_BRANCH: u32 = 1;
export const C_NEEDED: u32 = 2;
export const C_RESERVED: u32 = 4;

// Object-level flags (reloc_info), and constraint flags (reloc_plan).
export const INFO_GOT_BASE: u32 = 1; // some relocation uses GOT itself
export const INFO_TLS_SECTIONS: u32 = 2; // the object has SHF_TLS sections
export const INFO_TLS_REFS: u32 = 4; // some relocation is a TLS one
export const INFO_STATIC_TLS: u32 = 8; // initial- or local-exec relocations
export const INFO_DYNAMIC_TLS: u32 = 16; // general- or local-dynamic relocations
export const PLAN_BELOW_2G: u32 = 1; // R_X86_64_32S against the object's own symbols
export const PLAN_BELOW_4G: u32 = 2; // R_X86_64_32 against them
export const PLAN_NEAR: u32 = 4; // nearLo..nearHi is set

// Failure kinds of scanRelocs (E_SCAN_*) and applyRelocs (E_APPLY_*), left in C_ERRKIND.
export const E_SCAN_UNKNOWN: u32 = 1;
export const E_SCAN_REFUSED: u32 = 2;
export const E_SCAN_OFFSET: u32 = 3;
export const E_SCAN_SYMBOL_INDEX: u32 = 4;
export const E_SCAN_TLS_MISMATCH: u32 = 5;
export const E_SCAN_IFUNC: u32 = 6;
export const E_SCAN_NEEDS_SYMBOL: u32 = 7;
export const E_APPLY_UNRESOLVED: u32 = 10;
export const E_APPLY_RANGE: u32 = 11; // value, lo, hi in C_ERRVALUE/LO/HI
export const E_APPLY_NOT_STATIC: u32 = 12;
export const E_APPLY_SIZE: u32 = 13;
export const E_APPLY_UNKNOWN: u32 = 14;

export const JUMP_STUB: u64 = 16; // assembly/x86/writer.ts JUMP_STUB_SIZE

@inline function signed32(v: i64): bool {
  return v >= -2147483648 && v <= 2147483647;
}

@inline function rec(c: usize, i: u32): usize {
  return <usize>load<u32>(c, C_SYMS) + <usize>i * SREC;
}

@inline function sec(c: usize, s: u32): usize {
  return <usize>load<u32>(c, C_SECS) + <usize>s * SEC;
}

/** Whether the rel32 field at `off` of section `s` (input bytes) is a branch: E8/E9 rel32, 0F 8x rel32. */
export function isBranch(c: usize, s: u32, off: u64): bool {
  const x = sec(c, s);
  if ((load<u64>(x, X_FLAGS) & D.SHF_EXECINSTR) == 0 || off < 1) return false;
  const p = <usize>load<u32>(c, C_INPUT) + <usize>(load<u64>(x, X_OFFSET) + off);
  const op = load<u8>(p - 1);
  if (op == 0xe8 || op == 0xe9) return true;
  return off >= 2 && (op & 0xf0) == 0x80 && load<u8>(p - 2) == 0x0f;
}

// ---- stub candidates: (symbol, branch?, addend) -> candidate index ----------------------

@inline function candHash(sym: u32, branch: bool, addend: i64): u32 {
  let h = <u64>sym * 0x9e3779b97f4a7c15 ^ <u64>addend * 0xc2b2ae3d27d4eb4f ^ (branch ? 0x165667b19e3779f9 : 0);
  h ^= h >> 29;
  return <u32>(h ^ (h >> 32));
}

/** Index of the candidate (sym, branch, addend), or -1. */
export function findCandidate(c: usize, sym: u32, branch: bool, addend: i64): i32 {
  const cap = load<u32>(c, C_HASHCAP);
  if (cap == 0) return -1;
  const tab = <usize>load<u32>(c, C_HASH);
  const cands = <usize>load<u32>(c, C_CANDS);
  const h = candHash(sym, branch, addend);
  const mask = cap - 1;
  let slot = h & mask;
  for (let probe: u32 = 0; probe < cap; probe++) {
    const e = tab + <usize>slot * 8;
    const idx1 = load<u32>(e);
    if (idx1 == 0) return -1;
    if (load<u32>(e, 4) == h) {
      const p = cands + <usize>(idx1 - 1) * CAND;
      if (load<u32>(p) == sym && ((load<u32>(p, 4) & C_BRANCH) != 0) == branch && load<i64>(p, 8) == addend) return <i32>(idx1 - 1);
    }
    slot = (slot + 1) & mask;
  }
  return -1;
}

function hashInsert(c: usize, idx: u32): void {
  const tab = <usize>load<u32>(c, C_HASH);
  const p = <usize>load<u32>(c, C_CANDS) + <usize>idx * CAND;
  const h = candHash(load<u32>(p), (load<u32>(p, 4) & C_BRANCH) != 0, load<i64>(p, 8));
  const mask = load<u32>(c, C_HASHCAP) - 1;
  let slot = h & mask;
  while (load<u32>(tab + <usize>slot * 8) != 0) slot = (slot + 1) & mask;
  store<u32>(tab + <usize>slot * 8, idx + 1);
  store<u32>(tab + <usize>slot * 8, h, 4);
}

function rehash(c: usize, cap: u32): void {
  const old = <usize>load<u32>(c, C_HASH);
  if (old != 0) heap.free(old);
  const tab = heap.alloc(<usize>cap * 8);
  memory.fill(tab, 0, <usize>cap * 8);
  store<u32>(c, <u32>tab, C_HASH);
  store<u32>(c, cap, C_HASHCAP);
  const n = load<u32>(c, C_CANDCOUNT);
  for (let i: u32 = 0; i < n; i++) hashInsert(c, i);
}

/** Records a call to (sym, branch, addend); `needed`: the symbol has no section (a stub is reserved). */
function addCandidate(c: usize, sym: u32, branch: bool, addend: i64, needed: bool): void {
  let idx = findCandidate(c, sym, branch, addend);
  if (idx < 0) {
    const count = load<u32>(c, C_CANDCOUNT);
    const cap = load<u32>(c, C_CANDCAP);
    if (count == cap) {
      const ncap = cap == 0 ? 64 : cap * 2;
      const nc = heap.alloc(<usize>ncap * CAND);
      const old = <usize>load<u32>(c, C_CANDS);
      if (old != 0) {
        memory.copy(nc, old, <usize>count * CAND);
        heap.free(old);
      }
      store<u32>(c, <u32>nc, C_CANDS);
      store<u32>(c, ncap, C_CANDCAP);
    }
    const hcap = load<u32>(c, C_HASHCAP);
    if ((count + 1) * 2 > hcap) rehash(c, hcap == 0 ? 128 : hcap * 2);
    idx = <i32>count;
    const p = <usize>load<u32>(c, C_CANDS) + <usize>idx * CAND;
    store<u32>(p, sym);
    store<u32>(p, branch ? C_BRANCH : 0, 4);
    store<i64>(p, addend, 8);
    store<u32>(p, 0, 16);
    store<u32>(p, 0, 20);
    store<u32>(c, count + 1, C_CANDCOUNT);
    hashInsert(c, <u32>idx);
  }
  if (needed) {
    const p = <usize>load<u32>(c, C_CANDS) + <usize>idx * CAND;
    store<u32>(p, load<u32>(p, 4) | C_NEEDED, 4);
  }
}

// ---- the scan ------------------------------------------------------------------------------

/**
 * Scans `count` Elf64_Rela at `rela` for section T: known type, field inside the section,
 * symbol in range and of the right TLS-ness, references recorded per symbol, stub
 * candidates. Returns -1, or the index of the failing relocation (kind in C_ERRKIND).
 */
export function scanRelocs(c: usize, rela: usize, count: u32, T: u32): i32 {
  const syms = <usize>load<u32>(c, C_SYMS);
  const symBase = <usize>load<u32>(c, C_SYMBASE);
  const nsym = load<u32>(c, C_NSYM);
  const x = sec(c, T);
  const size = load<u64>(x, X_SIZE);
  // Branch fields (E8/E9 rel32, 0F 8x rel32) are told by the bytes before them.
  const exec = (load<u64>(x, X_FLAGS) & D.SHF_EXECINSTR) != 0;
  const data = <usize>load<u32>(c, C_INPUT) + <usize>load<u64>(x, X_OFFSET);
  let info: u32 = 0;
  let plan: u32 = 0;
  for (let j: u32 = 0; j < count; j++) {
    const o = rela + <usize>j * D.RELA_SIZE;
    const off = load<u64>(o);
    const rinfo = load<u64>(o, 8);
    const type = <u32>rinfo;
    const sym = <u32>(rinfo >> 32);
    const ti: u32 = type < 64 ? <u32>load<u8>(R.TYPE_INFO + <usize>type) : R.K_UNKNOWN;
    const cls = ti & 3;
    if (cls != R.K_OK) return scanFail(c, cls == R.K_UNKNOWN ? E_SCAN_UNKNOWN : E_SCAN_REFUSED, j, info, plan);
    const width = <u64>((ti >> 2) & 15);
    if (off > size || width > size - off) return scanFail(c, E_SCAN_OFFSET, j, info, plan);
    if (type == R.R_NONE) continue;
    if (sym >= nsym) return scanFail(c, E_SCAN_SYMBOL_INDEX, j, info, plan);
    const r = syms + <usize>sym * SREC;
    const st = load<u32>(r, S_STATE);
    const tls = (ti & R.TI_TLS) != 0;
    const defSec = load<i32>(r, S_SECTION);
    if (sym != 0) {
      if (tls != ((st & IS_TLS) != 0)) return scanFail(c, E_SCAN_TLS_MISMATCH, j, info, plan);
      if ((st & IFUNC_DEF) != 0) return scanFail(c, E_SCAN_IFUNC, j, info, plan);
    }
    let refs: u32 = 0;
    switch (type) {
      case R.R_64: case R.R_32: case R.R_32S: case R.R_16: case R.R_8:
        refs = R.REF_ADDR;
        break;
      case R.R_GOTOFF64:
        refs = R.REF_ADDR;
        info |= INFO_GOT_BASE;
        break;
      case R.R_PC64: case R.R_PC16: case R.R_PC8:
        refs = R.REF_ADDR | R.REF_PCREL;
        break;
      case R.R_PC32:
      case R.R_PLT32: {
        const op = exec && off >= 1 ? load<u8>(data + <usize>off - 1) : 0;
        const branch = exec && (op == 0xe8 || op == 0xe9 || (off >= 2 && (op & 0xf0) == 0x80 && load<u8>(data + <usize>off - 2) == 0x0f));
        if (type == R.R_PC32 && !branch) {
          refs = R.REF_ADDR | R.REF_PCREL;
          break;
        }
        refs = R.REF_CALL;
        // A stub candidate: a symbol without a section, or one the caller may bind (not a
        // section symbol). Calls between the object's own sections get no stub.
        if (sym != 0 && (defSec < 0 || (load<u8>(symBase + <usize>sym * D.SYM_SIZE, 4) & 0xf) != D.STT_SECTION)) {
          addCandidate(c, sym, branch, load<i64>(o, 16), defSec < 0);
        }
        break;
      }
      case R.R_PLTOFF64:
        refs = R.REF_CALL;
        info |= INFO_GOT_BASE;
        break;
      case R.R_GOTPCREL: case R.R_GOTPCRELX: case R.R_REX_GOTPCRELX: case R.R_CODE_4_GOTPCRELX:
      case R.R_CODE_5_GOTPCRELX: case R.R_CODE_6_GOTPCRELX: case R.R_GOTPCREL64:
        refs = R.REF_GOT;
        break;
      case R.R_GOT32: case R.R_GOT64: case R.R_GOTPLT64:
        refs = R.REF_GOT;
        info |= INFO_GOT_BASE;
        break;
      case R.R_GOTPC32: case R.R_GOTPC64:
        info |= INFO_GOT_BASE;
        break;
      case R.R_GOTTPOFF: case R.R_CODE_4_GOTTPOFF: case R.R_CODE_5_GOTTPOFF: case R.R_CODE_6_GOTTPOFF:
        refs = R.REF_TPOFF_GOT;
        info |= INFO_STATIC_TLS;
        break;
      case R.R_TPOFF32:
        refs = R.REF_TPOFF;
        info |= INFO_STATIC_TLS;
        break;
      case R.R_TLSGD:
        refs = R.REF_TLSGD;
        info |= INFO_DYNAMIC_TLS;
        break;
      case R.R_TLSLD:
        refs = R.REF_TLSLD;
        info |= INFO_DYNAMIC_TLS;
        break;
      case R.R_DTPOFF32: case R.R_DTPOFF64:
        refs = R.REF_DTPOFF;
        break;
      case R.R_SIZE32: case R.R_SIZE64:
        refs = R.REF_SIZE;
        break;
    }
    if (sym == 0) {
      if ((refs & ~(R.REF_ADDR | R.REF_PCREL)) != 0) return scanFail(c, E_SCAN_NEEDS_SYMBOL, j, info, plan);
      continue;
    }
    if (tls) info |= INFO_TLS_REFS;
    if (defSec >= 0) {
      if (type == R.R_32S) plan |= PLAN_BELOW_2G;
      else if (type == R.R_32) plan |= PLAN_BELOW_4G;
    }
    store<u32>(r, load<u32>(r, S_REFS) | refs, S_REFS);
  }
  store<u32>(c, load<u32>(c, C_INFO) | info, C_INFO);
  store<u32>(c, load<u32>(c, C_PLAN) | plan, C_PLAN);
  return -1;
}

function scanFail(c: usize, kind: u32, j: u32, info: u32, plan: u32): i32 {
  store<u32>(c, kind, C_ERRKIND);
  store<u32>(c, load<u32>(c, C_INFO) | info, C_INFO);
  store<u32>(c, load<u32>(c, C_PLAN) | plan, C_PLAN);
  return <i32>j;
}

// ---- resolution ------------------------------------------------------------------------------

/**
 * Computes S (and TLS facts) of symbol i from its binding or its placed section. Leaves
 * RESOLVED clear when it cannot (Relocator.unreason says why).
 */
export function resolveSymbol(c: usize, i: u32): void {
  const r = rec(c, i);
  let st = load<u32>(r, S_STATE) & ~RESOLVE_MASK;
  if (i == 0) {
    store<u64>(r, 0);
    store<u32>(r, st | RESOLVED, S_STATE);
    return;
  }
  if ((st & B_TLS) != 0) {
    const off = load<u64>(r, S_BOUND);
    store<u64>(r, off);
    st |= RESOLVED | TLS_MODULE;
    if ((st & B_TLS_STATIC) != 0) {
      store<i64>(r, load<i64>(r, S_BLOCKTP) + <i64>off, S_TPOFF);
      st |= TLS_STATIC;
    }
  } else if ((st & B_ADDR) != 0) {
    store<u64>(r, load<u64>(r, S_BOUND));
    st |= RESOLVED;
  } else if ((st & GOTSYM) != 0) {
    store<u64>(r, load<u64>(c, C_GOT));
    st |= RESOLVED;
  } else {
    const sym = <usize>load<u32>(c, C_SYMBASE) + <usize>i * D.SYM_SIZE;
    const raw = load<u16>(sym, 6);
    const s = load<i32>(r, S_SECTION);
    if (raw == D.SHN_UNDEF) {
      if ((load<u8>(sym, 4) >> 4) == D.STB_WEAK && (st & IS_TLS) == 0) {
        store<u64>(r, 0); // an unbound weak reference is 0, as a static link makes it
        st |= RESOLVED;
      }
    } else if (raw == D.SHN_ABS) {
      store<u64>(r, load<u64>(sym, 8));
      st |= RESOLVED;
    } else if (s >= 0 && <u32>s < load<u32>(c, C_NSEC) && load<u8>(sec(c, <u32>s), X_PLACED) != 0) {
      const addr = load<u64>(sec(c, <u32>s), X_ADDR) + load<u64>(sym, 8);
      if ((st & IS_TLS) != 0) {
        const own = load<u32>(c, C_OWNFLAGS);
        if ((own & OWN_SET) != 0) {
          const off = addr - load<u64>(c, C_OWNSTART);
          store<u64>(r, off);
          store<u64>(r, load<u64>(c, C_OWNMODULE), S_MODULE);
          st |= RESOLVED | TLS_MODULE;
          if ((own & OWN_STATIC) != 0) {
            store<i64>(r, load<i64>(c, C_OWNTP) + <i64>off, S_TPOFF);
            st |= TLS_STATIC;
          }
        }
      } else {
        store<u64>(r, addr);
        st |= RESOLVED;
      }
    }
    // SHN_COMMON and other special indices: only a binding gives them an address.
  }
  store<u32>(r, st, S_STATE);
}

// ---- the relocation switch ------------------------------------------------------------------

/** The range check of the switch: false (value and range recorded) when v is outside [lo, hi]. */
@inline function check(c: usize, v: i64, lo: i64, hi: i64): bool {
  if (v >= lo && v <= hi) return true;
  store<u32>(c, E_APPLY_RANGE, C_ERRKIND);
  store<i64>(c, v, C_ERRVALUE);
  store<i64>(c, lo, C_ERRLO);
  store<i64>(c, hi, C_ERRHI);
  return false;
}

@inline function failApply(c: usize, kind: u32, o: usize): usize {
  store<u32>(c, kind, C_ERRKIND);
  return o;
}

/**
 * Applies `count` Elf64_Rela at `rela` to section T, placed at secBase and written at loc0.
 * Locals are named after the psABI letters: S, A, P, L (a PLT entry or S), GOT. Returns 0,
 * or the failing record (kind in C_ERRKIND; for a range error the value and the range).
 */
export function applyRelocs(c: usize, rela: usize, count: u32, T: u32, secBase: u64, loc0: usize): usize {
  const syms = <usize>load<u32>(c, C_SYMS);
  const GOT = load<u64>(c, C_GOT);
  const end = rela + <usize>count * D.RELA_SIZE;
  for (let o = rela; o < end; o += D.RELA_SIZE) {
    const off = load<u64>(o);
    const info = load<u64>(o, 8);
    const A = load<i64>(o, 16);
    const type = <u32>info;
    const r = syms + <usize>(info >> 32) * SREC;
    const st = load<u32>(r, S_STATE);
    const S = load<u64>(r, S_VALUE);
    const P = secBase + off;
    const loc = loc0 + <usize>off;
    switch (type) {
      case R.R_NONE:
        break;
      case R.R_64: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        store<u64>(loc, S + <u64>A);
        break;
      }
      case R.R_PC32: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A - P);
        if (signed32(v)) store<i32>(loc, <i32>v);
        else if (!viaStub(c, o, T, S, P, loc)) return o;
        break;
      }
      case R.R_PLT32: {
        let L = S;
        if ((st & B_PLT) != 0) L = load<u64>(r, S_PLT);
        else if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(L + <u64>A - P);
        if (signed32(v)) store<i32>(loc, <i32>v);
        else if (!viaStub(c, o, T, L, P, loc)) return o;
        break;
      }
      case R.R_GOTPCREL: case R.R_GOTPCRELX: case R.R_REX_GOTPCRELX:
      case R.R_CODE_4_GOTPCRELX: case R.R_CODE_5_GOTPCRELX: case R.R_CODE_6_GOTPCRELX: {
        const v = <i64>(load<u64>(r, S_GOT) + <u64>A - P);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_32: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A);
        if (!check(c, v, 0, 0xffffffff)) return o;
        store<u32>(loc, <u32>v);
        break;
      }
      case R.R_32S: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_TLSGD: {
        const v = <i64>(load<u64>(r, S_GDGOT) + <u64>A - P);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_TLSLD: {
        const v = <i64>(load<u64>(r, S_LDGOT) + <u64>A - P);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_GOTTPOFF: case R.R_CODE_4_GOTTPOFF: case R.R_CODE_5_GOTTPOFF: case R.R_CODE_6_GOTTPOFF: {
        const v = <i64>(load<u64>(r, S_TPGOT) + <u64>A - P);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_DTPOFF32: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_DTPOFF64: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        store<u64>(loc, S + <u64>A);
        break;
      }
      case R.R_TPOFF32: {
        if ((st & TLS_STATIC) == 0) return failApply(c, (st & RESOLVED) == 0 ? E_APPLY_UNRESOLVED : E_APPLY_NOT_STATIC, o);
        const v = load<i64>(r, S_TPOFF) + A;
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_PC64: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        store<u64>(loc, S + <u64>A - P);
        break;
      }
      case R.R_GOTOFF64: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        store<u64>(loc, S + <u64>A - GOT);
        break;
      }
      case R.R_GOTPC32: {
        const v = <i64>(GOT + <u64>A - P);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_GOT32: {
        const v = <i64>(load<u64>(r, S_GOT) - GOT + <u64>A);
        if (!check(c, v, -2147483648, 2147483647)) return o;
        store<i32>(loc, <i32>v);
        break;
      }
      case R.R_GOT64: case R.R_GOTPLT64: {
        store<u64>(loc, load<u64>(r, S_GOT) - GOT + <u64>A);
        break;
      }
      case R.R_GOTPCREL64: {
        store<u64>(loc, load<u64>(r, S_GOT) + <u64>A - P);
        break;
      }
      case R.R_GOTPC64: {
        store<u64>(loc, GOT + <u64>A - P);
        break;
      }
      case R.R_PLTOFF64: {
        let L = S;
        if ((st & B_PLT) != 0) L = load<u64>(r, S_PLT);
        else if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        store<u64>(loc, L - GOT + <u64>A);
        break;
      }
      case R.R_16: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A);
        if (!check(c, v, -0x8000, 0xffff)) return o;
        store<u16>(loc, <u16>v);
        break;
      }
      case R.R_PC16: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A - P);
        if (!check(c, v, -0x8000, 0x7fff)) return o;
        store<u16>(loc, <u16>v);
        break;
      }
      case R.R_8: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A);
        if (!check(c, v, -0x80, 0xff)) return o;
        store<u8>(loc, <u8>v);
        break;
      }
      case R.R_PC8: {
        if ((st & RESOLVED) == 0) return failApply(c, E_APPLY_UNRESOLVED, o);
        const v = <i64>(S + <u64>A - P);
        if (!check(c, v, -0x80, 0x7f)) return o;
        store<u8>(loc, <u8>v);
        break;
      }
      case R.R_SIZE32: case R.R_SIZE64: {
        const sym = <u32>(info >> 32);
        const symp = <usize>load<u32>(c, C_SYMBASE) + <usize>sym * D.SYM_SIZE;
        if (sym == 0 || load<u16>(symp, 6) == D.SHN_UNDEF) return failApply(c, E_APPLY_SIZE, o);
        const v = <i64>(load<u64>(symp, 16) + <u64>A);
        if (type == R.R_SIZE64) store<u64>(loc, <u64>v);
        else {
          if (!check(c, v, 0, 0xffffffff)) return o;
          store<u32>(loc, <u32>v);
        }
        break;
      }
      default:
        // The scan admitted only the types above.
        return failApply(c, E_APPLY_UNKNOWN, o);
    }
  }
  return 0;
}

/**
 * A rel32 call or jump (or a PLT32 in data) that does not reach L goes through its stub: a
 * branch lands on the stub (which goes on to L + A + 4); data uses the stub as L. False
 * (range recorded) when there is no stub for it, or the stub is out of reach too.
 */
function viaStub(c: usize, o: usize, T: u32, L: u64, P: u64, loc: usize): bool {
  const info = load<u64>(o, 8);
  const type = <u32>info;
  const A = load<i64>(o, 16);
  const branch = isBranch(c, T, load<u64>(o));
  const direct = <i64>(L + <u64>A - P);
  if (type == R.R_PC32 && !branch) return check(c, direct, -2147483648, 2147483647);
  const k = findCandidate(c, <u32>(info >> 32), branch, A);
  const p = <usize>load<u32>(c, C_CANDS) + <usize>k * CAND;
  if (k < 0 || (load<u32>(p, 4) & C_RESERVED) == 0) return check(c, direct, -2147483648, 2147483647);
  const stub = load<u64>(c, C_STUBADDR) + <u64>load<u32>(p, 16) * JUMP_STUB;
  const v = branch ? <i64>(stub - P - 4) : <i64>(stub + <u64>A - P);
  if (!check(c, v, -2147483648, 2147483647)) return false;
  store<i32>(loc, <i32>v);
  return true;
}
