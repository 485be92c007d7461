// Exports of the relocation engine (documented in docs/core-abi.md, "Relocation engine").
// A relocation handle works on an open ELF handle: that handle and its input must stay
// open until reloc_close (every call checks it still is).
import { Err, fail, failNeg, clearError } from "../error";
import { HandleTable } from "../handles";
import { elfFiles } from "../elf/registry";
import { Relocator } from "./engine";

const relocs = new HandleTable<Relocator>();
const elfOf = new Map<i32, i32>(); // relocation handle -> its ELF handle

function get(h: i32, what: string): Relocator | null {
  clearError();
  const r = relocs.get(h);
  if (r === null) {
    fail(Err.BAD_HANDLE, what + ": " + h.toString() + " is not an open relocation handle");
    return null;
  }
  const e = elfFiles.get(elfOf.get(h));
  if (e === null || e !== r.elf) {
    fail(Err.BAD_HANDLE, what + ": the ELF handle of relocation handle " + h.toString() + " was closed");
    return null;
  }
  return r;
}

/** Scans an ET_REL object (an open ELF handle). Returns a relocation handle > 0, or 0. */
export function reloc_open(elf: i32): i32 {
  clearError();
  const f = elfFiles.get(elf);
  if (f === null) {
    fail(Err.BAD_HANDLE, "reloc_open: " + elf.toString() + " is not an open ELF handle");
    return 0;
  }
  const r = new Relocator(f);
  if (r.open() != 0) {
    r.dispose();
    return 0;
  }
  const h = relocs.add(r);
  elfOf.set(h, elf);
  return h;
}

/** Releases a relocation handle (not its ELF handle). 0, or BAD_HANDLE. */
export function reloc_close(h: i32): i32 {
  const r = relocs.get(h);
  if (r === null) return fail(Err.BAD_HANDLE, "reloc_close: " + h.toString() + " is not an open relocation handle");
  r.dispose();
  relocs.remove(h);
  elfOf.delete(h);
  return 0;
}

/**
 * 48-byte info record:
 *    0 relocations applied u32   4 tables applied u32   8 referenced symbols u32
 *   12 flags u32 (1 uses GOT, 2 has TLS sections, 4 TLS relocations, 8 static-TLS models, 16 dynamic-TLS models)
 *   16 sections u32   20 stub candidates u32   24 max section alignment u64
 *   32 referenced symbols without a section (undefined, absolute, common) u32: the first of reloc_refs
 *   36 reserved u32   40 reserved u64
 */
export function reloc_info(h: i32, out: usize): i32 {
  const r = get(h, "reloc_info");
  if (r === null) return Err.BAD_HANDLE;
  store<u32>(out, r.relocCount);
  store<u32>(out + 4, r.tableCount);
  store<u32>(out + 8, r.refCount);
  store<u32>(out + 12, r.infoFlags);
  store<u32>(out + 16, r.nsec);
  store<u32>(out + 20, r.candCount);
  store<u64>(out + 24, r.maxAlign());
  store<u32>(out + 32, r.refUndefined);
  store<u32>(out + 36, 0);
  store<u64>(out + 40, 0);
  return 0;
}

/** 32-byte records of the referenced symbols: those without a section first, each group in symbol order. Number written, or -1. */
export function reloc_refs(h: i32, first: u32, count: u32, out: usize): i32 {
  const r = get(h, "reloc_refs");
  if (r === null) return -1;
  const n = r.refCount;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "reloc_refs: range " + first.toString() + "+" + count.toString() + " exceeds " + n.toString() + " referenced symbols");
  for (let k: u32 = 0; k < count; k++) r.refRecord(first + k, out + <usize>k * 32);
  return <i32>count;
}

/** Binds symbol `sym` to an address (S). 0 or an error code. */
export function reloc_bind_addr(h: i32, sym: u32, addr: u64): i32 {
  const r = get(h, "reloc_bind_addr");
  if (r === null) return Err.BAD_HANDLE;
  return r.bindAddr(sym, addr);
}

/** Binds the GOT slot of `sym` of `kind` (0 address, 1 tpoff, 2 TLS GD pair, 3 TLS LD pair) to an existing slot. */
export function reloc_bind_got(h: i32, sym: u32, kind: u32, addr: u64): i32 {
  const r = get(h, "reloc_bind_got");
  if (r === null) return Err.BAD_HANDLE;
  return r.bindGot(sym, kind, addr);
}

/** Binds the PLT entry (L) of `sym`: PLT32 and PLTOFF64 use it instead of S. */
export function reloc_bind_plt(h: i32, sym: u32, addr: u64): i32 {
  const r = get(h, "reloc_bind_plt");
  if (r === null) return Err.BAD_HANDLE;
  return r.bindPlt(sym, addr);
}

/**
 * Binds a thread-local symbol: its module's TLS id, its offset in the module's TLS block,
 * and (flags bit 0 set: the module is in static TLS) the block's offset from the thread pointer.
 */
export function reloc_bind_tls(h: i32, sym: u32, module: u64, offset: u64, blockTpoff: i64, flags: u32): i32 {
  const r = get(h, "reloc_bind_tls");
  if (r === null) return Err.BAD_HANDLE;
  return r.bindTls(sym, module, offset, blockTpoff, (flags & 1) != 0);
}

/**
 * The TLS module of the object's own SHF_TLS sections: module id, the address where its TLS
 * image starts (a symbol's offset in the block is its placed address minus this), the block's
 * offset from the thread pointer and (flags bit 0) whether it is in static TLS.
 */
export function reloc_set_tls(h: i32, module: u64, tlsStart: u64, blockTpoff: i64, flags: u32): i32 {
  const r = get(h, "reloc_set_tls");
  if (r === null) return Err.BAD_HANDLE;
  return r.setTls(module, tlsStart, blockTpoff, (flags & 1) != 0);
}

/** Sets GOT (for GOTPC32, GOTOFF64, GOT64, PLTOFF64, _GLOBAL_OFFSET_TABLE_) to an existing address. Before reloc_plan. */
export function reloc_set_got_base(h: i32, addr: u64): i32 {
  const r = get(h, "reloc_set_got_base");
  if (r === null) return Err.BAD_HANDLE;
  return r.setGotBase(addr);
}

/**
 * Fixes the bindings, lays out the engine's GOT and reserves stubs. Writes the 64-byte plan:
 *    0 GOT size u64 (8-aligned)   8 stub area size u64 (16-aligned)   16 GOT slots u32   20 stubs u32
 *   24 flags u32 (1 below 2 GiB: R_X86_64_32S; 2 below 4 GiB: R_X86_64_32; 4 nearLo/nearHi set)
 *   28 reserved u32   32 below u64 (0: no limit)   40 nearLo u64   48 nearHi u64   56 max alignment u64
 */
export function reloc_plan(h: i32, out: usize): i32 {
  const r = get(h, "reloc_plan");
  if (r === null) return Err.BAD_HANDLE;
  const e = r.plan();
  if (e != 0) return e;
  store<u64>(out, r.gotSize());
  store<u64>(out + 8, r.stubSize());
  store<u32>(out + 16, r.gotSlots);
  store<u32>(out + 20, r.stubCount);
  store<u32>(out + 24, r.planFlags);
  store<u32>(out + 28, 0);
  store<u64>(out + 32, r.below);
  store<u64>(out + 40, r.nearLo);
  store<u64>(out + 48, r.nearHi);
  store<u64>(out + 56, r.maxAlign());
  return 0;
}

/** Places section `sec` (SHF_ALLOC) at `addr` (aligned to its sh_addralign). */
export function reloc_place(h: i32, sec: u32, addr: u64): i32 {
  const r = get(h, "reloc_place");
  if (r === null) return Err.BAD_HANDLE;
  return r.place(sec, addr);
}

/** Places the engine's GOT (8-aligned). */
export function reloc_place_got(h: i32, addr: u64): i32 {
  const r = get(h, "reloc_place_got");
  if (r === null) return Err.BAD_HANDLE;
  return r.placeGot(addr);
}

/** Places the stub area (16-aligned). */
export function reloc_place_stubs(h: i32, addr: u64): i32 {
  const r = get(h, "reloc_place_stubs");
  if (r === null) return Err.BAD_HANDLE;
  return r.placeStubs(addr);
}

/**
 * Places every SHF_ALLOC section, the stubs and the GOT from `base` (flags bit 0:
 * page-aligned r-x / r-- / rw- groups). After reloc_plan. Returns the size used, or -1.
 */
export function reloc_layout(h: i32, base: u64, flags: u32): i64 {
  const r = get(h, "reloc_layout");
  if (r === null) return -1;
  return r.layout(base, flags);
}

/** Address of a placed section, or -1 when it is not placed (or not a section). */
export function reloc_section_addr(h: i32, sec: u32): i64 {
  const r = get(h, "reloc_section_addr");
  if (r === null) return -1;
  if (sec >= r.nsec) return failNeg(Err.BAD_ARGUMENT, "reloc_section_addr: " + sec.toString() + " is not a section");
  return r.isPlaced(sec) ? <i64>r.secAddr(sec) : -1;
}

/** Address of the GOT (which 0) or of the stub area (which 1), or -1 when not placed. */
export function reloc_area_addr(h: i32, which: u32): i64 {
  const r = get(h, "reloc_area_addr");
  if (r === null) return -1;
  if (which == 0) return r.gotPlaced ? <i64>r.gotAddr : -1;
  if (which == 1) return r.stubsPlaced ? <i64>r.stubAddr : -1;
  return failNeg(Err.BAD_ARGUMENT, "reloc_area_addr: " + which.toString() + " is not 0 (GOT) or 1 (stubs)");
}

/**
 * Writes the placed sections, relocated, and the GOT and stubs into the output window
 * [out, out+len), which stands for target addresses [base, base+len). Bytes of the
 * window outside them are left as they are. Flags bit 0 (partial): skip what lies wholly
 * outside the window (to apply window by window); otherwise everything must lie inside.
 * 0 or an error code.
 */
export function reloc_apply(h: i32, out: usize, len: usize, base: u64, flags: u32): i32 {
  const r = get(h, "reloc_apply");
  if (r === null) return Err.BAD_HANDLE;
  if (out == 0 && len != 0) return fail(Err.BAD_ARGUMENT, "reloc_apply: null output pointer");
  return r.apply(out, <u64>len, base, (flags & 1) != 0);
}

/** Start of the TLS image the layout made (the first placed SHF_TLS section), or -1. */
export function reloc_tls_image(h: i32): i64 {
  const r = get(h, "reloc_tls_image");
  if (r === null) return -1;
  return r.tlsImageStart();
}

/** Resolved S of symbol `sym` (a TLS symbol: its offset in the block), as u64 at `out`. 0 or an error code. */
export function reloc_symbol_value(h: i32, sym: u32, out: usize): i32 {
  const r = get(h, "reloc_symbol_value");
  if (r === null) return Err.BAD_HANDLE;
  return r.symbolValue(sym, out);
}

/** 32-byte records of the engine's GOT slots (after reloc_apply). Number written, or -1. */
export function reloc_got_slots(h: i32, first: u32, count: u32, out: usize): i32 {
  const r = get(h, "reloc_got_slots");
  if (r === null) return -1;
  const n = r.gotSlots;
  if (r.state == 0) return failNeg(Err.RELOC_STATE, "reloc_got_slots: call reloc_plan first");
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "reloc_got_slots: range " + first.toString() + "+" + count.toString() + " exceeds " + n.toString() + " slots");
  return r.gotSlotRecords(first, count, out);
}

/** 32-byte records of the stubs (after reloc_apply). Number written, or -1. */
export function reloc_stubs(h: i32, first: u32, count: u32, out: usize): i32 {
  const r = get(h, "reloc_stubs");
  if (r === null) return -1;
  const n = r.stubCount;
  if (r.state == 0) return failNeg(Err.RELOC_STATE, "reloc_stubs: call reloc_plan first");
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "reloc_stubs: range " + first.toString() + "+" + count.toString() + " exceeds " + n.toString() + " stubs");
  return r.stubRecords(first, count, out);
}
