// GOT and PLT slots of a linked module: how the module itself already reaches a symbol.
//
// Patched code that calls `malloc` should go where the module's own calls go: through
// its PLT entry or GOT slot, which ld.so filled with whatever interposition (an
// LD_PRELOAD malloc), symbol versions and lazy binding decided. Facts (x86-64 psABI
// §4.4 "Relocation", §5.2 "Procedure Linkage Table", https://gitlab.com/x86-psABIs/x86-64-ABI;
// the IBT/.plt.sec layout is from the "x86 IBT and SHSTK" addendum to the psABI):
//
// - .rela.dyn / .rela.plt against .dynsym:
//     R_X86_64_GLOB_DAT  (6)  a GOT slot holding S (address-taken functions, data)
//     R_X86_64_JUMP_SLOT (7)  a .got.plt slot holding S, read by a PLT entry (lazy: first
//                             points back into .plt)
//     R_X86_64_64        (1)  a data word holding S + A (a pointer in .data)
//     R_X86_64_COPY      (5)  an executable's copy of a library's data object: references
//                             must bind to the copy, at r_offset, not to the library
//     R_X86_64_IRELATIVE (37) no symbol: the slot holds the result of calling the resolver
//                             at A (an IFUNC used inside its own module, e.g. libc's memcpy)
//     R_X86_64_DTPMOD64 (16), DTPOFF64 (17), TPOFF64 (18): TLS GOT slots
// - PLT entries jump through their slot with `jmp *disp32(%rip)` (ff 25 disp32), maybe
//   `bnd` prefixed (f2), maybe after `endbr64` (f3 0f 1e fa). The slot is
//   the address of the next instruction + disp32.
//     .plt      16-byte entries: jmp *slot(%rip); push $index; jmp .plt0   (lazy, no IBT)
//               with IBT:        endbr64; push $index; bnd jmp .plt0      (no slot jump)
//     .plt.sec  16-byte entries: endbr64; bnd jmp *slot(%rip); nop        (IBT: the call target)
//     .plt.got   8-byte entries: jmp *slot(%rip); xchg %ax,%ax            (16 with IBT)
//   The first .plt entry (push GOT+8; jmp *GOT+16) is not a symbol's. Matching these
//   byte patterns at each entry start is enough (no general decoder needed); an image
//   read from memory has no section headers, so no PLT entries are reported for it.
//
// Slot records (40 bytes, internal and exported alike except `next`):
//    0 slot address u64 (r_offset; for COPY the address of the copy)   8 PLT entry u64 (0: none)
//   16 addend i64   24 type u32   28 symbol id i32 (-1: none)   32 PLT section u32   36 next u32
import { Err, fail } from "../error";
import { DYNSYM, RELR } from "../elf/file";
import * as D from "../elf/defs";
import { SymIndex } from "./symbols";
import { radixSort16, RADIX_COUNTS_BYTES } from "./sort";

export const SLOT_SIZE: u32 = 40;

export const PLT_NONE: u32 = 0;
export const PLT_PLT: u32 = 1;
export const PLT_SEC: u32 = 2;
export const PLT_GOT: u32 = 3;

const R_X86_64_64: u32 = 1;
export const R_X86_64_COPY: u32 = 5;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;
const R_X86_64_DTPMOD64: u32 = 16;
const R_X86_64_DTPOFF64: u32 = 17;
const R_X86_64_TPOFF64: u32 = 18;
const R_X86_64_IRELATIVE: u32 = 37;

@inline function isSlotType(t: u32): bool {
  return t == R_X86_64_64 || t == R_X86_64_COPY || t == R_X86_64_GLOB_DAT || t == R_X86_64_JUMP_SLOT ||
    t == R_X86_64_DTPMOD64 || t == R_X86_64_DTPOFF64 || t == R_X86_64_TPOFF64 || t == R_X86_64_IRELATIVE;
}

const ENDBR64: u32 = 0xfa1e0ff3; // f3 0f 1e fa

/** Builds the slot table of x once. Returns 0 or a failure code. */
export function buildSlots(x: SymIndex): i32 {
  if (x.d.slotsBuilt) return 0;
  const f = x.file;
  if (x.table != DYNSYM) return fail(Err.SYM_NOT_DYNSYM, "GOT/PLT slots: the index is over .symtab; dynamic relocations refer to .dynsym (build the index with table 1)");
  if (f.type == D.ET_REL) return fail(Err.SYM_NOT_LINKED, "GOT/PLT slots: an ET_REL object has no GOT or PLT");

  // PLT entries: (slot, entry | kind << 62) records, sorted by slot; .plt.sec first, so
  // that it wins over a .plt entry for the same slot (stable sort).
  const plts = StaticArray.fromArray<string>([".plt.sec", ".plt", ".plt.got", ".plt.bnd"]);
  const kinds = StaticArray.fromArray<u32>([PLT_SEC, PLT_PLT, PLT_GOT, PLT_SEC]);
  let total: u64 = 0;
  for (let k = 0; k < plts.length; k++) {
    const si = f.sectionByNameStr(plts[k]);
    if (si < 0) continue;
    const s = f.sections[si];
    if (!s.hasData) continue;
    total += s.size / pltStep(s.entsize, kinds[k]);
  }
  const stubs = heap.alloc(max<usize>(<usize>total << 4, 16));
  let ns: u32 = 0;
  for (let k = 0; k < plts.length; k++) {
    const si = f.sectionByNameStr(plts[k]);
    if (si < 0) continue;
    const s = f.sections[si];
    if (!s.hasData) continue;
    const step = pltStep(s.entsize, kinds[k]);
    const base = f.bytes.base + <usize>s.offset;
    for (let off: u64 = 0; off + step <= s.size; off += step) {
      const p = base + <usize>off;
      let o: u64 = 0;
      if (step >= 4 && load<u32>(p) == ENDBR64) o = 4;
      if (o < step && load<u8>(p + <usize>o) == 0xf2) o++;
      if (o + 6 > step || load<u8>(p + <usize>o) != 0xff || load<u8>(p + <usize>o + 1) != 0x25) continue;
      const disp = <i64>load<i32>(p + <usize>o + 2);
      const entry = s.addr + off;
      const slot = <u64>(<i64>(entry + o + 6) + disp);
      const r = stubs + (<usize>ns << 4);
      store<u64>(r, slot);
      store<u64>(r, (entry & ((<u64>1 << 62) - 1)) | (<u64>kinds[k] << 62), 8);
      ns++;
    }
  }
  if (ns > 1) {
    const tmp = heap.alloc(<usize>ns << 4);
    const counts = heap.alloc(RADIX_COUNTS_BYTES);
    radixSort16(stubs, tmp, counts, ns);
    heap.free(tmp);
    heap.free(counts);
  }

  // Relocations against .dynsym of the kinds above, in table order.
  let count: u32 = 0;
  const b = f.bytes;
  for (let t = 0; t < f.relas.length; t++) {
    const rt = f.relas[t];
    if (rt.kind == RELR || rt.symtab != DYNSYM) continue;
    for (let j: u32 = 0; j < rt.count; j++) {
      if (isSlotType(b.u32(rt.offset + <u64>j * D.RELA_SIZE + 8))) count++;
    }
  }
  const recs = heap.alloc(max<usize>(<usize>count * SLOT_SIZE, 16));
  let k: u32 = 0;
  for (let t = 0; t < f.relas.length; t++) {
    const rt = f.relas[t];
    if (rt.kind == RELR || rt.symtab != DYNSYM) continue;
    for (let j: u32 = 0; j < rt.count; j++) {
      const ro = rt.offset + <u64>j * D.RELA_SIZE;
      const type = b.u32(ro + 8);
      if (!isSlotType(type)) continue;
      const offset = b.u64(ro);
      const addend = b.i64(ro + 16);
      let sym = <i32>b.u32(ro + 12);
      if (type == R_X86_64_IRELATIVE) sym = ifuncAt(x, <u64>addend);
      else if (sym == 0) sym = -1;
      const r = recs + <usize>k * SLOT_SIZE;
      store<u64>(r, offset);
      store<u64>(r, 0, 8);
      store<i64>(r, addend, 16);
      store<u32>(r, type, 24);
      store<i32>(r, sym, 28);
      store<u32>(r, PLT_NONE, 32);
      store<u32>(r, 0, 36);
      const e = findStub(stubs, ns, offset);
      if (e >= 0) {
        const v = load<u64>(stubs + (<usize>e << 4), 8);
        store<u64>(r, v & ((<u64>1 << 62) - 1), 8);
        store<u32>(r, <u32>(v >> 62), 32);
      }
      k++;
    }
  }
  heap.free(stubs);
  // Per-symbol chains in table order: prepend from the last slot.
  const head = heap.alloc(max<usize>(<usize>x.d.n << 2, 4));
  memory.fill(head, 0, <usize>x.d.n << 2);
  for (let i = <i32>count - 1; i >= 0; i--) {
    const r = recs + <usize>i * SLOT_SIZE;
    const sym = load<i32>(r, 28);
    if (sym < 0 || <u32>sym >= x.d.n) continue;
    const h = head + (<usize>sym << 2);
    store<u32>(r, load<u32>(h), 36);
    store<u32>(h, <u32>i + 1);
  }
  x.d.slotRecs = recs;
  x.d.slotHead = head;
  x.d.slotCount = count;
  x.d.slotsBuilt = true;
  return 0;
}

@inline function pltStep(entsize: u64, kind: u32): u64 {
  if (entsize == 8 || entsize == 16) return entsize;
  return kind == PLT_GOT ? 8 : 16;
}

/** Index of the first stub record whose slot is `slot`, or -1. */
function findStub(stubs: usize, n: u32, slot: u64): i32 {
  let lo: u32 = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (load<u64>(stubs + (<usize>mid << 4)) < slot) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && load<u64>(stubs + (<usize>lo << 4)) == slot ? <i32>lo : -1;
}

/** The IFUNC symbol whose resolver is at `addr` (an IRELATIVE addend), or -1. */
function ifuncAt(x: SymIndex, addr: u64): i32 {
  let e = x.d.entryStartingAt(addr);
  if (e < 0) return -1;
  let found: i32 = -1;
  while (<u32>e < x.d.m && x.d.entryStart(<u32>e) == addr) {
    const id = x.d.entryId(<u32>e);
    if (x.d.type(id) == D.STT_GNU_IFUNC) {
      // Prefer a global name (memcpy) over a local alias.
      if (found < 0 || (x.d.bind(<u32>found) == D.STB_LOCAL && x.d.bind(id) != D.STB_LOCAL)) found = <i32>id;
    }
    e++;
  }
  return found;
}

/** Copies slot record `i` to `out` (40 bytes, `next` cleared). */
export function writeSlot(x: SymIndex, i: u32, out: usize): void {
  const r = x.d.slotRecs + <usize>i * SLOT_SIZE;
  memory.copy(out, r, 36);
  store<u32>(out, 0, 36);
}

/** Slot+1 of the first slot of symbol `id`, 0: none. */
@inline export function firstSlot(x: SymIndex, id: u32): u32 {
  return load<u32>(x.d.slotHead + (<usize>id << 2));
}

/** Slot+1 after slot `i` (0-based) of the same symbol, 0: none. */
@inline export function nextSlot(x: SymIndex, i: u32): u32 {
  return load<u32>(x.d.slotRecs + <usize>i * SLOT_SIZE, 36);
}

@inline export function slotType(x: SymIndex, i: u32): u32 {
  return load<u32>(x.d.slotRecs + <usize>i * SLOT_SIZE, 24);
}

@inline export function slotAddress(x: SymIndex, i: u32): u64 {
  return load<u64>(x.d.slotRecs + <usize>i * SLOT_SIZE);
}
