// Dynamic symbol lookup over a process's modules, as ld.so binds a reference.
//
// The caller gives the search scope in order (it reads the real order from the
// target's link_map: the executable, LD_PRELOAD libraries, then DT_NEEDED breadth-first;
// an RTLD_LOCAL library and its dependencies form a scope of their own) as an array of
// 16-byte entries:
//
//    0 index handle u32 (a symbol index over a module's .dynsym)   4 reserved u32
//    8 load bias u64 (runtime address = bias + st_value)
//
// The rules are glibc's (elf/dl-lookup.c, do_lookup_x and check_match;
// https://sourceware.org/git/?p=glibc.git;a=blob;f=elf/dl-lookup.c):
// - In each module the symbols of the name are tried in table order (glibc walks the
//   GNU hash chain, which keeps table order among symbols of one name). A symbol is a
//   candidate unless: st_value is 0 and it is neither SHN_ABS nor STT_TLS; it is
//   undefined (SHN_UNDEF; with SYM_LOOKUP_DATA an executable's undefined symbol with a
//   value, its canonical PLT entry, counts, as for ld.so's non-PLT relocations); its
//   type is not NOTYPE, OBJECT, FUNC, COMMON, TLS or GNU_IFUNC.
// - Versions (.gnu.version entry `vs`, index ndx = vs & 0x7fff, hidden bit 0x8000):
//   a request with a version takes the symbol of that version name (hidden or not), or
//   an unversioned one (ndx 0 or 1: no version, or the base version whose name glibc
//   never matches) that is not hidden, unless the request is itself marked hidden. A
//   request without a version takes ndx 0 or 1 outright; other versions only when
//   exactly one non-hidden version of the name is defined in the module: the default
//   `name@@V`, as dlsym() and the static linker choose. With SYM_LOOKUP_OLDEST it
//   behaves as for an old binary without version information: ndx 2 (the oldest
//   version, GLIBC_2.2.5 on x86-64) is taken outright too.
//   A module without .gnu.version accepts any request.
// - The first candidate of a module decides for that module: if it has hidden or
//   internal visibility or is local, the module is skipped; GLOBAL and GNU_UNIQUE
//   (treated as GLOBAL: glibc's process-wide table of unique symbols is not modelled)
//   end the search; WEAK ends it too (ld.so's default: the first definition in scope
//   order wins), unless SYM_LOOKUP_DYNAMIC_WEAK (LD_DYNAMIC_WEAK=1): then the first weak
//   one is kept while the search goes on for a global one.
// - The address of a symbol is bias + st_value, but st_value alone for SHN_ABS. An
//   IFUNC's st_value is its resolver: the result gives it as the resolver and no
//   address (the function's address is what the resolver returns in the target). A
//   TLS symbol's st_value is an offset in its module's TLS block: no address either.
import { Err, failNeg } from "../error";
import { DYNSYM } from "../elf/file";
import * as D from "../elf/defs";
import { SymIndex } from "./symbols";
import { hashName, sameBytes } from "./hash";
import { symIndexes } from "./registry";

export const LOOKUP_DATA: u32 = 1;
export const LOOKUP_OLDEST: u32 = 2;
export const LOOKUP_DYNAMIC_WEAK: u32 = 4;
export const LOOKUP_HIDDEN_REQUEST: u32 = 8;

export const KIND_FUNC: u32 = 1;
export const KIND_OBJECT: u32 = 2;
export const KIND_IFUNC: u32 = 3;
export const KIND_TLS: u32 = 4;
export const KIND_NOTYPE: u32 = 5;
export const KIND_COMMON: u32 = 6;

export const RES_WEAK: u32 = 1;
export const RES_ABSOLUTE: u32 = 2;
export const RES_CANONICAL_PLT: u32 = 4;
export const RES_PROTECTED: u32 = 8;
export const RES_HIDDEN_VERSION: u32 = 16;

export const SCOPE_ENTRY_SIZE: u32 = 16;
export const RESULT_SIZE: u32 = 48;

const STV_INTERNAL: u8 = 1;
const STV_HIDDEN: u8 = 2;
const STV_PROTECTED: u8 = 3;

// ALLOWED_STT of dl-lookup.c: NOTYPE, OBJECT, FUNC, COMMON, TLS, GNU_IFUNC
const ALLOWED_STT: u32 = (1 << D.STT_NOTYPE) | (1 << D.STT_OBJECT) | (1 << D.STT_FUNC) | (1 << D.STT_COMMON) | (1 << D.STT_TLS) | (1 << D.STT_GNU_IFUNC);

/** Whether the version index `ndx` of module x names the `vlen` bytes at vp (base versions never do). */
function versionIs(x: SymIndex, ndx: u16, vp: usize, vlen: u32): bool {
  const v = x.file.versionOf(ndx);
  if (v === null || v.isBase || v.nameLen != vlen) return false;
  return sameBytes(x.file.bytes.ptr(v.name), vp, vlen);
}

/** Whether version index `ndx` has a version glibc would match by name (not 0, 1 or a base). */
function hasVersionName(x: SymIndex, ndx: u16): bool {
  if (ndx <= D.VER_NDX_GLOBAL) return false;
  const v = x.file.versionOf(ndx);
  return v !== null && !v.isBase;
}

let versionedSym: i32 = -1;
let numVersions: u32 = 0;

/** check_match: 1 candidate, 0 not. Counts default-version candidates of unversioned requests. */
function checkMatch(x: SymIndex, id: u32, vp: usize, vlen: u32, flags: u32): bool {
  const type = <u32>x.d.type(id);
  const raw = load<u16>(x.d.sym(id), 6);
  if (x.d.value(id) == 0 && raw != D.SHN_ABS && type != D.STT_TLS) return false;
  if (raw == D.SHN_UNDEF && (flags & LOOKUP_DATA) == 0) return false;
  if (((1 << type) & ALLOWED_STT) == 0) return false;
  if (x.tab.versym < 0) return true;
  const vs = x.file.symVersym(x.tab, id);
  const ndx = vs & 0x7fff;
  if (vlen != 0) {
    if (!versionIs(x, ndx, vp, vlen) && ((flags & LOOKUP_HIDDEN_REQUEST) != 0 || hasVersionName(x, ndx) || (vs & 0x8000) != 0)) return false;
    return true;
  }
  const limit: u16 = (flags & LOOKUP_OLDEST) != 0 ? 3 : 2;
  if (ndx >= limit) {
    if ((vs & 0x8000) == 0 && numVersions++ == 0) versionedSym = <i32>id;
    return false;
  }
  return true;
}

/** The symbol module x offers for the request (before visibility and binding), or -1. */
function moduleCandidate(x: SymIndex, p: usize, len: u32, h: u32, vp: usize, vlen: u32, flags: u32): i32 {
  versionedSym = -1;
  numVersions = 0;
  let id = x.d.findHashed(p, len, h);
  while (id >= 0) {
    if (checkMatch(x, <u32>id, vp, vlen, flags)) return id;
    id = x.d.findNext(<u32>id);
  }
  return numVersions == 1 ? versionedSym : -1;
}

/**
 * Looks the name (p, len), with version (vp, vlen) or none (vlen 0), up in the scope of
 * `count` entries at `scope`. Writes the 48-byte result to `out` and returns the scope
 * position of the module that defines it; -1 when no module does (error code 0) or on
 * failure (error code set).
 *
 *   result:  0 scope position u32   4 symbol id u32   8 kind u32   12 flags u32
 *           16 address u64 (0 for IFUNC and TLS)   24 st_value u64   32 st_size u64
 *           40 resolver u64 (IFUNC: bias + st_value; else 0)
 */
export function scopeFind(scope: usize, count: u32, p: usize, len: u32, vp: usize, vlen: u32, flags: u32, out: usize): i32 {
  const h = hashName(p, len);
  let weakPos: i32 = -1;
  let weakId: i32 = -1;
  for (let k: u32 = 0; k < count; k++) {
    const e = scope + <usize>k * SCOPE_ENTRY_SIZE;
    const handle = load<i32>(e);
    const x = symIndexes.get(handle);
    if (x === null) return failNeg(Err.BAD_HANDLE, "sym_scope_find: scope entry " + k.toString() + ": " + handle.toString() + " is not an open symbol index");
    if (!x.alive()) return failNeg(Err.SYM_ELF_CLOSED, "sym_scope_find: scope entry " + k.toString() + ": the ELF handle of symbol index " + handle.toString() + " was closed");
    if (x.table != DYNSYM) return failNeg(Err.SYM_NOT_DYNSYM, "sym_scope_find: scope entry " + k.toString() + ": symbol index " + handle.toString() + " is over .symtab; dynamic lookup uses .dynsym");
    const id = moduleCandidate(x, p, len, h, vp, vlen, flags);
    if (id < 0) continue;
    const u = <u32>id;
    const vis = x.d.other(u) & 3;
    if (vis == STV_HIDDEN || vis == STV_INTERNAL) continue;
    const bind = x.d.bind(u);
    if (bind == D.STB_WEAK) {
      if ((flags & LOOKUP_DYNAMIC_WEAK) != 0) {
        if (weakPos < 0) {
          weakPos = <i32>k;
          weakId = id;
        }
        continue;
      }
      writeResult(x, k, u, load<u64>(e, 8), out);
      return <i32>k;
    }
    if (bind == D.STB_GLOBAL || bind == D.STB_GNU_UNIQUE) {
      writeResult(x, k, u, load<u64>(e, 8), out);
      return <i32>k;
    }
    // local: ignored, next module
  }
  if (weakPos >= 0) {
    const e = scope + <usize>weakPos * SCOPE_ENTRY_SIZE;
    writeResult(symIndexes.get(load<i32>(e))!, <u32>weakPos, <u32>weakId, load<u64>(e, 8), out);
    return weakPos;
  }
  return -1;
}

function writeResult(x: SymIndex, pos: u32, id: u32, bias: u64, out: usize): void {
  const type = x.d.type(id);
  const raw = load<u16>(x.d.sym(id), 6);
  const value = x.d.value(id);
  let kind: u32 = KIND_NOTYPE;
  if (type == D.STT_FUNC) kind = KIND_FUNC;
  else if (type == D.STT_OBJECT) kind = KIND_OBJECT;
  else if (type == D.STT_GNU_IFUNC) kind = KIND_IFUNC;
  else if (type == D.STT_TLS) kind = KIND_TLS;
  else if (type == D.STT_COMMON) kind = KIND_COMMON;
  let flags: u32 = 0;
  if (x.d.bind(id) == D.STB_WEAK) flags |= RES_WEAK;
  if (raw == D.SHN_ABS) flags |= RES_ABSOLUTE;
  if (raw == D.SHN_UNDEF) flags |= RES_CANONICAL_PLT;
  if ((x.d.other(id) & 3) == STV_PROTECTED) flags |= RES_PROTECTED;
  if (x.tab.versym >= 0 && (x.file.symVersym(x.tab, id) & 0x8000) != 0) flags |= RES_HIDDEN_VERSION;
  const addr = raw == D.SHN_ABS ? value : bias + value;
  store<u32>(out, pos);
  store<u32>(out, id, 4);
  store<u32>(out, kind, 8);
  store<u32>(out, flags, 12);
  store<u64>(out, kind == KIND_IFUNC || kind == KIND_TLS ? 0 : addr, 16);
  store<u64>(out, value, 24);
  store<u64>(out, x.d.size(id), 32);
  store<u64>(out, kind == KIND_IFUNC ? addr : 0, 40);
}
