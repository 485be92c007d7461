// Exports of the symbol index (docs/core-abi.md, "Symbol index"). An index reads the
// symbol table of an open ELF handle in place: the ELF handle (and its input) must stay
// open while the index is used; a call on an index whose ELF handle was closed fails
// with SYM_ELF_CLOSED instead of reading freed memory.
//
// Lookups return a symbol id (the symbol's index in its table) or -1. -1 with
// core_error_code() 0 means "not there"; with a nonzero code, a failure.
import { Err, fail, failNeg, clearError, errorCode } from "../error";
import { SYMTAB, DYNSYM } from "../elf/file";
import { elfFiles } from "../elf/registry";
import * as D from "../elf/defs";
import { SymIndex, AT_GUESSED, PIECE_WHOLE } from "./symbols";
import { symIndexes } from "./registry";
import { scopeFind } from "./scope";
import { buildSlots, writeSlot, firstSlot, nextSlot, slotType, slotAddress, SLOT_SIZE, R_X86_64_COPY } from "./slots";
import { sameBytes } from "./hash";

/**
 * Builds the index of table `table` (0 .symtab, 1 .dynsym, 2 .symtab when the file has
 * one, else .dynsym) of ELF handle `elf`. Returns a handle > 0, or 0 on failure.
 */
export function sym_index_new(elf: i32, table: u32): i32 {
  clearError();
  const f = elfFiles.get(elf);
  if (f === null) {
    fail(Err.BAD_HANDLE, "sym_index_new: " + elf.toString() + " is not an open ELF handle");
    return 0;
  }
  if (table > 2) {
    fail(Err.BAD_ARGUMENT, "sym_index_new: table " + table.toString() + " is not 0 (.symtab), 1 (.dynsym) or 2 (either)");
    return 0;
  }
  let k = table;
  if (k == 2) k = f.symtabs[SYMTAB] !== null ? SYMTAB : DYNSYM;
  const t = f.symtabs[k];
  if (t === null) {
    fail(Err.SYM_NO_TABLE, "sym_index_new: the ELF file has no " + (table == 0 ? ".symtab" : table == 1 ? ".dynsym" : ".symtab or .dynsym"));
    return 0;
  }
  const x = new SymIndex(f, elf, k, t);
  x.d.build();
  return symIndexes.add(x);
}

/** Releases an index. Returns 0, or BAD_HANDLE. */
export function sym_index_close(h: i32): i32 {
  const x = symIndexes.get(h);
  if (x === null) return fail(Err.BAD_HANDLE, "sym_index_close: " + h.toString() + " is not an open symbol index");
  x.dispose();
  symIndexes.remove(h);
  return 0;
}

function get(h: i32, what: string): SymIndex | null {
  const x = symIndexes.get(h);
  if (x === null) {
    fail(Err.BAD_HANDLE, what + ": " + h.toString() + " is not an open symbol index");
    return null;
  }
  if (!x.alive()) {
    fail(Err.SYM_ELF_CLOSED, what + ": the ELF handle " + x.elf.toString() + " of symbol index " + h.toString() + " was closed");
    return null;
  }
  return x;
}

/**
 * Writes the 32-byte index record:
 *    0 symbols u32   4 table u32 (0 .symtab, 1 .dynsym)   8 functions in the address table u32
 *   12 hash buckets u32   16 ELF handle i32   20 flags u32 (1: ET_REL, addresses are section offsets)
 *   24 reserved u64
 */
export function sym_index_info(h: i32, out: usize): i32 {
  const x = get(h, "sym_index_info");
  if (x === null) return lastCodeOr(Err.BAD_HANDLE);
  store<u32>(out, x.d.n);
  store<u32>(out, x.table, 4);
  store<u32>(out, x.d.m, 8);
  store<u32>(out, x.d.mask + 1, 12);
  store<i32>(out, x.elf, 16);
  store<u32>(out, x.d.isRel ? 1 : 0, 20);
  store<u64>(out, 0, 24);
  return 0;
}

/** The code get() recorded, for status exports. */
function lastCodeOr(c: i32): i32 {
  const e = errorCode();
  return e != 0 ? e : c;
}

/** id of the whole function `id` belongs to: itself, its root if a piece (-1: root absent); -1 for a non-function. */
function rootId(x: SymIndex, id: u32): i32 {
  const t = x.d.type(id);
  if (t != D.STT_FUNC && t != D.STT_GNU_IFUNC) return -1;
  if (x.d.pieceOf(id) == PIECE_WHOLE) return <i32>id;
  return <i32>x.d.rootOf(id) - 1;
}

/**
 * Writes the 64-byte symbol record of symbol `id`:
 *    0 id u32   4 name ptr u32   8 name length u32 (the whole name, "@VERSION" included)   12 flags u32 (1 defined)
 *   16 st_value u64   24 st_size u64   32 st_info u8   33 st_other u8   34 versym u16
 *   36 section index u32 (SHN_XINDEX resolved)
 *   40 file i32 (id of the STT_FILE symbol of its group; -1 none)   44 sympos u32 (0: not a local)
 *   48 piece u32 (0 whole, 1 .cold, 2 .part)   52 root i32 (whole function it belongs to; -1 none)
 *   56 root name length u32 (a prefix of the name; = base name length when whole)
 *   60 base name length u32 (without a "@VERSION" / "@@VERSION" suffix of a linked .symtab)
 */
export function sym_get(h: i32, id: u32, out: usize): i32 {
  const x = get(h, "sym_get");
  if (x === null) return lastCodeOr(Err.BAD_HANDLE);
  if (id >= x.d.n) return fail(Err.BAD_ARGUMENT, "sym_get: symbol " + id.toString() + " is not in a table of " + x.d.n.toString());
  const s = x.d.sym(id);
  store<u32>(out, id);
  store<u32>(out, <u32>x.d.namePtr(id), 4);
  store<u32>(out, x.d.fullNameLen(id), 8);
  store<u32>(out, x.d.isDefined(id) ? 1 : 0, 12);
  store<u64>(out, load<u64>(s, 8), 16);
  store<u64>(out, load<u64>(s, 16), 24);
  store<u8>(out, load<u8>(s, 4), 32);
  store<u8>(out, load<u8>(s, 5), 33);
  store<u16>(out, x.file.symVersym(x.tab, id), 34);
  store<u32>(out, x.d.shndx(id), 36);
  store<i32>(out, <i32>x.d.fileOf(id) - 1, 40);
  store<u32>(out, x.d.symposOf(id), 44);
  const piece = x.d.pieceOf(id);
  store<u32>(out, piece, 48);
  store<i32>(out, rootId(x, id), 52);
  store<u32>(out, piece == PIECE_WHOLE ? x.d.nameLen(id) : x.d.rootLenOf(id), 56);
  store<u32>(out, x.d.nameLen(id), 60);
  return 0;
}

/** id of the first symbol (in table order) named by the `len` bytes at `name`, or -1. */
export function sym_find(h: i32, name: usize, len: u32): i32 {
  clearError();
  const x = get(h, "sym_find");
  if (x === null) return -1;
  return x.d.find(name, len);
}

/** id of the next symbol after `id` with the same name, or -1. */
export function sym_find_next(h: i32, id: u32): i32 {
  clearError();
  const x = get(h, "sym_find_next");
  if (x === null) return -1;
  if (id >= x.d.n) return failNeg(Err.BAD_ARGUMENT, "sym_find_next: symbol " + id.toString() + " is not in a table of " + x.d.n.toString());
  return x.d.findNext(id);
}

/**
 * id of the first local symbol named (name, len) in source file (file, fileLen) at
 * position `sympos`, or -1. fileLen 0: any file; a file matches an STT_FILE name equal
 * to it, or when one ends with "/" and the other (gcc writes base names: "b.c" for
 * "src/b.c"). sympos 0: any position.
 */
export function sym_find_local(h: i32, name: usize, len: u32, file: usize, fileLen: u32, sympos: u32): i32 {
  clearError();
  const x = get(h, "sym_find_local");
  if (x === null) return -1;
  return x.d.findLocal(name, len, file, fileLen, sympos);
}

/**
 * Batch sym_find: `count` 8-byte entries (name ptr u32, length u32) at `names`; writes
 * one i32 id (or -1) per name to `out`. Returns how many were found, or -1.
 */
export function sym_find_many(h: i32, names: usize, count: u32, out: usize): i32 {
  clearError();
  const x = get(h, "sym_find_many");
  if (x === null) return -1;
  return x.d.findMany(names, count, out);
}

/**
 * id of the innermost function containing address `addr` (ET_REL: offset `addr` in
 * section `shndx`; otherwise shndx is ignored), or -1. When `out` is not 0, writes the
 * 32-byte record:
 *    0 start u64   8 end u64 (exclusive; guessed for an unsized symbol)   16 id u32
 *   20 root i32 (whole function it belongs to: itself, a piece's root, -1 when absent)
 *   24 piece u32 (0 whole, 1 .cold, 2 .part)   28 flags u32 (1: end guessed)
 * Link-time addresses: subtract the load bias from a runtime address first.
 */
export function sym_at(h: i32, addr: u64, shndx: u32, out: usize): i32 {
  clearError();
  const x = get(h, "sym_at");
  if (x === null) return -1;
  const e = x.d.entryAt(x.d.addressKey(addr, shndx));
  if (e < 0) return -1;
  const id = x.d.entryId(<u32>e);
  if (out != 0) {
    let start = x.d.entryStart(<u32>e);
    let end = x.d.entryEnd(<u32>e);
    if (x.d.isRel) {
      const low = (<u64>1 << 40) - 1;
      start &= low;
      end = end - (x.d.entryStart(<u32>e) & ~low);
    }
    store<u64>(out, start);
    store<u64>(out, end, 8);
    store<u32>(out, id, 16);
    store<i32>(out, rootId(x, id), 20);
    store<u32>(out, x.d.pieceOf(id), 24);
    store<u32>(out, x.d.size(id) == 0 ? AT_GUESSED : 0, 28);
  }
  return <i32>id;
}

/**
 * Batch sym_at: `count` u64 addresses at `addrs` (all in section `shndx` for ET_REL);
 * writes one i32 id (or -1) per address to `out`. Returns how many were found, or -1.
 */
export function sym_at_many(h: i32, addrs: usize, count: u32, shndx: u32, out: usize): i32 {
  clearError();
  const x = get(h, "sym_at_many");
  if (x === null) return -1;
  return x.d.atMany(addrs, count, shndx, out);
}

/**
 * Dynamic lookup of (name, len) with version (ver, verLen; verLen 0: none) over the
 * scope of `count` 16-byte entries at `scope` (index handle u32, reserved u32, load
 * bias u64), as ld.so binds; `flags`: 1 data reference (canonical PLT entries count),
 * 2 unversioned request of an old binary (oldest version), 4 LD_DYNAMIC_WEAK, 8 the
 * requested version is hidden. Writes the 48-byte result to `out` and returns the scope
 * position of the defining module, or -1. See docs/core-abi.md for the rules.
 */
export function sym_scope_find(scope: usize, count: u32, name: usize, len: u32, ver: usize, verLen: u32, flags: u32, out: usize): i32 {
  clearError();
  return scopeFind(scope, count, name, len, ver, verLen, flags, out);
}

/** Number of GOT/PLT slots of the module (index over .dynsym of a linked file), or -1. */
export function sym_slot_count(h: i32): i32 {
  clearError();
  const x = get(h, "sym_slot_count");
  if (x === null) return -1;
  if (buildSlots(x) != 0) return -1;
  return <i32>x.d.slotCount;
}

/**
 * Writes `count` 40-byte slot records from `first`:
 *    0 slot address u64 (r_offset; R_X86_64_COPY: the copy itself)   8 PLT entry address u64 (0: none)
 *   16 addend i64   24 relocation type u32   28 symbol id i32 (-1: none; IRELATIVE: the IFUNC
 *      whose resolver is the addend)   32 PLT section u32 (0 none, 1 .plt, 2 .plt.sec, 3 .plt.got)
 *   36 reserved u32
 * Returns the number written, or -1.
 */
export function sym_slots(h: i32, first: u32, count: u32, out: usize): i32 {
  clearError();
  const x = get(h, "sym_slots");
  if (x === null) return -1;
  if (buildSlots(x) != 0) return -1;
  const n = x.d.slotCount;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "sym_slots: range " + first.toString() + "+" + count.toString() + " exceeds " + n.toString() + " slots");
  for (let i: u32 = 0; i < count; i++) writeSlot(x, first + i, out + <usize>i * SLOT_SIZE);
  return <i32>count;
}

/**
 * The module's slots for the symbols named (name, len): every symbol of that name in
 * table order, each with its slots in relocation order. With a version (ver, verLen >
 * 0), symbols of another version are skipped (unversioned ones are kept). Writes up to
 * `max` 40-byte slot records to `out`; returns the total number found, or -1.
 */
export function sym_slots_find(h: i32, name: usize, len: u32, ver: usize, verLen: u32, out: usize, max: u32): i32 {
  clearError();
  const x = get(h, "sym_slots_find");
  if (x === null) return -1;
  if (buildSlots(x) != 0) return -1;
  let total: u32 = 0;
  let id = x.d.find(name, len);
  while (id >= 0) {
    const u = <u32>id;
    let ok = true;
    if (verLen != 0 && x.tab.versym >= 0) {
      const ndx = x.file.symVersym(x.tab, u) & 0x7fff;
      const v = ndx > D.VER_NDX_GLOBAL ? x.file.versionOf(ndx) : null;
      if (v !== null && !v.isBase) ok = v.nameLen == verLen && sameBytes(x.file.bytes.ptr(v.name), ver, verLen);
    }
    if (ok) {
      let s = firstSlot(x, u);
      while (s != 0) {
        if (total < max) writeSlot(x, s - 1, out + <usize>total * SLOT_SIZE);
        total++;
        s = nextSlot(x, s - 1);
      }
      // An executable's copy of a library object is defined under every alias of the
      // object (environ and __environ), while R_X86_64_COPY names only one of them.
      if (x.d.type(u) == D.STT_OBJECT && x.d.isDefined(u) && firstSlot(x, u) == 0) {
        const value = x.d.value(u);
        for (let i: u32 = 0; i < x.d.slotCount; i++) {
          if (slotType(x, i) == R_X86_64_COPY && slotAddress(x, i) == value) {
            if (total < max) writeSlot(x, i, out + <usize>total * SLOT_SIZE);
            total++;
          }
        }
      }
    }
    id = x.d.findNext(u);
  }
  return <i32>total;
}
