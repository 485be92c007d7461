// The x86-64 relocation engine: places the sections of an ET_REL object at addresses
// the caller chooses and applies its RELA relocations, the way a static linker would for
// one object, but with every outside symbol resolved by the caller.
//
// Why it looks like this. A patch is one relocatable object built from the fixed source.
// It runs inside a process that was linked long ago: its calls must reach the running
// module's functions, its data references the running module's variables, and where the
// module reaches a symbol through its GOT or PLT (an interposed malloc, a copy-relocated
// variable, a TLS variable of another library), the patch must do the same. So the caller
// (src/apply) resolves every symbol the object refers to, and binds it:
//   - an address (S), or
//   - an existing GOT slot of the module (GOTPCREL & co. then use it, no new slot), or
//   - an existing PLT entry (PLT32 calls use it), or
//   - TLS facts: the module's TLS id, the offset in the module's block, and the module
//     block's offset from the thread pointer when the module is in static TLS.
// Symbols defined in the object resolve to their section's placed address, unless bound.
//
// Steps, each a separate export so that everything that can fail happens before the
// target is touched (funchook's prepare/install split):
//   open   scan every relocation of every SHF_ALLOC section once: known type, field
//          inside its section, what each symbol is asked for (REF_* in defs.ts),
//          candidates for jump stubs
//   bind   the caller binds symbols (reloc_refs lists what is referenced)
//   plan   lay out the engine's own GOT (slots no binding provides), reserve stubs, report
//          the address constraints of the object and the sizes it needs
//   place  the caller gives each section, the GOT and the stub area an address (or lets
//          reloc_layout pack them from a base)
//   apply  copy the sections into an output window, apply every relocation, write the
//          GOT slots and stubs
//
// Facts this depends on (x86-64 psABI, https://gitlab.com/x86-psABIs/x86-64-ABI):
//   - RELA only: the addend is in the record, the field's old contents are ignored.
//   - rel32 fields (PC32, PLT32, GOTPCREL, ...) reach +-2 GiB from the field. A call or
//     jmp (E8/E9 rel32, 0F 8x rel32) to a farther target goes through a 16-byte stub
//     `jmp [rip+0]; .quad target` (assembly/x86/writer.ts) in the stub area, which the
//     caller places within reach. A PC-relative *data* reference cannot be extended: the
//     object must be placed near what it refers to (reported by the plan as nearLo/Hi).
//   - Non-PIC code uses R_X86_64_32 (zero-extended) and 32S (sign-extended) for absolute
//     addresses (string literals, jump tables): the object must then sit below 4 GiB
//     (2 GiB for 32S), reported by the plan as `below`.
//   - The branch field ends its instruction, so the branch target is P + 4 + value, i.e.
//     S + A + 4: a stub for a branch jumps there. A PLT32 in data (`.long f@PLT - .`)
//     uses the stub as it would a PLT entry: the stub jumps to the symbol.
//   - TLS, variant II (defs.ts): a GOT pair (module id, offset) for general dynamic, a pair
//     (module id, 0) per module for local dynamic, a slot with tpoff for initial exec,
//     tpoff itself for local exec. Initial and local exec need the module in static TLS;
//     against a module whose TLS is dynamic (dlopen'ed), they are refused.
//   - GOT (for GOTPC32, GOTOFF64, GOT64, PLTOFF64 and _GLOBAL_OFFSET_TABLE_) is the start
//     of the engine's GOT area, or an address the caller sets (the module's own GOT).
//
// Automatic layout (reloc_layout), from a base aligned to the largest alignment (a page
// with LAYOUT_PAGES, which also starts each group on a new page):
//
//   base -> | SHF_EXECINSTR sections | stubs                          |  r-x
//           | read-only sections     | GOT                            |  r--  (written by apply only)
//           | writable sections      | TLS image: .tdata, .tbss | NOBITS |  rw-
//
// SHF_TLS sections: their address is where their initialization image lies (.tbss has
// none: its range is reserved, never written); a TLS symbol's value is its offset from the
// start of its module's image, which reloc_set_tls gives with the module's facts. For the
// automatic layout that start is the first TLS section's address (reloc_tls_image).
//
// The loops over relocations and symbols live in hot.ts (plain functions over raw memory);
// this class owns that memory, keeps the steps in order, and writes the messages.
import { Bytes, utf8 } from "../bytes";
import { Err, fail, hex } from "../error";
import { ElfFile, SymTable, RelaTable, SYMTAB, RELA_SECTION, foundLen } from "../elf/file";
import * as D from "../elf/defs";
import * as R from "./defs";
import { X86Writer, JUMP_STUB_SIZE } from "../x86/writer";
import {
  CTX, C_SYMS, C_SECS, C_SYMBASE, C_INPUT, C_NSYM, C_NSEC, C_CANDS, C_CANDCOUNT, C_HASH, C_INFO, C_PLAN,
  C_ERRKIND, C_ERRVALUE, C_ERRLO, C_ERRHI, C_GOT, C_STUBADDR, C_OWNMODULE, C_OWNSTART, C_OWNTP, C_OWNFLAGS,
  OWN_SET, OWN_STATIC,
  SREC, S_VALUE, S_BOUND, S_GOT, S_PLT, S_TPGOT, S_GDGOT, S_LDGOT, S_TPOFF, S_MODULE, S_BLOCKTP, S_REFS, S_STATE,
  S_LDPAIR, S_SECTION,
  B_ADDR, B_GOT, B_PLT, B_TPGOT, B_GDGOT, B_LDGOT, B_TLS, B_TLS_STATIC, OWN_GOT, OWN_TPGOT, OWN_GDGOT, OWN_LDGOT,
  RESOLVED, TLS_STATIC, GOTSYM, IS_TLS, IFUNC_DEF,
  SEC, X_FLAGS, X_OFFSET, X_SIZE, X_ALIGN, X_ADDR, X_KIND, X_PLACED, X_DATA, X_WRITTEN,
  CAND, C_BRANCH, C_NEEDED, C_RESERVED,
  INFO_GOT_BASE, INFO_TLS_SECTIONS, PLAN_BELOW_2G, PLAN_BELOW_4G, PLAN_NEAR,
  E_SCAN_UNKNOWN, E_SCAN_REFUSED, E_SCAN_OFFSET, E_SCAN_SYMBOL_INDEX, E_SCAN_TLS_MISMATCH, E_SCAN_IFUNC,
  E_APPLY_UNRESOLVED, E_APPLY_RANGE, E_APPLY_NOT_STATIC, E_APPLY_SIZE,
  scanRelocs, applyRelocs, resolveSymbol,
} from "./hot";

export {
  INFO_GOT_BASE, INFO_TLS_SECTIONS, INFO_TLS_REFS, INFO_STATIC_TLS, INFO_DYNAMIC_TLS, PLAN_BELOW_2G, PLAN_BELOW_4G, PLAN_NEAR,
} from "./hot";

// Binding kinds of reloc_bind_got.
export const GOT_ADDR: u32 = 0;
export const GOT_TPOFF: u32 = 1;
export const GOT_TLSGD: u32 = 2;
export const GOT_TLSLD: u32 = 3;

// Kinds of GOT slots in the report (reloc_got_slots).
export const SLOT_ADDR: u32 = 0;
export const SLOT_TPOFF: u32 = 1;
export const SLOT_GD_MODULE: u32 = 2;
export const SLOT_GD_OFFSET: u32 = 3;
export const SLOT_LD_MODULE: u32 = 4;
export const SLOT_LD_ZERO: u32 = 5;

export const LAYOUT_PAGES: u32 = 1;
const PAGE: u64 = 4096;
// groups of the automatic layout, in address order
const K_EXEC: i32 = 0;
const K_RODATA: i32 = 1;
const K_DATA: i32 = 2;
const K_TDATA: i32 = 3;
const K_TBSS: i32 = 4;
const K_BSS: i32 = 5;

const WINDOW_GOT: i32 = -1;
const WINDOW_STUBS: i32 = -2;

const ST_OPEN: u32 = 0;
const ST_PLANNED: u32 = 1;

function shex(v: i64): string {
  return v < 0 ? "-" + hex(<u64>(-v)) : hex(<u64>v);
}

function alignUp(v: u64, a: u64): u64 {
  return a <= 1 ? v : (v + a - 1) & ~(a - 1);
}

@final
export class Relocator {
  elf: ElfFile;
  b: Bytes;
  symtab: SymTable | null;
  nsym: u32 = 0;
  nsec: u32 = 0;
  /** The context of hot.ts: pointers to the tables below, the stub candidates, flags, errors. */
  ctx: usize = 0;
  syms: usize = 0; // nsym records of SREC bytes
  secs: usize = 0; // nsec records of SEC bytes
  symBase: usize = 0; // the first Elf64_Sym of .symtab in the input
  maxAlignment: u64 = 16;
  /** RELA tables applied (those whose target is an SHF_ALLOC section), 16 bytes each: input offset u64, count u32, target u32. */
  tables: usize = 0;
  tableCount: u32 = 0;
  relocCount: u32 = 0;
  /** Referenced symbols in index order (for reloc_refs). */
  refList: usize = 0;
  refCount: u32 = 0;
  refUndefined: u32 = 0; // the first refUndefined of refList have no defining section

  state: u32 = ST_OPEN;
  // plan results
  gotSlots: u32 = 0; // 8-byte slots of the engine's GOT
  ldModules: Array<u64> = []; // modules of the engine's own LD pairs, in order
  ldOwnPair: i32 = -1; // the pair of the object's own TLS module (its id comes from reloc_set_tls), or -1
  stubCount: u32 = 0;
  below: u64 = 0;
  nearLo: u64 = 0;
  nearHi: u64 = 0;

  // placement
  gotAddr: u64 = 0;
  gotPlaced: bool = false;
  stubAddr: u64 = 0;
  stubsPlaced: bool = false;
  gotBase: u64 = 0;
  gotBaseSet: bool = false;

  constructor(elf: ElfFile) {
    this.elf = elf;
    this.b = elf.bytes;
    this.symtab = elf.symtabs[SYMTAB];
    this.nsec = <u32>elf.sections.length;
    this.ctx = heap.alloc(CTX);
    memory.fill(this.ctx, 0, CTX);
  }

  dispose(): void {
    const c = this.ctx;
    if (c == 0) return;
    for (let k: u32 = 0; k < 3; k++) {
      const f = k == 0 ? C_CANDS : k == 1 ? C_HASH : C_SYMS;
      const p = <usize>load<u32>(c + f);
      if (p != 0) heap.free(p);
    }
    if (this.secs != 0) heap.free(this.secs);
    if (this.refList != 0) heap.free(this.refList);
    if (this.tables != 0) heap.free(this.tables);
    this.tables = 0;
    heap.free(c);
    this.ctx = 0;
    this.syms = 0;
    this.secs = 0;
    this.refList = 0;
  }

  get infoFlags(): u32 {
    return load<u32>(this.ctx, C_INFO);
  }

  get planFlags(): u32 {
    return load<u32>(this.ctx, C_PLAN);
  }

  get candCount(): u32 {
    return load<u32>(this.ctx, C_CANDCOUNT);
  }

  @inline private cand(k: u32): usize {
    return <usize>load<u32>(this.ctx, C_CANDS) + <usize>k * CAND;
  }

  @inline rec(i: u32): usize {
    return this.syms + <usize>i * SREC;
  }

  @inline sec(s: u32): usize {
    return this.secs + <usize>s * SEC;
  }

  @inline secFlags(s: u32): u64 {
    return load<u64>(this.sec(s), X_FLAGS);
  }

  @inline secSize(s: u32): u64 {
    return load<u64>(this.sec(s), X_SIZE);
  }

  @inline secAddr(s: u32): u64 {
    return load<u64>(this.sec(s), X_ADDR);
  }

  @inline isPlaced(s: u32): bool {
    return load<u8>(this.sec(s), X_PLACED) != 0;
  }

  @inline private setPlaced(s: u32, addr: u64): void {
    store<u64>(this.sec(s), addr, X_ADDR);
    store<u8>(this.sec(s), 1, X_PLACED);
  }

  // ---- symbols --------------------------------------------------------------------

  /** Input offset of symbol i (its Elf64_Sym). */
  @inline private symOff(i: u32): u64 {
    return <u64>(this.symBase - this.b.base) + <u64>i * D.SYM_SIZE;
  }

  @inline symInfo(i: u32): u8 {
    return load<u8>(this.symBase + <usize>i * D.SYM_SIZE, 4);
  }

  @inline private symRawShndx(i: u32): u16 {
    return load<u16>(this.symBase + <usize>i * D.SYM_SIZE, 6);
  }

  @inline symValue(i: u32): u64 {
    return load<u64>(this.symBase + <usize>i * D.SYM_SIZE, 8);
  }

  /** st_shndx with SHN_XINDEX resolved (SHN_* specials kept). */
  symSection(i: u32): u32 {
    const raw = this.symRawShndx(i);
    if (raw == D.SHN_XINDEX) return this.elf.symShndx(<SymTable>this.symtab, i);
    return <u32>raw;
  }

  /** Index of the section defining symbol i, or -1 (undefined, absolute, common); cached at open. */
  @inline definingSection(i: u32): i32 {
    return load<i32>(this.rec(i), S_SECTION);
  }

  @inline isUndefined(i: u32): bool {
    return i != 0 && this.symRawShndx(i) == D.SHN_UNDEF;
  }

  sectionName(s: u32): string {
    if (s >= this.nsec) return "section " + s.toString();
    const sec = this.elf.sections[s];
    if (sec.nameLen == 0) return "section " + s.toString();
    return utf8(this.b.ptr(sec.name), sec.nameLen);
  }

  /** `name` of a symbol for messages; a section symbol by its section's name. */
  symDesc(i: u32): string {
    if (i == 0) return "symbol 0 (none)";
    if (this.symtab === null || i >= this.nsym) return "symbol " + i.toString();
    const off = this.elf.symName(<SymTable>this.symtab, i);
    const len = foundLen;
    if (len > 0) return "`" + utf8(this.b.ptr(off), len) + "`";
    if ((this.symInfo(i) & 0xf) == D.STT_SECTION) {
      const s = this.definingSection(i);
      if (s >= 0) return "section " + this.sectionName(<u32>s);
    }
    return "symbol " + i.toString();
  }

  private isGotSymbolName(i: u32): bool {
    const off = this.elf.symName(<SymTable>this.symtab, i);
    if (foundLen != 21) return false;
    const name = "_GLOBAL_OFFSET_TABLE_";
    for (let k = 0; k < 21; k++) {
      if (<i32>this.b.u8(off + <u64>k) != name.charCodeAt(k)) return false;
    }
    return true;
  }

  /** Which group of the automatic layout a section belongs to (-1: not loaded). */
  private static layoutKind(fl: u64, hasData: bool): i32 {
    if ((fl & D.SHF_ALLOC) == 0) return -1;
    if ((fl & D.SHF_TLS) != 0) return hasData ? K_TDATA : K_TBSS;
    if ((fl & D.SHF_EXECINSTR) != 0) return K_EXEC;
    if ((fl & D.SHF_WRITE) == 0) return K_RODATA;
    return hasData ? K_DATA : K_BSS;
  }

  // ---- open: the scan ---------------------------------------------------------------

  open(): i32 {
    const f = this.elf;
    if (f.type != D.ET_REL) return fail(Err.RELOC_NOT_RELOCATABLE, "reloc_open: the ELF file is not a relocatable object (e_type " + f.type.toString() + ", ET_REL is 1)");
    const st = this.symtab;
    const c = this.ctx;
    // Sections: the facts the hot paths need, in raw memory.
    const nsec = this.nsec;
    const secBytes = max<usize>(<usize>nsec * SEC, SEC);
    const sp = heap.alloc(secBytes);
    this.secs = sp;
    memory.fill(sp, 0, secBytes);
    let infoFlags: u32 = 0;
    let maxAlignment: u64 = 16;
    // The section headers, validated by the ELF reader, read where they lie (Elf64_Shdr).
    const shdrs = this.b.ptr(f.shoff);
    for (let s: u32 = 0; s < nsec; s++) {
      const h = shdrs + <usize>s * D.SHDR_SIZE;
      const x = sp + <usize>s * SEC;
      const type = load<u32>(h, 4);
      const fl = load<u64>(h, 8);
      const align = load<u64>(h, 48);
      const hasData = type != D.SHT_NOBITS && type != D.SHT_NULL;
      store<u64>(x, fl, X_FLAGS);
      store<u64>(x, load<u64>(h, 24), X_OFFSET);
      store<u64>(x, load<u64>(h, 32), X_SIZE);
      store<u64>(x, align, X_ALIGN);
      store<u8>(x, hasData ? 1 : 0, X_DATA);
      store<i8>(x, s == 0 ? -1 : <i8>Relocator.layoutKind(fl, hasData), X_KIND);
      if (s == 0 || (fl & D.SHF_ALLOC) == 0) continue;
      if ((fl & D.SHF_TLS) != 0) infoFlags |= INFO_TLS_SECTIONS;
      if ((align & (align - 1)) != 0 || align > (<u64>1 << 32)) {
        return fail(Err.RELOC_NOT_RELOCATABLE, "section " + this.sectionName(s) + ": sh_addralign " + align.toString() + " is not a power of two up to 2^32");
      }
      if (align > maxAlignment) maxAlignment = align;
    }
    this.maxAlignment = maxAlignment;
    // Symbols: one record each; the defining section and TLS-ness cached.
    const nsym: u32 = st === null ? 1 : max<u32>(st.count, 1);
    this.nsym = nsym;
    const symBase = st === null ? this.b.base : this.b.ptr(st.offset);
    this.symBase = symBase;
    const bytes = <usize>nsym * SREC;
    const syms = heap.alloc(bytes);
    this.syms = syms;
    memory.fill(syms, 0, bytes);
    store<u32>(syms + S_STATE, RESOLVED); // symbol 0: S = 0 (psABI: no symbol)
    store<i32>(syms + S_SECTION, -1);
    for (let i: u32 = 1; i < nsym; i++) {
      const r = syms + <usize>i * SREC;
      const sym = symBase + <usize>i * D.SYM_SIZE;
      const raw = load<u16>(sym, 6);
      let s: i32 = raw == D.SHN_UNDEF || (raw >= D.SHN_LORESERVE && raw != D.SHN_XINDEX) ? -1 : <i32>raw;
      if (raw == D.SHN_XINDEX) s = <i32>f.symShndx(<SymTable>st, i);
      store<i32>(r, s, S_SECTION);
      let state: u32 = 0;
      const type = load<u8>(sym, 4) & 0xf;
      if (type == D.STT_TLS || (s >= 0 && <u32>s < nsec && (load<u64>(sp + <usize>s * SEC, X_FLAGS) & D.SHF_TLS) != 0)) state = IS_TLS;
      else if (raw == D.SHN_UNDEF && this.isGotSymbolName(i)) state = GOTSYM;
      if (s >= 0 && type == D.STT_GNU_IFUNC) state |= IFUNC_DEF;
      store<u32>(r, state, S_STATE);
    }
    store<u32>(c, <u32>syms, C_SYMS);
    store<u32>(c, <u32>sp, C_SECS);
    store<u32>(c, <u32>symBase, C_SYMBASE);
    store<u32>(c, <u32>this.b.base, C_INPUT);
    store<u32>(c, nsym, C_NSYM);
    store<u32>(c, nsec, C_NSEC);
    store<u32>(c, infoFlags, C_INFO);
    // Relocation tables of the SHF_ALLOC sections.
    this.tables = heap.alloc(max<usize>(<usize>f.relas.length * 16, 16));
    for (let k = 0; k < f.relas.length; k++) {
      const t = f.relas[k];
      if (t.kind != RELA_SECTION || t.count == 0) continue;
      if (t.target <= 0 || <u32>t.target >= nsec) {
        return fail(Err.RELOC_NOT_RELOCATABLE, "section " + t.section.toString() + ": relocation table without a target section (sh_info " + t.target.toString() + ")");
      }
      const T = <u32>t.target;
      if ((this.secFlags(T) & D.SHF_ALLOC) == 0) continue; // debug info and the like: never placed
      if (t.symtab != SYMTAB && st !== null) {
        return fail(Err.RELOC_NOT_RELOCATABLE, "section " + t.section.toString() + ": relocations refer to a table other than .symtab");
      }
      if (load<u8>(this.sec(T), X_DATA) == 0) {
        return fail(Err.RELOC_BAD_OFFSET, "section " + t.section.toString() + ": relocations for " + this.sectionName(T) + ", which has no contents (SHT_NOBITS)");
      }
      const j = scanRelocs(c, this.b.ptr(t.offset), t.count, T);
      if (j >= 0) return this.scanError(t, <u32>j);
      const tp = this.tables + <usize>this.tableCount * 16;
      store<u64>(tp, t.offset);
      store<u32>(tp, t.count, 8);
      store<u32>(tp, T, 12);
      this.tableCount++;
      this.relocCount += t.count;
    }
    // The referenced symbols: the undefined ones first (what a caller must resolve), then
    // the defined ones, each in index order.
    let n: u32 = 0;
    let undef: u32 = 0;
    for (let i: u32 = 1; i < nsym; i++) {
      if (load<u32>(syms + <usize>i * SREC, S_REFS) == 0) continue;
      n++;
      if (load<i32>(syms + <usize>i * SREC, S_SECTION) < 0) undef++;
    }
    this.refCount = n;
    this.refUndefined = undef;
    const list = heap.alloc(max<usize>(<usize>n * 4, 4));
    this.refList = list;
    let u: u32 = 0;
    let d: u32 = undef;
    for (let i: u32 = 1; i < nsym; i++) {
      const r = syms + <usize>i * SREC;
      if (load<u32>(r, S_REFS) == 0) continue;
      if (load<i32>(r, S_SECTION) < 0) store<u32>(list + <usize>(u++) * 4, i);
      else store<u32>(list + <usize>(d++) * 4, i);
    }
    return 0;
  }

  /** The message of a failure scanRelocs reported at relocation j of table t. */
  private scanError(t: RelaTable, j: u32): i32 {
    const o = t.offset + <u64>j * D.RELA_SIZE;
    const off = this.b.u64(o);
    const info = this.b.u64(o + 8);
    const type = <u32>info;
    const sym = <u32>(info >> 32);
    const T = <u32>t.target;
    const at = " at " + this.sectionName(T) + "+" + hex(off);
    switch (load<u32>(this.ctx, C_ERRKIND)) {
      case E_SCAN_UNKNOWN:
        return fail(Err.RELOC_UNKNOWN_TYPE, "unknown relocation type " + type.toString() + at + " (relocation " + j.toString() + " of section " + t.section.toString() + ")");
      case E_SCAN_REFUSED:
        return fail(Err.RELOC_REFUSED_TYPE, R.relocName(type) + at + " (relocation " + j.toString() + " of section " + t.section.toString() + ") is refused: " + R.refusalReason(type));
      case E_SCAN_OFFSET:
        return fail(Err.RELOC_BAD_OFFSET, R.relocName(type) + at + ": the " + R.fieldSize(type).toString() + "-byte field runs past the section's end (size " + hex(this.secSize(T)) + ")");
      case E_SCAN_SYMBOL_INDEX:
        return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + at + ": symbol " + sym.toString() + " is not in .symtab");
      case E_SCAN_TLS_MISMATCH:
        return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + " against " + this.symDesc(sym) + at + (R.isTlsType(type) ? ": a TLS relocation against a symbol that is not thread-local" : ": a non-TLS relocation against a thread-local symbol"));
      case E_SCAN_IFUNC:
        return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + " against " + this.symDesc(sym) + at + ": IFUNC symbols defined in the patch are not supported");
    }
    return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + at + ": needs a symbol, and has symbol 0");
  }

  /** Whether the rel32 field at `off` of section `sec` (input bytes) is a branch. */
  isBranch(sec: u32, off: u64): bool {
    const x = this.sec(sec);
    if ((load<u64>(x, X_FLAGS) & D.SHF_EXECINSTR) == 0 || off < 1) return false;
    const p = this.b.base + <usize>(load<u64>(x, X_OFFSET) + off);
    const op = load<u8>(p - 1);
    if (op == 0xe8 || op == 0xe9) return true;
    return off >= 2 && (op & 0xf0) == 0x80 && load<u8>(p - 2) == 0x0f;
  }

  // ---- bindings -----------------------------------------------------------------------

  private bindable(sym: u32, what: string): i32 {
    if (this.state != ST_OPEN) return fail(Err.RELOC_STATE, what + ": bindings are fixed once reloc_plan has run");
    if (sym == 0 || sym >= this.nsym || this.symtab === null) return fail(Err.RELOC_BAD_SYMBOL, what + ": symbol " + sym.toString() + " is not a symbol of .symtab (1.." + (this.nsym - 1).toString() + ")");
    if ((this.symInfo(sym) & 0xf) == D.STT_SECTION) return fail(Err.RELOC_BAD_SYMBOL, what + ": symbol " + sym.toString() + " is the section symbol of " + this.symDesc(sym) + ": place the section instead");
    return 0;
  }

  bindAddr(sym: u32, addr: u64): i32 {
    const e = this.bindable(sym, "reloc_bind_addr");
    if (e != 0) return e;
    const r = this.rec(sym);
    if ((load<u32>(r + S_STATE) & IS_TLS) != 0) return fail(Err.RELOC_BAD_SYMBOL, "reloc_bind_addr: " + this.symDesc(sym) + " is thread-local: bind it with reloc_bind_tls");
    store<u64>(r + S_BOUND, addr);
    store<u32>(r + S_STATE, load<u32>(r + S_STATE) | B_ADDR);
    return 0;
  }

  bindPlt(sym: u32, addr: u64): i32 {
    const e = this.bindable(sym, "reloc_bind_plt");
    if (e != 0) return e;
    const r = this.rec(sym);
    if ((load<u32>(r + S_STATE) & IS_TLS) != 0) return fail(Err.RELOC_BAD_SYMBOL, "reloc_bind_plt: " + this.symDesc(sym) + " is thread-local");
    store<u64>(r + S_PLT, addr);
    store<u32>(r + S_STATE, load<u32>(r + S_STATE) | B_PLT);
    return 0;
  }

  bindGot(sym: u32, kind: u32, addr: u64): i32 {
    const e = this.bindable(sym, "reloc_bind_got");
    if (e != 0) return e;
    const r = this.rec(sym);
    const tls = (load<u32>(r + S_STATE) & IS_TLS) != 0;
    let field: u32 = 0;
    let bit: u32 = 0;
    if (kind == GOT_ADDR) { field = S_GOT; bit = B_GOT; }
    else if (kind == GOT_TPOFF) { field = S_TPGOT; bit = B_TPGOT; }
    else if (kind == GOT_TLSGD) { field = S_GDGOT; bit = B_GDGOT; }
    else if (kind == GOT_TLSLD) { field = S_LDGOT; bit = B_LDGOT; }
    else return fail(Err.BAD_ARGUMENT, "reloc_bind_got: kind " + kind.toString() + " is not 0 (address), 1 (tpoff), 2 (TLS GD pair) or 3 (TLS LD pair)");
    if (tls != (kind != GOT_ADDR)) {
      return fail(Err.RELOC_BAD_SYMBOL, "reloc_bind_got: " + this.symDesc(sym) + (tls ? " is thread-local: its GOT slots are of kind 1, 2 or 3" : " is not thread-local: its GOT slot is of kind 0"));
    }
    store<u64>(r + field, addr);
    store<u32>(r + S_STATE, load<u32>(r + S_STATE) | bit);
    return 0;
  }

  bindTls(sym: u32, module: u64, offset: u64, blockTpoff: i64, isStatic: bool): i32 {
    const e = this.bindable(sym, "reloc_bind_tls");
    if (e != 0) return e;
    const r = this.rec(sym);
    if ((load<u32>(r + S_STATE) & IS_TLS) == 0) return fail(Err.RELOC_BAD_SYMBOL, "reloc_bind_tls: " + this.symDesc(sym) + " is not thread-local");
    store<u64>(r + S_BOUND, offset);
    store<u64>(r + S_MODULE, module);
    store<i64>(r + S_BLOCKTP, blockTpoff);
    let st = (load<u32>(r + S_STATE) | B_TLS) & ~B_TLS_STATIC;
    if (isStatic) st |= B_TLS_STATIC;
    store<u32>(r + S_STATE, st);
    return 0;
  }

  /** The module of the object's own TLS sections (any time before apply). */
  setTls(module: u64, tlsStart: u64, blockTpoff: i64, isStatic: bool): i32 {
    const c = this.ctx;
    store<u64>(c, module, C_OWNMODULE);
    store<u64>(c, tlsStart, C_OWNSTART);
    store<i64>(c, blockTpoff, C_OWNTP);
    store<u32>(c, OWN_SET | (isStatic ? OWN_STATIC : 0), C_OWNFLAGS);
    return 0;
  }

  get ownTls(): bool {
    return (load<u32>(this.ctx, C_OWNFLAGS) & OWN_SET) != 0;
  }

  get ownModule(): u64 {
    return load<u64>(this.ctx, C_OWNMODULE);
  }

  // ---- resolution ------------------------------------------------------------------------

  /** S of symbol i (TLS: its offset in the module's block) into out; 0 or an error. */
  symbolValue(i: u32, out: usize): i32 {
    if (i >= this.nsym || this.symtab === null) return fail(Err.RELOC_BAD_SYMBOL, "reloc_symbol_value: symbol " + i.toString() + " is not a symbol of .symtab");
    this.syncGot();
    resolveSymbol(this.ctx, i);
    if ((load<u32>(this.rec(i) + S_STATE) & RESOLVED) == 0) return fail(Err.RELOC_UNDEFINED, "reloc_symbol_value: " + this.symDesc(i) + ": " + this.unreason(i));
    store<u64>(out, load<u64>(this.rec(i)));
    return 0;
  }

  /** GOT as hot.ts sees it: the set base, else the engine's GOT. */
  private syncGot(): void {
    if (!this.gotBaseSet) this.gotBase = this.gotAddr;
    store<u64>(this.ctx, this.gotBase, C_GOT);
    store<u64>(this.ctx, this.stubAddr, C_STUBADDR);
  }

  /** Why symbol i did not resolve. */
  unreason(i: u32): string {
    const st = load<u32>(this.rec(i) + S_STATE);
    if ((st & GOTSYM) != 0) return "_GLOBAL_OFFSET_TABLE_ needs the GOT placed or a GOT base set";
    const raw = this.symRawShndx(i);
    if (raw == D.SHN_UNDEF) return "it is undefined and not bound";
    if (raw == D.SHN_COMMON) return "it is a common symbol (SHN_COMMON): bind it to an address";
    if (raw >= D.SHN_LORESERVE && raw != D.SHN_XINDEX) return "its section index " + hex(raw) + " is not supported";
    const s = this.definingSection(i);
    if (s >= 0 && <u32>s < this.nsec && !this.isPlaced(<u32>s)) return "its section " + this.sectionName(<u32>s) + " is not placed";
    if ((st & IS_TLS) != 0 && !this.ownTls) return "it is thread-local in the object's own TLS sections, and reloc_set_tls was not called";
    return "it cannot be resolved";
  }

  // ---- plan --------------------------------------------------------------------------------

  plan(): i32 {
    if (this.state != ST_OPEN) return fail(Err.RELOC_STATE, "reloc_plan: already planned");
    const nsym = this.nsym;
    let slots: u32 = 0;
    let nearLo: u64 = <u64>-1;
    let nearHi: u64 = 0;
    let near = false;
    for (let k: u32 = 0; k < this.refCount; k++) {
      const i = load<u32>(this.refList + <usize>k * 4);
      const r = this.rec(i);
      const refs = load<u32>(r + S_REFS);
      let st = load<u32>(r + S_STATE) & ~(OWN_GOT | OWN_TPGOT | OWN_GDGOT | OWN_LDGOT);
      if ((refs & R.REF_GOT) != 0) {
        if ((st & B_GOT) == 0) { st |= OWN_GOT; slots++; }
        else { near = true; nearLo = min(nearLo, load<u64>(r + S_GOT)); nearHi = max(nearHi, load<u64>(r + S_GOT)); }
      }
      if ((refs & R.REF_TPOFF_GOT) != 0) {
        if ((st & B_TPGOT) == 0) { st |= OWN_TPGOT; slots++; }
        else { near = true; nearLo = min(nearLo, load<u64>(r + S_TPGOT)); nearHi = max(nearHi, load<u64>(r + S_TPGOT)); }
      }
      if ((refs & R.REF_TLSGD) != 0) {
        if ((st & B_GDGOT) == 0) { st |= OWN_GDGOT; slots += 2; }
        else { near = true; nearLo = min(nearLo, load<u64>(r + S_GDGOT)); nearHi = max(nearHi, load<u64>(r + S_GDGOT)); }
      }
      if ((refs & R.REF_TLSLD) != 0) {
        if ((st & B_LDGOT) == 0) {
          // One pair per module: a bound symbol's module, or the object's own (whose id
          // reloc_set_tls may give until apply).
          let k = 0;
          if ((st & B_TLS) != 0) {
            const module = load<u64>(r + S_MODULE);
            while (k < this.ldModules.length && (k == this.ldOwnPair || this.ldModules[k] != module)) k++;
            if (k == this.ldModules.length) this.ldModules.push(module);
          } else if (!this.isUndefined(i)) {
            if (this.ldOwnPair < 0) {
              this.ldOwnPair = this.ldModules.length;
              this.ldModules.push(0);
            }
            k = this.ldOwnPair;
          } else {
            return fail(Err.RELOC_TLS, "reloc_plan: R_X86_64_TLSLD against " + this.symDesc(i) + ": an undefined TLS symbol needs reloc_bind_tls (or an LD pair from reloc_bind_got)");
          }
          store<u32>(r + S_LDPAIR, <u32>k);
          st |= OWN_LDGOT;
        } else {
          near = true; nearLo = min(nearLo, load<u64>(r + S_LDGOT)); nearHi = max(nearHi, load<u64>(r + S_LDGOT));
        }
      }
      // PC-relative data references to bound addresses: the object must be near them.
      if ((refs & R.REF_PCREL) != 0 && (st & B_ADDR) != 0) {
        near = true; nearLo = min(nearLo, load<u64>(r + S_BOUND)); nearHi = max(nearHi, load<u64>(r + S_BOUND));
      }
      store<u32>(r + S_STATE, st);
    }
    this.gotSlots = slots + 2 * <u32>this.ldModules.length;
    // Stubs: calls to symbols without a section, and to bound symbols.
    let stubs: u32 = 0;
    const n = this.candCount;
    for (let k: u32 = 0; k < n; k++) {
      const p = this.cand(k);
      const sym = load<u32>(p);
      let fl = load<u32>(p, 4) & ~C_RESERVED;
      if ((fl & C_NEEDED) != 0 || (load<u32>(this.rec(sym) + S_STATE) & (B_ADDR | B_PLT)) != 0) {
        fl |= C_RESERVED;
        store<u32>(p, stubs, 16);
        stubs++;
      }
      store<u32>(p, fl, 4);
    }
    this.stubCount = stubs;
    if (this.gotBaseSet && (this.infoFlags & INFO_GOT_BASE) != 0) {
      near = true; nearLo = min(nearLo, this.gotBase); nearHi = max(nearHi, this.gotBase);
    }
    let planFlags = this.planFlags;
    if (near) {
      planFlags |= PLAN_NEAR;
      this.nearLo = nearLo;
      this.nearHi = nearHi;
    }
    store<u32>(this.ctx, planFlags, C_PLAN);
    this.below = (planFlags & PLAN_BELOW_2G) != 0 ? 0x80000000 : (planFlags & PLAN_BELOW_4G) != 0 ? 0x100000000 : 0;
    this.state = ST_PLANNED;
    return 0;
  }

  gotSize(): u64 {
    return <u64>this.gotSlots * 8;
  }

  stubSize(): u64 {
    return <u64>this.stubCount * JUMP_STUB_SIZE;
  }

  maxAlign(): u64 {
    return this.maxAlignment;
  }

  // ---- placement -----------------------------------------------------------------------------

  place(s: u32, addr: u64): i32 {
    if (s == 0 || s >= this.nsec) return fail(Err.BAD_ARGUMENT, "reloc_place: " + s.toString() + " is not a section (1.." + (this.nsec - 1).toString() + ")");
    const x = this.sec(s);
    const align = load<u64>(x, X_ALIGN);
    if ((load<u64>(x, X_FLAGS) & D.SHF_ALLOC) == 0) return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place: section " + this.sectionName(s) + " is not SHF_ALLOC (not part of the loaded image)");
    if (align > 1 && (addr & (align - 1)) != 0) {
      return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place: address " + hex(addr) + " of section " + this.sectionName(s) + " is not aligned to its sh_addralign " + align.toString());
    }
    if (addr + load<u64>(x, X_SIZE) < addr) return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place: section " + this.sectionName(s) + " at " + hex(addr) + " wraps around the address space");
    this.setPlaced(s, addr);
    return 0;
  }

  placeGot(addr: u64): i32 {
    if ((addr & 7) != 0) return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place_got: address " + hex(addr) + " is not 8-byte aligned");
    this.gotAddr = addr;
    this.gotPlaced = true;
    return 0;
  }

  placeStubs(addr: u64): i32 {
    if ((addr & 15) != 0) return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place_stubs: address " + hex(addr) + " is not 16-byte aligned");
    this.stubAddr = addr;
    this.stubsPlaced = true;
    return 0;
  }

  setGotBase(addr: u64): i32 {
    if (this.state != ST_OPEN) return fail(Err.RELOC_STATE, "reloc_set_got_base: must come before reloc_plan");
    this.gotBase = addr;
    this.gotBaseSet = true;
    return 0;
  }

  /** Places every SHF_ALLOC section, the stubs and the GOT from base (see the top); returns the size, or -1. */
  layout(base: u64, flags: u32): i64 {
    if (this.state != ST_PLANNED) {
      fail(Err.RELOC_STATE, "reloc_layout: call reloc_plan first (the GOT and stub sizes come from it)");
      return -1;
    }
    const pages = (flags & LAYOUT_PAGES) != 0;
    const a = pages ? max<u64>(PAGE, this.maxAlign()) : this.maxAlign();
    if ((base & (a - 1)) != 0) {
      fail(Err.RELOC_BAD_PLACEMENT, "reloc_layout: base " + hex(base) + " is not aligned to " + a.toString());
      return -1;
    }
    let p = base;
    p = this.placeKind(p, K_EXEC);
    p = alignUp(p, 16);
    this.stubAddr = p;
    this.stubsPlaced = true;
    p += this.stubSize();
    if (pages) p = alignUp(p, PAGE);
    p = this.placeKind(p, K_RODATA);
    p = alignUp(p, 8);
    this.gotAddr = p;
    this.gotPlaced = true;
    p += this.gotSize();
    if (pages) p = alignUp(p, PAGE);
    p = this.placeKind(p, K_DATA);
    p = alignUp(p, this.tlsAlign());
    p = this.placeKind(p, K_TDATA);
    p = this.placeKind(p, K_TBSS);
    p = this.placeKind(p, K_BSS);
    if (pages) p = alignUp(p, PAGE);
    if (p < base) {
      fail(Err.RELOC_BAD_PLACEMENT, "reloc_layout: the object does not fit above " + hex(base));
      return -1;
    }
    return <i64>(p - base);
  }

  private placeKind(p: u64, kind: i32): u64 {
    const sp = this.secs;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const x = sp + <usize>s * SEC;
      if (<i32>load<i8>(x, X_KIND) != kind) continue;
      p = alignUp(p, load<u64>(x, X_ALIGN));
      store<u64>(x, p, X_ADDR);
      store<u8>(x, 1, X_PLACED);
      p += load<u64>(x, X_SIZE);
    }
    return p;
  }

  /** The largest alignment of the SHF_TLS sections: the TLS image starts aligned to it. */
  tlsAlign(): u64 {
    let a: u64 = 1;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const x = this.sec(s);
      const fl = load<u64>(x, X_FLAGS);
      if ((fl & D.SHF_ALLOC) != 0 && (fl & D.SHF_TLS) != 0 && load<u64>(x, X_ALIGN) > a) a = load<u64>(x, X_ALIGN);
    }
    return a;
  }

  /** Address of the first SHF_TLS section placed (the TLS image's start), or -1. */
  tlsImageStart(): i64 {
    let lo: u64 = <u64>-1;
    for (let s: u32 = 1; s < this.nsec; s++) {
      if ((this.secFlags(s) & D.SHF_TLS) != 0 && this.isPlaced(s) && this.secAddr(s) < lo) lo = this.secAddr(s);
    }
    return lo == <u64>-1 ? -1 : <i64>lo;
  }

  // ---- apply -------------------------------------------------------------------------------------

  /** Assigns absolute addresses to the engine's own GOT slots (same order as the plan counted). */
  private assignGot(): void {
    let k: u64 = 0;
    const g = this.gotAddr;
    for (let i: u32 = 1; i < this.nsym; i++) {
      const r = this.rec(i);
      const st = load<u32>(r + S_STATE);
      if ((st & (OWN_GOT | OWN_TPGOT | OWN_GDGOT | OWN_LDGOT)) == 0) continue;
      if ((st & OWN_GOT) != 0) { store<u64>(r + S_GOT, g + k * 8); k++; }
      if ((st & OWN_TPGOT) != 0) { store<u64>(r + S_TPGOT, g + k * 8); k++; }
      if ((st & OWN_GDGOT) != 0) { store<u64>(r + S_GDGOT, g + k * 8); k += 2; }
    }
    const ldBase = g + k * 8;
    for (let i: u32 = 1; i < this.nsym; i++) {
      const r = this.rec(i);
      if ((load<u32>(r + S_STATE) & OWN_LDGOT) != 0) store<u64>(r + S_LDGOT, ldBase + <u64>load<u32>(r + S_LDPAIR) * 16);
    }
  }

  /**
   * .tbss (SHF_TLS and SHT_NOBITS) has addresses but no bytes anywhere: each thread's copy
   * is made by the TLS runtime, and a linker lets the next section overlap its range.
   */
  @inline private noImage(s: u32): bool {
    return (this.secFlags(s) & D.SHF_TLS) != 0 && load<u8>(this.sec(s), X_DATA) == 0;
  }

  /**
   * 1 when [addr, addr+size) lies in the window, 0 when wholly outside it and `partial`,
   * else -1 (error recorded). `piece`: a section index, WINDOW_GOT or WINDOW_STUBS.
   */
  private windowed(addr: u64, size: u64, base: u64, len: u64, partial: bool, piece: i32): i32 {
    if (addr >= base && addr - base <= len && size <= len - (addr - base)) return 1;
    const end = base + len;
    if (partial && (addr + size <= base || addr >= end)) return 0;
    const what = piece == WINDOW_GOT ? "the GOT" : piece == WINDOW_STUBS ? "the stubs" : "section " + this.sectionName(<u32>piece);
    fail(Err.RELOC_BAD_PLACEMENT, "reloc_apply: " + what + " at " + hex(addr) + " (size " + hex(size) + ") is " + (partial ? "partly " : "") + "outside the output window " + hex(base) + "+" + hex(len));
    return -1;
  }

  apply(out: usize, len: u64, base: u64, partial: bool): i32 {
    if (this.state != ST_PLANNED) return fail(Err.RELOC_STATE, "reloc_apply: call reloc_plan and place the object first");
    if (this.gotSlots > 0 && !this.gotPlaced) return fail(Err.RELOC_NOT_PLACED, "reloc_apply: the GOT (" + this.gotSlots.toString() + " slots) is not placed");
    if (this.stubCount > 0 && !this.stubsPlaced) return fail(Err.RELOC_NOT_PLACED, "reloc_apply: the stub area (" + this.stubCount.toString() + " stubs) is not placed");
    if ((this.infoFlags & INFO_GOT_BASE) != 0 && !this.gotBaseSet && !this.gotPlaced) {
      return fail(Err.RELOC_NOT_PLACED, "reloc_apply: relocations use the GOT's address; place the GOT or set a GOT base");
    }
    this.syncGot();
    // Everything written must lie in the window; with `partial`, what lies wholly outside
    // it is skipped (the caller applies again with another window), but nothing may straddle.
    const sp = this.secs;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const x = sp + <usize>s * SEC;
      store<u8>(x, 0, X_WRITTEN);
      if (load<u8>(x, X_PLACED) == 0 || this.noImage(s)) continue;
      const addr = load<u64>(x, X_ADDR);
      const size = load<u64>(x, X_SIZE);
      if (addr >= base && addr - base <= len && size <= len - (addr - base)) {
        store<u8>(x, 1, X_WRITTEN);
        continue;
      }
      if (this.windowed(addr, size, base, len, partial, <i32>s) < 0) return Err.RELOC_BAD_PLACEMENT;
    }
    let gotIn = 0;
    if (this.gotSlots > 0) {
      gotIn = this.windowed(this.gotAddr, this.gotSize(), base, len, partial, WINDOW_GOT);
      if (gotIn < 0) return Err.RELOC_BAD_PLACEMENT;
    }
    let stubsIn = 0;
    if (this.stubCount > 0) {
      stubsIn = this.windowed(this.stubAddr, this.stubSize(), base, len, partial, WINDOW_STUBS);
      if (stubsIn < 0) return Err.RELOC_BAD_PLACEMENT;
    }
    // Resolve what the relocations refer to.
    const c = this.ctx;
    for (let k: u32 = 0; k < this.refCount; k++) resolveSymbol(c, load<u32>(this.refList + <usize>k * 4));
    this.assignGot();
    // Contents.
    const input = this.b.base;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const x = sp + <usize>s * SEC;
      if (load<u8>(x, X_WRITTEN) == 0) continue;
      const dst = out + <usize>(load<u64>(x, X_ADDR) - base);
      const size = <usize>load<u64>(x, X_SIZE);
      if (load<u8>(x, X_DATA) != 0) memory.copy(dst, input + <usize>load<u64>(x, X_OFFSET), size);
      else memory.fill(dst, 0, size);
    }
    // Relocations of the placed sections.
    for (let k: u32 = 0; k < this.tableCount; k++) {
      const tp = this.tables + <usize>k * 16;
      const T = load<u32>(tp, 12);
      const x = sp + <usize>T * SEC;
      if (load<u8>(x, X_WRITTEN) == 0) continue;
      const secBase = load<u64>(x, X_ADDR);
      const failed = applyRelocs(c, input + <usize>load<u64>(tp), load<u32>(tp, 8), T, secBase, out + <usize>(secBase - base));
      if (failed != 0) return this.applyError(failed, T);
    }
    if (gotIn > 0) {
      const r = this.writeGot(out, base);
      if (r != 0) return r;
    }
    if (stubsIn > 0) return this.writeStubs(out, base);
    return 0;
  }

  // ---- the errors of the switch ------------------------------------------------------------------

  private where(rela: usize, T: u32): string {
    const info = load<u64>(rela, 8);
    const A = load<i64>(rela, 16);
    return R.relocName(<u32>info) + " against " + this.symDesc(<u32>(info >> 32)) + (A != 0 ? " " + (A < 0 ? "- " + hex(<u64>-A) : "+ " + hex(<u64>A)) : "") +
      " at " + this.sectionName(T) + "+" + hex(load<u64>(rela));
  }

  /** The message of a failure applyRelocs reported at the record `rela` of section T. */
  private applyError(rela: usize, T: u32): i32 {
    const c = this.ctx;
    const sym = <u32>(load<u64>(rela, 8) >> 32);
    switch (load<u32>(c, C_ERRKIND)) {
      case E_APPLY_RANGE:
        // The one range error: the relocation, the symbol, the value and the allowed range.
        return fail(Err.RELOC_OUT_OF_RANGE, this.where(rela, T) + ": value " + shex(load<i64>(c, C_ERRVALUE)) + " is out of range [" + shex(load<i64>(c, C_ERRLO)) + ", " + shex(load<i64>(c, C_ERRHI)) + "]");
      case E_APPLY_UNRESOLVED:
        return fail(Err.RELOC_UNDEFINED, this.where(rela, T) + ": " + this.unreason(sym));
      case E_APPLY_NOT_STATIC:
        return fail(Err.RELOC_TLS, this.where(rela, T) + ": TLS module " + load<u64>(this.rec(sym) + S_MODULE).toString() + " is not in static TLS (dlopen'ed); initial- and local-exec access to it is refused");
      case E_APPLY_SIZE:
        return fail(Err.RELOC_UNDEFINED, this.where(rela, T) + ": the size of an undefined symbol is unknown");
    }
    return fail(Err.RELOC_UNKNOWN_TYPE, "unknown relocation type " + (<u32>load<u64>(rela, 8)).toString() + " at " + this.sectionName(T) + "+" + hex(load<u64>(rela)));
  }

  // ---- GOT and stubs ------------------------------------------------------------------------------

  private writeGot(out: usize, base: u64): i32 {
    if (this.gotSlots == 0) return 0;
    const g = out + <usize>(this.gotAddr - base);
    let k: usize = 0;
    for (let i: u32 = 1; i < this.nsym; i++) {
      const r = this.rec(i);
      const st = load<u32>(r + S_STATE);
      if ((st & (OWN_GOT | OWN_TPGOT | OWN_GDGOT)) == 0) continue;
      if ((st & OWN_GOT) != 0) {
        if ((st & RESOLVED) == 0) return fail(Err.RELOC_UNDEFINED, "GOT slot of " + this.symDesc(i) + ": " + this.unreason(i));
        store<u64>(g + k * 8, load<u64>(r));
        k++;
      }
      if ((st & OWN_TPGOT) != 0) {
        if ((st & RESOLVED) == 0) return fail(Err.RELOC_UNDEFINED, "R_X86_64_GOTTPOFF GOT slot of " + this.symDesc(i) + ": " + this.unreason(i));
        if ((st & TLS_STATIC) == 0) return fail(Err.RELOC_TLS, "R_X86_64_GOTTPOFF against " + this.symDesc(i) + ": TLS module " + load<u64>(r + S_MODULE).toString() + " is not in static TLS (dlopen'ed); initial-exec access to it is refused");
        store<i64>(g + k * 8, load<i64>(r + S_TPOFF));
        k++;
      }
      if ((st & OWN_GDGOT) != 0) {
        if ((st & RESOLVED) == 0) return fail(Err.RELOC_UNDEFINED, "R_X86_64_TLSGD GOT pair of " + this.symDesc(i) + ": " + this.unreason(i));
        store<u64>(g + k * 8, load<u64>(r + S_MODULE));
        store<u64>(g + k * 8 + 8, load<u64>(r));
        k += 2;
      }
    }
    for (let m = 0; m < this.ldModules.length; m++) {
      if (m == this.ldOwnPair && !this.ownTls) return fail(Err.RELOC_TLS, "R_X86_64_TLSLD GOT pair of the object's own TLS: reloc_set_tls was not called");
      store<u64>(g + k * 8, m == this.ldOwnPair ? this.ownModule : this.ldModules[m]);
      store<u64>(g + k * 8 + 8, 0);
      k += 2;
    }
    return 0;
  }

  /** Target of candidate k: L (or S) of its symbol, plus A + 4 for a branch. */
  stubTarget(k: u32): u64 {
    const p = this.cand(k);
    const r = this.rec(load<u32>(p));
    const st = load<u32>(r + S_STATE);
    const L = (st & B_PLT) != 0 ? load<u64>(r + S_PLT) : load<u64>(r);
    return (load<u32>(p, 4) & C_BRANCH) != 0 ? L + <u64>load<i64>(p, 8) + 4 : L;
  }

  private writeStubs(out: usize, base: u64): i32 {
    if (this.stubCount == 0) return 0;
    const w = new X86Writer(out + <usize>(this.stubAddr - base), this.stubCount * JUMP_STUB_SIZE, this.stubAddr);
    const n = this.candCount;
    for (let k: u32 = 0; k < n; k++) {
      const p = this.cand(k);
      if ((load<u32>(p, 4) & C_RESERVED) == 0) continue;
      const sym = load<u32>(p);
      const st = load<u32>(this.rec(sym) + S_STATE);
      if ((st & (B_PLT | RESOLVED)) == 0) return fail(Err.RELOC_UNDEFINED, "jump stub for " + this.symDesc(sym) + ": " + this.unreason(sym));
      w.putJumpStub(this.stubTarget(k));
    }
    return 0;
  }

  // ---- reports ------------------------------------------------------------------------------------

  /** GOT slot records (32 bytes): addr u64, value u64, sym u32, kind u32, reserved u64. Valid after apply. */
  gotSlotRecords(first: u32, count: u32, out: usize): i32 {
    let k: u32 = 0;
    let w: u32 = 0;
    const g = this.gotAddr;
    for (let i: u32 = 1; i < this.nsym; i++) {
      const r = this.rec(i);
      const st = load<u32>(r + S_STATE);
      if ((st & (OWN_GOT | OWN_TPGOT | OWN_GDGOT)) == 0) continue;
      if ((st & OWN_GOT) != 0) { w += this.slotRec(first, count, out, k++, g, load<u64>(r), i, SLOT_ADDR); }
      if ((st & OWN_TPGOT) != 0) { w += this.slotRec(first, count, out, k++, g, load<u64>(r + S_TPOFF), i, SLOT_TPOFF); }
      if ((st & OWN_GDGOT) != 0) {
        w += this.slotRec(first, count, out, k++, g, load<u64>(r + S_MODULE), i, SLOT_GD_MODULE);
        w += this.slotRec(first, count, out, k++, g, load<u64>(r), i, SLOT_GD_OFFSET);
      }
    }
    for (let m = 0; m < this.ldModules.length; m++) {
      w += this.slotRec(first, count, out, k++, g, m == this.ldOwnPair ? this.ownModule : this.ldModules[m], 0, SLOT_LD_MODULE);
      w += this.slotRec(first, count, out, k++, g, 0, 0, SLOT_LD_ZERO);
    }
    return <i32>w;
  }

  private slotRec(first: u32, count: u32, out: usize, k: u32, g: u64, value: u64, sym: u32, kind: u32): u32 {
    if (k < first || k - first >= count) return 0;
    const o = out + <usize>(k - first) * 32;
    store<u64>(o, g + <u64>k * 8);
    store<u64>(o + 8, value);
    store<u32>(o + 16, sym);
    store<u32>(o + 20, kind);
    store<u64>(o + 24, 0);
    return 1;
  }

  /** Stub records (32 bytes): addr u64, target u64, sym u32, flags u32 (1 branch), addend i64. Valid after apply. */
  stubRecords(first: u32, count: u32, out: usize): i32 {
    let w: u32 = 0;
    const n = this.candCount;
    for (let k: u32 = 0; k < n; k++) {
      const p = this.cand(k);
      if ((load<u32>(p, 4) & C_RESERVED) == 0) continue;
      const idx = load<u32>(p, 16);
      if (idx < first || idx - first >= count) continue;
      const o = out + <usize>(idx - first) * 32;
      store<u64>(o, this.stubAddr + <u64>idx * JUMP_STUB_SIZE);
      store<u64>(o + 8, this.stubTarget(k));
      store<u32>(o + 16, load<u32>(p));
      store<u32>(o + 20, load<u32>(p, 4) & C_BRANCH);
      store<i64>(o + 24, load<i64>(p, 8));
      w++;
    }
    return <i32>w;
  }

  /** The refs record of the k-th referenced symbol (32 bytes, see docs/core-abi.md). */
  refRecord(k: u32, out: usize): void {
    const i = load<u32>(this.refList + <usize>k * 4);
    const r = this.rec(i);
    const nameOff = this.elf.symName(<SymTable>this.symtab, i);
    const nameLen = foundLen;
    const raw = this.symRawShndx(i);
    const st = load<u32>(r + S_STATE);
    let flags: u32 = 0;
    if (raw == D.SHN_UNDEF) flags |= 1;
    if ((this.symInfo(i) >> 4) == D.STB_WEAK) flags |= 2;
    if ((st & IS_TLS) != 0) flags |= 4;
    if ((st & GOTSYM) != 0) flags |= 8;
    if (raw == D.SHN_COMMON) flags |= 16;
    store<u32>(out, i);
    store<u32>(out + 4, load<u32>(r + S_REFS));
    store<u32>(out + 8, nameLen == 0 ? 0 : <u32>this.b.ptr(nameOff));
    store<u32>(out + 12, nameLen);
    store<u32>(out + 16, this.symSection(i));
    store<u8>(out + 20, this.symInfo(i));
    store<u8>(out + 21, load<u8>(this.symBase + <usize>i * D.SYM_SIZE, 5));
    store<u16>(out + 22, <u16>flags);
    store<u64>(out + 24, this.symValue(i));
  }
}
