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
import { Bytes, utf8 } from "../bytes";
import { Err, fail, hex } from "../error";
import { ElfFile, SymTable, RelaTable, SYMTAB, RELA_SECTION, foundLen } from "../elf/file";
import * as D from "../elf/defs";
import * as R from "./defs";
import { X86Writer, JUMP_STUB_SIZE } from "../x86/writer";

// ---- per-symbol records (raw memory, one per .symtab entry) ----------------------------
//
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
//   92 reserved u32
const SREC: u32 = 96;
const S_VALUE: u32 = 0;
const S_BOUND: u32 = 8;
const S_GOT: u32 = 16;
const S_PLT: u32 = 24;
const S_TPGOT: u32 = 32;
const S_GDGOT: u32 = 40;
const S_LDGOT: u32 = 48;
const S_TPOFF: u32 = 56;
const S_MODULE: u32 = 64;
const S_BLOCKTP: u32 = 72;
const S_REFS: u32 = 80;
const S_STATE: u32 = 84;
const S_LDPAIR: u32 = 88;

// state bits
const B_ADDR: u32 = 1;
const B_GOT: u32 = 2;
const B_PLT: u32 = 4;
const B_TPGOT: u32 = 8;
const B_GDGOT: u32 = 16;
const B_LDGOT: u32 = 32;
const B_TLS: u32 = 64;
const B_TLS_STATIC: u32 = 128;
const OWN_GOT: u32 = 0x100;
const OWN_TPGOT: u32 = 0x200;
const OWN_GDGOT: u32 = 0x400;
const OWN_LDGOT: u32 = 0x800;
const RESOLVED: u32 = 0x1000;
const TLS_STATIC: u32 = 0x2000;
const TLS_MODULE: u32 = 0x4000; // S_MODULE valid
const GOTSYM: u32 = 0x8000; // _GLOBAL_OFFSET_TABLE_
const IS_TLS: u32 = 0x10000; // a thread-local symbol (STT_TLS, or defined in an SHF_TLS section)
const BOUND_MASK: u32 = B_ADDR | B_GOT | B_PLT | B_TPGOT | B_GDGOT | B_LDGOT | B_TLS | B_TLS_STATIC;
const RESOLVE_MASK: u32 = RESOLVED | TLS_STATIC | TLS_MODULE;

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

// Object-level flags (reloc_info), and constraint flags (reloc_plan).
export const INFO_GOT_BASE: u32 = 1; // some relocation uses GOT itself
export const INFO_TLS_SECTIONS: u32 = 2; // the object has SHF_TLS sections
export const INFO_TLS_REFS: u32 = 4; // some relocation is a TLS one
export const INFO_STATIC_TLS: u32 = 8; // initial- or local-exec relocations
export const INFO_DYNAMIC_TLS: u32 = 16; // general- or local-dynamic relocations

export const PLAN_BELOW_2G: u32 = 1; // R_X86_64_32S against the object's own symbols
export const PLAN_BELOW_4G: u32 = 2; // R_X86_64_32 against them
export const PLAN_NEAR: u32 = 4; // nearLo..nearHi is set

export const LAYOUT_PAGES: u32 = 1;
// groups of the automatic layout, in address order
const K_EXEC: i32 = 0;
const K_RODATA: i32 = 1;
const K_DATA: i32 = 2;
const K_TDATA: i32 = 3;
const K_TBSS: i32 = 4;
const K_BSS: i32 = 5;
const PAGE: u64 = 4096;

// Stub candidates: an open-addressing table keyed by (symbol, branch?, addend), in raw
// memory, plus the candidates in scan order (their index in that order is stable).
//   table entry (8 bytes): candidate index + 1 (0: empty) u32, hash u32
//   candidate (24 bytes):  sym u32, flags u32 (1 branch, 2 needed, 4 reserved), addend i64,
//                          stub index u32, reserved u32
const CAND: u32 = 24;
const C_BRANCH: u32 = 1;
const C_NEEDED: u32 = 2;
const C_RESERVED: u32 = 4;

const ST_OPEN: u32 = 0;
const ST_PLANNED: u32 = 1;

@inline function signed32(v: i64): bool {
  return v >= -2147483648 && v <= 2147483647;
}

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
  syms: usize = 0; // nsym records of SREC bytes
  nsec: u32 = 0;
  secAddr: StaticArray<u64>;
  secPlaced: StaticArray<u8>;
  written: StaticArray<u8>; // sections the current apply writes
  /** RELA tables applied: those whose target is an SHF_ALLOC section. */
  tables: Array<RelaTable> = [];
  relocCount: u32 = 0;
  infoFlags: u32 = 0;
  /** Referenced symbols in index order (for reloc_refs). */
  refList: usize = 0;
  refCount: u32 = 0;

  // stub candidates
  cands: usize = 0;
  candCount: u32 = 0;
  candCap: u32 = 0;
  hashTab: usize = 0;
  hashCap: u32 = 0; // power of two

  state: u32 = ST_OPEN;
  // plan results
  gotSlots: u32 = 0; // 8-byte slots of the engine's GOT
  ldModules: Array<u64> = []; // modules of the engine's own LD pairs, in order
  ldOwnPair: i32 = -1; // the pair of the object's own TLS module (its id comes from reloc_set_tls), or -1
  stubCount: u32 = 0;
  planFlags: u32 = 0;
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

  // the object's own TLS module (reloc_set_tls)
  ownTls: bool = false;
  ownModule: u64 = 0;
  ownTlsStart: u64 = 0;
  ownBlockTpoff: i64 = 0;
  ownStatic: bool = false;

  constructor(elf: ElfFile) {
    this.elf = elf;
    this.b = elf.bytes;
    this.symtab = elf.symtabs[SYMTAB];
    const nsec = elf.sections.length;
    this.secAddr = new StaticArray<u64>(nsec);
    this.secPlaced = new StaticArray<u8>(nsec);
    this.written = new StaticArray<u8>(nsec);
    this.nsec = <u32>nsec;
  }

  dispose(): void {
    if (this.syms != 0) heap.free(this.syms);
    if (this.refList != 0) heap.free(this.refList);
    if (this.cands != 0) heap.free(this.cands);
    if (this.hashTab != 0) heap.free(this.hashTab);
    this.syms = 0;
    this.refList = 0;
    this.cands = 0;
    this.hashTab = 0;
  }

  @inline rec(i: u32): usize {
    return this.syms + <usize>i * SREC;
  }

  // ---- symbols --------------------------------------------------------------------

  private symOff(i: u32): u64 {
    return (<SymTable>this.symtab).offset + <u64>i * D.SYM_SIZE;
  }

  symInfo(i: u32): u8 {
    return this.b.u8(this.symOff(i) + 4);
  }

  symValue(i: u32): u64 {
    return this.b.u64(this.symOff(i) + 8);
  }

  symSize(i: u32): u64 {
    return this.b.u64(this.symOff(i) + 16);
  }

  /** Raw st_shndx (SHN_* specials kept); extended indices resolved. */
  symSection(i: u32): u32 {
    const raw = this.b.u16(this.symOff(i) + 6);
    if (raw == D.SHN_XINDEX) return this.elf.symShndx(<SymTable>this.symtab, i);
    return <u32>raw;
  }

  /** Index of the section defining symbol i, or -1 (undefined, absolute, common). */
  definingSection(i: u32): i32 {
    const raw = this.b.u16(this.symOff(i) + 6);
    if (raw == D.SHN_XINDEX) return <i32>this.elf.symShndx(<SymTable>this.symtab, i);
    if (raw == D.SHN_UNDEF || raw >= D.SHN_LORESERVE) return -1;
    return <i32>raw;
  }

  isUndefined(i: u32): bool {
    return i != 0 && this.b.u16(this.symOff(i) + 6) == D.SHN_UNDEF;
  }

  /** STT_TLS, or defined in an SHF_TLS section. */
  isTlsSymbol(i: u32): bool {
    if (i == 0) return false;
    if ((this.symInfo(i) & 0xf) == D.STT_TLS) return true;
    const s = this.definingSection(i);
    return s >= 0 && <u32>s < this.nsec && (this.elf.sections[s].flags & D.SHF_TLS) != 0;
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
    if (this.symtab === null) return "symbol " + i.toString();
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

  // ---- open: the scan ---------------------------------------------------------------

  open(): i32 {
    const f = this.elf;
    if (f.type != D.ET_REL) return fail(Err.RELOC_NOT_RELOCATABLE, "reloc_open: the ELF file is not a relocatable object (e_type " + f.type.toString() + ", ET_REL is 1)");
    const st = this.symtab;
    this.nsym = st === null ? 1 : max<u32>(st.count, 1);
    const bytes = <usize>this.nsym * SREC;
    this.syms = heap.alloc(bytes);
    memory.fill(this.syms, 0, bytes);
    store<u32>(this.syms + S_STATE, RESOLVED); // symbol 0: S = 0 (psABI: no symbol)
    if (st !== null) {
      for (let i: u32 = 1; i < this.nsym; i++) {
        const r = this.rec(i);
        if (this.isTlsSymbol(i)) store<u32>(r + S_STATE, IS_TLS);
        if (this.isUndefined(i) && this.isGotSymbolName(i)) store<u32>(r + S_STATE, GOTSYM);
      }
    }
    const secs = f.sections;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const sec = secs[s];
      if ((sec.flags & D.SHF_ALLOC) == 0) continue;
      if ((sec.flags & D.SHF_TLS) != 0) this.infoFlags |= INFO_TLS_SECTIONS;
      if ((sec.align & (sec.align - 1)) != 0 || sec.align > (<u64>1 << 32)) {
        return fail(Err.RELOC_NOT_RELOCATABLE, "section " + this.sectionName(s) + ": sh_addralign " + sec.align.toString() + " is not a power of two up to 2^32");
      }
    }
    for (let k = 0; k < f.relas.length; k++) {
      const t = f.relas[k];
      if (t.kind != RELA_SECTION || t.count == 0) continue;
      if (t.target <= 0 || <u32>t.target >= this.nsec) {
        return fail(Err.RELOC_NOT_RELOCATABLE, "section " + t.section.toString() + ": relocation table without a target section (sh_info " + t.target.toString() + ")");
      }
      const target = secs[t.target];
      if ((target.flags & D.SHF_ALLOC) == 0) continue; // debug info and the like: never placed
      if (t.symtab != SYMTAB && st !== null) {
        return fail(Err.RELOC_NOT_RELOCATABLE, "section " + t.section.toString() + ": relocations refer to a table other than .symtab");
      }
      if (!target.hasData) {
        return fail(Err.RELOC_BAD_OFFSET, "section " + t.section.toString() + ": relocations for " + this.sectionName(<u32>t.target) + ", which has no contents (SHT_NOBITS)");
      }
      const r = this.scanTable(t);
      if (r != 0) return r;
      this.tables.push(t);
      this.relocCount += t.count;
    }
    // The referenced symbols, in index order.
    let n: u32 = 0;
    for (let i: u32 = 1; i < this.nsym; i++) if (load<u32>(this.rec(i) + S_REFS) != 0) n++;
    this.refCount = n;
    this.refList = heap.alloc(max<usize>(<usize>n * 4, 4));
    n = 0;
    for (let i: u32 = 1; i < this.nsym; i++) {
      if (load<u32>(this.rec(i) + S_REFS) != 0) {
        store<u32>(this.refList + <usize>n * 4, i);
        n++;
      }
    }
    return 0;
  }

  /** Whether the rel32 field at `off` of section `sec` (input bytes) is a branch: E8/E9 rel32, 0F 8x rel32. */
  isBranch(sec: u32, off: u64): bool {
    const s = this.elf.sections[sec];
    if ((s.flags & D.SHF_EXECINSTR) == 0 || off < 1) return false;
    const op = this.b.u8(s.offset + off - 1);
    if (op == 0xe8 || op == 0xe9) return true;
    return off >= 2 && (op & 0xf0) == 0x80 && this.b.u8(s.offset + off - 2) == 0x0f;
  }

  private scanTable(t: RelaTable): i32 {
    const b = this.b;
    const T = <u32>t.target;
    const sec = this.elf.sections[T];
    const size = sec.size;
    for (let j: u32 = 0; j < t.count; j++) {
      const o = t.offset + <u64>j * D.RELA_SIZE;
      const off = b.u64(o);
      const info = b.u64(o + 8);
      const type = <u32>info;
      const sym = <u32>(info >> 32);
      const cls = R.relocClass(type);
      if (cls != R.K_OK) {
        const where = " at " + this.sectionName(T) + "+" + hex(off) + " (relocation " + j.toString() + " of section " + t.section.toString() + ")";
        if (cls == R.K_UNKNOWN) return fail(Err.RELOC_UNKNOWN_TYPE, "unknown relocation type " + type.toString() + where);
        return fail(Err.RELOC_REFUSED_TYPE, R.relocName(type) + where + " is refused: " + R.refusalReason(type));
      }
      const width = <u64>R.fieldSize(type);
      if (off > size || width > size - off) {
        return fail(Err.RELOC_BAD_OFFSET, R.relocName(type) + " at " + this.sectionName(T) + "+" + hex(off) + ": the " + width.toString() + "-byte field runs past the section's end (size " + hex(size) + ")");
      }
      if (type == R.R_NONE) continue;
      if (sym >= this.nsym) {
        return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + " at " + this.sectionName(T) + "+" + hex(off) + ": symbol " + sym.toString() + " is not in .symtab");
      }
      const r = this.rec(sym);
      const st = load<u32>(r + S_STATE);
      const tls = R.isTlsType(type);
      if (sym != 0 && tls != ((st & IS_TLS) != 0)) {
        return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + " against " + this.symDesc(sym) + " at " + this.sectionName(T) + "+" + hex(off) + (tls ? ": a TLS relocation against a symbol that is not thread-local" : ": a non-TLS relocation against a thread-local symbol"));
      }
      if (sym != 0) {
        const ds = this.definingSection(sym);
        if (ds >= 0 && (this.symInfo(sym) & 0xf) == D.STT_GNU_IFUNC) {
          return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + " against " + this.symDesc(sym) + ": IFUNC symbols defined in the patch are not supported");
        }
      }
      let refs: u32 = 0;
      switch (type) {
        case R.R_64: case R.R_32: case R.R_32S: case R.R_16: case R.R_8: case R.R_GOTOFF64:
          refs = R.REF_ADDR;
          break;
        case R.R_PC64: case R.R_PC16: case R.R_PC8:
          refs = R.REF_ADDR | R.REF_PCREL;
          break;
        case R.R_PC32: {
          if (this.isBranch(T, off)) {
            refs = R.REF_CALL;
            this.addCandidate(sym, true, b.i64(o + 16), T);
          } else {
            refs = R.REF_ADDR | R.REF_PCREL;
          }
          break;
        }
        case R.R_PLT32: {
          refs = R.REF_CALL;
          this.addCandidate(sym, this.isBranch(T, off), b.i64(o + 16), T);
          break;
        }
        case R.R_PLTOFF64:
          refs = R.REF_CALL;
          break;
        case R.R_GOTPCREL: case R.R_GOTPCRELX: case R.R_REX_GOTPCRELX: case R.R_CODE_4_GOTPCRELX:
        case R.R_CODE_5_GOTPCRELX: case R.R_CODE_6_GOTPCRELX: case R.R_GOT32: case R.R_GOT64:
        case R.R_GOTPCREL64: case R.R_GOTPLT64:
          refs = R.REF_GOT;
          break;
        case R.R_GOTPC32: case R.R_GOTPC64:
          refs = 0;
          break;
        case R.R_GOTTPOFF: case R.R_CODE_4_GOTTPOFF: case R.R_CODE_5_GOTTPOFF: case R.R_CODE_6_GOTTPOFF:
          refs = R.REF_TPOFF_GOT;
          this.infoFlags |= INFO_STATIC_TLS;
          break;
        case R.R_TPOFF32:
          refs = R.REF_TPOFF;
          this.infoFlags |= INFO_STATIC_TLS;
          break;
        case R.R_TLSGD:
          refs = R.REF_TLSGD;
          this.infoFlags |= INFO_DYNAMIC_TLS;
          break;
        case R.R_TLSLD:
          refs = R.REF_TLSLD;
          this.infoFlags |= INFO_DYNAMIC_TLS;
          break;
        case R.R_DTPOFF32: case R.R_DTPOFF64:
          refs = R.REF_DTPOFF;
          break;
        case R.R_SIZE32: case R.R_SIZE64:
          refs = R.REF_SIZE;
          break;
      }
      switch (type) {
        case R.R_GOTOFF64: case R.R_GOTPC32: case R.R_GOTPC64: case R.R_GOT32: case R.R_GOT64:
        case R.R_GOTPLT64: case R.R_PLTOFF64:
          this.infoFlags |= INFO_GOT_BASE;
      }
      if (sym == 0 && (refs & ~(R.REF_ADDR | R.REF_PCREL)) != 0) {
        return fail(Err.RELOC_BAD_SYMBOL, R.relocName(type) + " at " + this.sectionName(T) + "+" + hex(off) + ": needs a symbol, and has symbol 0");
      }
      if (tls) this.infoFlags |= INFO_TLS_REFS;
      if (type == R.R_32S && this.definingSection(sym) >= 0) this.planFlags |= PLAN_BELOW_2G;
      if (type == R.R_32 && this.definingSection(sym) >= 0) this.planFlags |= PLAN_BELOW_4G;
      if (sym != 0) store<u32>(r + S_REFS, load<u32>(r + S_REFS) | refs);
    }
    return 0;
  }

  // ---- stub candidates ------------------------------------------------------------------

  @inline private candHash(sym: u32, branch: bool, addend: i64): u32 {
    let h = <u64>sym * 0x9e3779b97f4a7c15 ^ <u64>addend * 0xc2b2ae3d27d4eb4f ^ (branch ? 0x165667b19e3779f9 : 0);
    h ^= h >> 29;
    return <u32>(h ^ (h >> 32));
  }

  /** Index of the candidate (sym, branch, addend), or -1. */
  findCandidate(sym: u32, branch: bool, addend: i64): i32 {
    if (this.hashCap == 0) return -1;
    const h = this.candHash(sym, branch, addend);
    const mask = this.hashCap - 1;
    let slot = h & mask;
    for (let probe: u32 = 0; probe < this.hashCap; probe++) {
      const e = this.hashTab + <usize>slot * 8;
      const idx1 = load<u32>(e);
      if (idx1 == 0) return -1;
      if (load<u32>(e, 4) == h) {
        const c = this.cands + <usize>(idx1 - 1) * CAND;
        if (load<u32>(c) == sym && ((load<u32>(c, 4) & C_BRANCH) != 0) == branch && load<i64>(c, 8) == addend) return <i32>(idx1 - 1);
      }
      slot = (slot + 1) & mask;
    }
    return -1;
  }

  private addCandidate(sym: u32, branch: bool, addend: i64, T: u32): void {
    // A call into the section it is made from never needs a stub, unless the caller
    // binds the symbol elsewhere (the plan then reserves one).
    const far = this.definingSection(sym) != <i32>T;
    let idx = this.findCandidate(sym, branch, addend);
    if (idx < 0) {
      if (this.candCount == this.candCap) {
        const cap = this.candCap == 0 ? 64 : this.candCap * 2;
        const nc = heap.alloc(<usize>cap * CAND);
        if (this.cands != 0) {
          memory.copy(nc, this.cands, <usize>this.candCount * CAND);
          heap.free(this.cands);
        }
        this.cands = nc;
        this.candCap = cap;
      }
      if ((this.candCount + 1) * 2 > this.hashCap) this.rehash(this.hashCap == 0 ? 128 : this.hashCap * 2);
      idx = <i32>this.candCount;
      const c = this.cands + <usize>idx * CAND;
      store<u32>(c, sym);
      store<u32>(c, branch ? C_BRANCH : 0, 4);
      store<i64>(c, addend, 8);
      store<u32>(c, 0, 16);
      store<u32>(c, 0, 20);
      this.candCount++;
      this.hashInsert(<u32>idx);
    }
    if (far) {
      const c = this.cands + <usize>idx * CAND;
      store<u32>(c, load<u32>(c, 4) | C_NEEDED, 4);
    }
  }

  private hashInsert(idx: u32): void {
    const c = this.cands + <usize>idx * CAND;
    const h = this.candHash(load<u32>(c), (load<u32>(c, 4) & C_BRANCH) != 0, load<i64>(c, 8));
    const mask = this.hashCap - 1;
    let slot = h & mask;
    while (load<u32>(this.hashTab + <usize>slot * 8) != 0) slot = (slot + 1) & mask;
    store<u32>(this.hashTab + <usize>slot * 8, idx + 1);
    store<u32>(this.hashTab + <usize>slot * 8, h, 4);
  }

  private rehash(cap: u32): void {
    if (this.hashTab != 0) heap.free(this.hashTab);
    this.hashTab = heap.alloc(<usize>cap * 8);
    memory.fill(this.hashTab, 0, <usize>cap * 8);
    this.hashCap = cap;
    for (let i: u32 = 0; i < this.candCount; i++) this.hashInsert(i);
  }

  // ---- bindings -----------------------------------------------------------------------

  private bindable(sym: u32, what: string): i32 {
    if (this.state != ST_OPEN) return fail(Err.RELOC_STATE, what + ": bindings are fixed once reloc_plan has run");
    if (sym == 0 || sym >= this.nsym || this.symtab === null) return fail(Err.RELOC_BAD_SYMBOL, what + ": symbol " + sym.toString() + " is not a symbol of .symtab (1.." + (this.nsym - 1).toString() + ")");
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

  setTls(module: u64, tlsStart: u64, blockTpoff: i64, isStatic: bool): i32 {
    this.ownTls = true;
    this.ownModule = module;
    this.ownTlsStart = tlsStart;
    this.ownBlockTpoff = blockTpoff;
    this.ownStatic = isStatic;
    return 0;
  }

  // ---- resolution ------------------------------------------------------------------------

  /**
   * Computes S (and TLS facts) of symbol i from its binding or its placed section.
   * Leaves RESOLVED clear when it cannot (unreason() says why).
   */
  resolve(i: u32): void {
    const r = this.rec(i);
    let st = load<u32>(r + S_STATE) & ~RESOLVE_MASK;
    if (i == 0) {
      store<u64>(r, 0);
      store<u32>(r + S_STATE, st | RESOLVED);
      return;
    }
    if ((st & B_TLS) != 0) {
      const off = load<u64>(r + S_BOUND);
      store<u64>(r, off);
      st |= RESOLVED | TLS_MODULE;
      if ((st & B_TLS_STATIC) != 0) {
        store<i64>(r + S_TPOFF, load<i64>(r + S_BLOCKTP) + <i64>off);
        st |= TLS_STATIC;
      }
    } else if ((st & B_ADDR) != 0) {
      store<u64>(r, load<u64>(r + S_BOUND));
      st |= RESOLVED;
    } else if ((st & GOTSYM) != 0) {
      if (this.gotBaseSet || this.gotPlaced) {
        store<u64>(r, this.gotBaseSet ? this.gotBase : this.gotAddr);
        st |= RESOLVED;
      }
    } else {
      const raw = this.b.u16(this.symOff(i) + 6);
      if (raw == D.SHN_UNDEF) {
        if ((this.symInfo(i) >> 4) == D.STB_WEAK && (st & IS_TLS) == 0) {
          store<u64>(r, 0); // an unbound weak reference is 0, as a static link makes it
          st |= RESOLVED;
        }
      } else if (raw == D.SHN_ABS) {
        store<u64>(r, this.symValue(i));
        st |= RESOLVED;
      } else if (raw == D.SHN_COMMON || (raw >= D.SHN_LORESERVE && raw != D.SHN_XINDEX)) {
        // no section: only a binding gives it an address
      } else {
        const s = this.definingSection(i);
        if (s >= 0 && <u32>s < this.nsec && this.secPlaced[s] != 0) {
          const addr = this.secAddr[s] + this.symValue(i);
          if ((st & IS_TLS) != 0) {
            if (this.ownTls) {
              const off = addr - this.ownTlsStart;
              store<u64>(r, off);
              store<u64>(r + S_MODULE, this.ownModule);
              st |= RESOLVED | TLS_MODULE;
              if (this.ownStatic) {
                store<i64>(r + S_TPOFF, this.ownBlockTpoff + <i64>off);
                st |= TLS_STATIC;
              }
            }
          } else {
            store<u64>(r, addr);
            st |= RESOLVED;
          }
        }
      }
    }
    store<u32>(r + S_STATE, st);
  }

  /** S of symbol i (TLS: its offset in the module's block) into out; 0 or an error. */
  symbolValue(i: u32, out: usize): i32 {
    if (i >= this.nsym || this.symtab === null) return fail(Err.RELOC_BAD_SYMBOL, "reloc_symbol_value: symbol " + i.toString() + " is not a symbol of .symtab");
    if (!this.gotBaseSet && this.gotPlaced) this.gotBase = this.gotAddr;
    this.resolve(i);
    if ((load<u32>(this.rec(i) + S_STATE) & RESOLVED) == 0) return fail(Err.RELOC_UNDEFINED, "reloc_symbol_value: " + this.symDesc(i) + ": " + this.unreason(i));
    store<u64>(out, load<u64>(this.rec(i)));
    return 0;
  }

  /** Why symbol i did not resolve. */
  unreason(i: u32): string {
    const st = load<u32>(this.rec(i) + S_STATE);
    if ((st & GOTSYM) != 0) return "_GLOBAL_OFFSET_TABLE_ needs the GOT placed or a GOT base set";
    const raw = this.b.u16(this.symOff(i) + 6);
    if (raw == D.SHN_UNDEF) return "it is undefined and not bound";
    if (raw == D.SHN_COMMON) return "it is a common symbol (SHN_COMMON): bind it to an address";
    if (raw >= D.SHN_LORESERVE && raw != D.SHN_XINDEX) return "its section index " + hex(raw) + " is not supported";
    const s = this.definingSection(i);
    if (s >= 0 && <u32>s < this.nsec && this.secPlaced[s] == 0) return "its section " + this.sectionName(<u32>s) + " is not placed";
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
    for (let i: u32 = 1; i < nsym; i++) {
      const r = this.rec(i);
      const refs = load<u32>(r + S_REFS);
      if (refs == 0) continue;
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
      // PC-relative data references to what lies outside the object.
      if ((refs & R.REF_PCREL) != 0 && (this.definingSection(i) < 0 || (st & B_ADDR) != 0)) {
        if ((st & B_ADDR) != 0) { near = true; nearLo = min(nearLo, load<u64>(r + S_BOUND)); nearHi = max(nearHi, load<u64>(r + S_BOUND)); }
      }
      store<u32>(r + S_STATE, st);
    }
    this.gotSlots = slots + 2 * <u32>this.ldModules.length;
    // Stubs: every candidate into another section, and every one whose symbol is bound.
    let stubs: u32 = 0;
    for (let c: u32 = 0; c < this.candCount; c++) {
      const p = this.cands + <usize>c * CAND;
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
    if (near) {
      this.planFlags |= PLAN_NEAR;
      this.nearLo = nearLo;
      this.nearHi = nearHi;
    }
    this.below = (this.planFlags & PLAN_BELOW_2G) != 0 ? 0x80000000 : (this.planFlags & PLAN_BELOW_4G) != 0 ? 0x100000000 : 0;
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
    let a: u64 = 16;
    const secs = this.elf.sections;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const sec = secs[s];
      if ((sec.flags & D.SHF_ALLOC) != 0 && sec.align > a) a = sec.align;
    }
    return a;
  }

  // ---- placement -----------------------------------------------------------------------------

  place(s: u32, addr: u64): i32 {
    if (s == 0 || s >= this.nsec) return fail(Err.BAD_ARGUMENT, "reloc_place: " + s.toString() + " is not a section (1.." + (this.nsec - 1).toString() + ")");
    const sec = this.elf.sections[s];
    if ((sec.flags & D.SHF_ALLOC) == 0) return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place: section " + this.sectionName(s) + " is not SHF_ALLOC (not part of the loaded image)");
    if (sec.align > 1 && (addr & (sec.align - 1)) != 0) {
      return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place: address " + hex(addr) + " of section " + this.sectionName(s) + " is not aligned to its sh_addralign " + sec.align.toString());
    }
    if (addr + sec.size < addr) return fail(Err.RELOC_BAD_PLACEMENT, "reloc_place: section " + this.sectionName(s) + " at " + hex(addr) + " wraps around the address space");
    this.secAddr[s] = addr;
    this.secPlaced[s] = 1;
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

  /** Which group of the automatic layout a section belongs to (-1: not loaded). */
  private layoutKind(s: u32): i32 {
    const sec = this.elf.sections[s];
    const fl = sec.flags;
    if ((fl & D.SHF_ALLOC) == 0) return -1;
    if ((fl & D.SHF_TLS) != 0) return sec.hasData ? K_TDATA : K_TBSS;
    if ((fl & D.SHF_EXECINSTR) != 0) return K_EXEC;
    if ((fl & D.SHF_WRITE) == 0) return K_RODATA;
    return sec.hasData ? K_DATA : K_BSS;
  }

  private placeKind(p: u64, kind: i32): u64 {
    const secs = this.elf.sections;
    for (let s: u32 = 1; s < this.nsec; s++) {
      if (this.layoutKind(s) != kind) continue;
      const sec = secs[s];
      p = alignUp(p, sec.align);
      this.secAddr[s] = p;
      this.secPlaced[s] = 1;
      p += sec.size;
    }
    return p;
  }

  /** The largest alignment of the SHF_TLS sections: the TLS image starts aligned to it. */
  tlsAlign(): u64 {
    let a: u64 = 1;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const sec = this.elf.sections[s];
      if ((sec.flags & D.SHF_ALLOC) != 0 && (sec.flags & D.SHF_TLS) != 0 && sec.align > a) a = sec.align;
    }
    return a;
  }

  /** Address of the first SHF_TLS section placed by the layout (the TLS image's start), or -1. */
  tlsImageStart(): i64 {
    let lo: u64 = <u64>-1;
    for (let s: u32 = 1; s < this.nsec; s++) {
      const sec = this.elf.sections[s];
      if ((sec.flags & D.SHF_TLS) != 0 && this.secPlaced[s] != 0 && this.secAddr[s] < lo) lo = this.secAddr[s];
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
  private noImage(s: u32): bool {
    const sec = this.elf.sections[s];
    return (sec.flags & D.SHF_TLS) != 0 && !sec.hasData;
  }

  /** 1 when [addr, addr+size) lies in the window, 0 when wholly outside it and `partial`, else -1 (error recorded). */
  private windowed(addr: u64, size: u64, base: u64, len: u64, partial: bool, what: string): i32 {
    if (addr >= base && addr - base <= len && size <= len - (addr - base)) return 1;
    const end = base + len;
    if (partial && (addr + size <= base || addr >= end)) return 0;
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
    if (!this.gotBaseSet) this.gotBase = this.gotAddr;
    // Everything written must lie in the window; with `partial`, what lies wholly outside
    // it is skipped (the caller applies again with another window), but nothing may straddle.
    const secs = this.elf.sections;
    this.written.fill(0);
    for (let s: u32 = 1; s < this.nsec; s++) {
      if (this.secPlaced[s] == 0 || this.noImage(s)) continue;
      const w = this.windowed(this.secAddr[s], secs[s].size, base, len, partial, "section " + this.sectionName(s));
      if (w < 0) return Err.RELOC_BAD_PLACEMENT;
      this.written[s] = <u8>w;
    }
    let gotIn = 0;
    if (this.gotSlots > 0) {
      gotIn = this.windowed(this.gotAddr, this.gotSize(), base, len, partial, "the GOT");
      if (gotIn < 0) return Err.RELOC_BAD_PLACEMENT;
    }
    let stubsIn = 0;
    if (this.stubCount > 0) {
      stubsIn = this.windowed(this.stubAddr, this.stubSize(), base, len, partial, "the stubs");
      if (stubsIn < 0) return Err.RELOC_BAD_PLACEMENT;
    }
    // Resolve what the relocations refer to.
    for (let k: u32 = 0; k < this.refCount; k++) this.resolve(load<u32>(this.refList + <usize>k * 4));
    this.assignGot();
    // Contents.
    for (let s: u32 = 1; s < this.nsec; s++) {
      if (this.written[s] == 0) continue;
      const sec = secs[s];
      const dst = out + <usize>(this.secAddr[s] - base);
      if (sec.hasData) memory.copy(dst, this.b.ptr(sec.offset), <usize>sec.size);
      else memory.fill(dst, 0, <usize>sec.size);
    }
    // Relocations of the placed sections.
    for (let k = 0; k < this.tables.length; k++) {
      const t = unchecked(this.tables[k]);
      if (this.written[t.target] == 0) continue;
      const r = this.applyTable(t, out, base);
      if (r != 0) return r;
    }
    if (gotIn > 0) {
      const r = this.writeGot(out, base);
      if (r != 0) return r;
    }
    if (stubsIn > 0) return this.writeStubs(out, base);
    return 0;
  }

  // The relocation switch. Locals are named after the psABI letters: S, A, P, L (a PLT
  // entry or S), G (a GOT slot's address, i.e. G + GOT), GOT (the GOT base).
  private applyTable(t: RelaTable, out: usize, base: u64): i32 {
    const T = <u32>t.target;
    const secBase = this.secAddr[T];
    const loc0 = out + <usize>(secBase - base);
    const syms = this.syms;
    const GOT = this.gotBase;
    let o = this.b.base + <usize>t.offset;
    const end = o + <usize>t.count * D.RELA_SIZE;
    for (; o < end; o += D.RELA_SIZE) {
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
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          store<u64>(loc, S + <u64>A);
          break;
        }
        case R.R_PC32: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A - P);
          if (signed32(v)) store<i32>(loc, <i32>v);
          else if (!this.viaStub(o, T, S, P, loc)) return Err.RELOC_OUT_OF_RANGE;
          break;
        }
        case R.R_PLT32: {
          let L = S;
          if ((st & B_PLT) != 0) L = load<u64>(r, S_PLT);
          else if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(L + <u64>A - P);
          if (signed32(v)) store<i32>(loc, <i32>v);
          else if (!this.viaStub(o, T, L, P, loc)) return Err.RELOC_OUT_OF_RANGE;
          break;
        }
        case R.R_GOTPCREL: case R.R_GOTPCRELX: case R.R_REX_GOTPCRELX:
        case R.R_CODE_4_GOTPCRELX: case R.R_CODE_5_GOTPCRELX: case R.R_CODE_6_GOTPCRELX: {
          const v = <i64>(load<u64>(r, S_GOT) + <u64>A - P);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_32: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A);
          if (!this.check(v, 0, 0xffffffff, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<u32>(loc, <u32>v);
          break;
        }
        case R.R_32S: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_TLSGD: {
          const v = <i64>(load<u64>(r, S_GDGOT) + <u64>A - P);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_TLSLD: {
          const v = <i64>(load<u64>(r, S_LDGOT) + <u64>A - P);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_GOTTPOFF: case R.R_CODE_4_GOTTPOFF: case R.R_CODE_5_GOTTPOFF: case R.R_CODE_6_GOTTPOFF: {
          const v = <i64>(load<u64>(r, S_TPGOT) + <u64>A - P);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_DTPOFF32: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_DTPOFF64: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          store<u64>(loc, S + <u64>A);
          break;
        }
        case R.R_TPOFF32: {
          if ((st & TLS_STATIC) == 0) return this.notStatic(o, T);
          const v = load<i64>(r, S_TPOFF) + A;
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_PC64: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          store<u64>(loc, S + <u64>A - P);
          break;
        }
        case R.R_GOTOFF64: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          store<u64>(loc, S + <u64>A - GOT);
          break;
        }
        case R.R_GOTPC32: {
          const v = <i64>(GOT + <u64>A - P);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<i32>(loc, <i32>v);
          break;
        }
        case R.R_GOT32: {
          const v = <i64>(load<u64>(r, S_GOT) - GOT + <u64>A);
          if (!this.check(v, -2147483648, 2147483647, o, T)) return Err.RELOC_OUT_OF_RANGE;
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
          else if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          store<u64>(loc, L - GOT + <u64>A);
          break;
        }
        case R.R_16: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A);
          if (!this.check(v, -0x8000, 0xffff, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<u16>(loc, <u16>v);
          break;
        }
        case R.R_PC16: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A - P);
          if (!this.check(v, -0x8000, 0x7fff, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<u16>(loc, <u16>v);
          break;
        }
        case R.R_8: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A);
          if (!this.check(v, -0x80, 0xff, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<u8>(loc, <u8>v);
          break;
        }
        case R.R_PC8: {
          if ((st & RESOLVED) == 0) return this.unresolved(o, T);
          const v = <i64>(S + <u64>A - P);
          if (!this.check(v, -0x80, 0x7f, o, T)) return Err.RELOC_OUT_OF_RANGE;
          store<u8>(loc, <u8>v);
          break;
        }
        case R.R_SIZE32: case R.R_SIZE64: {
          const sym = <u32>(info >> 32);
          if (sym == 0 || this.isUndefined(sym)) return this.sizeUnknown(o, T);
          const v = <i64>(this.symSize(sym) + <u64>A);
          if (type == R.R_SIZE64) store<u64>(loc, <u64>v);
          else {
            if (!this.check(v, 0, 0xffffffff, o, T)) return Err.RELOC_OUT_OF_RANGE;
            store<u32>(loc, <u32>v);
          }
          break;
        }
        default:
          // The scan admitted only the types above.
          return fail(Err.RELOC_UNKNOWN_TYPE, "unknown relocation type " + type.toString() + " at " + this.sectionName(T) + "+" + hex(off));
      }
    }
    return 0;
  }

  // ---- the range check, and the other errors of the switch ----------------------------------

  /** The one range check: a value outside [lo, hi] fails naming the type, symbol, value and range. */
  @inline private check(v: i64, lo: i64, hi: i64, rela: usize, T: u32): bool {
    if (v >= lo && v <= hi) return true;
    this.rangeError(v, lo, hi, rela, T);
    return false;
  }

  private where(rela: usize, T: u32): string {
    const info = load<u64>(rela, 8);
    const A = load<i64>(rela, 16);
    return R.relocName(<u32>info) + " against " + this.symDesc(<u32>(info >> 32)) + (A != 0 ? " " + (A < 0 ? "- " + hex(<u64>-A) : "+ " + hex(<u64>A)) : "") +
      " at " + this.sectionName(T) + "+" + hex(load<u64>(rela));
  }

  private rangeError(v: i64, lo: i64, hi: i64, rela: usize, T: u32): void {
    fail(Err.RELOC_OUT_OF_RANGE, this.where(rela, T) + ": value " + shex(v) + " is out of range [" + shex(lo) + ", " + shex(hi) + "]");
  }

  private unresolved(rela: usize, T: u32): i32 {
    const sym = <u32>(load<u64>(rela, 8) >> 32);
    return fail(Err.RELOC_UNDEFINED, this.where(rela, T) + ": " + this.unreason(sym));
  }

  private notStatic(rela: usize, T: u32): i32 {
    const sym = <u32>(load<u64>(rela, 8) >> 32);
    const st = load<u32>(this.rec(sym) + S_STATE);
    if ((st & RESOLVED) == 0) return this.unresolved(rela, T);
    return fail(Err.RELOC_TLS, this.where(rela, T) + ": TLS module " + load<u64>(this.rec(sym) + S_MODULE).toString() + " is not in static TLS (dlopen'ed); initial- and local-exec access to it is refused");
  }

  private sizeUnknown(rela: usize, T: u32): i32 {
    return fail(Err.RELOC_UNDEFINED, this.where(rela, T) + ": the size of an undefined symbol is unknown");
  }

  /**
   * A rel32 call or jump (or a PLT32 in data) that does not reach L goes through its stub.
   * False (error recorded) when there is none or the stub is out of reach too.
   */
  private viaStub(rela: usize, T: u32, L: u64, P: u64, loc: usize): bool {
    const info = load<u64>(rela, 8);
    const type = <u32>info;
    const sym = <u32>(info >> 32);
    const A = load<i64>(rela, 16);
    const off = load<u64>(rela);
    const branch = this.isBranch(T, off);
    if (type == R.R_PC32 && !branch) {
      this.rangeError(<i64>(L + <u64>A - P), -2147483648, 2147483647, rela, T);
      return false;
    }
    const c = this.findCandidate(sym, branch, A);
    if (c < 0 || (load<u32>(this.cands + <usize>c * CAND, 4) & C_RESERVED) == 0) {
      this.rangeError(<i64>(L + <u64>A - P), -2147483648, 2147483647, rela, T);
      return false;
    }
    const stub = this.stubAddr + <u64>load<u32>(this.cands + <usize>c * CAND, 16) * JUMP_STUB_SIZE;
    // A branch lands on the stub (the stub goes on to S + A + 4); data uses the stub as L.
    const v = branch ? <i64>(stub - P - 4) : <i64>(stub + <u64>A - P);
    if (!this.check(v, -2147483648, 2147483647, rela, T)) return false;
    store<i32>(loc, <i32>v);
    return true;
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

  /** Target of candidate c: L (or S) of its symbol, plus A + 4 for a branch. */
  stubTarget(c: u32): u64 {
    const p = this.cands + <usize>c * CAND;
    const r = this.rec(load<u32>(p));
    const st = load<u32>(r + S_STATE);
    const L = (st & B_PLT) != 0 ? load<u64>(r + S_PLT) : load<u64>(r);
    return (load<u32>(p, 4) & C_BRANCH) != 0 ? L + <u64>load<i64>(p, 8) + 4 : L;
  }

  private writeStubs(out: usize, base: u64): i32 {
    if (this.stubCount == 0) return 0;
    const w = new X86Writer(out + <usize>(this.stubAddr - base), this.stubCount * JUMP_STUB_SIZE, this.stubAddr);
    for (let c: u32 = 0; c < this.candCount; c++) {
      const p = this.cands + <usize>c * CAND;
      if ((load<u32>(p, 4) & C_RESERVED) == 0) continue;
      const r = this.rec(load<u32>(p));
      const st = load<u32>(r + S_STATE);
      if ((st & (B_PLT | RESOLVED)) == 0) return fail(Err.RELOC_UNDEFINED, "jump stub for " + this.symDesc(load<u32>(p)) + ": " + this.unreason(load<u32>(p)));
      w.putJumpStub(this.stubTarget(c));
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
    for (let c: u32 = 0; c < this.candCount; c++) {
      const p = this.cands + <usize>c * CAND;
      if ((load<u32>(p, 4) & C_RESERVED) == 0) continue;
      const idx = load<u32>(p, 16);
      if (idx < first || idx - first >= count) continue;
      const o = out + <usize>(idx - first) * 32;
      store<u64>(o, this.stubAddr + <u64>idx * JUMP_STUB_SIZE);
      store<u64>(o + 8, this.stubTarget(c));
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
    const raw = this.b.u16(this.symOff(i) + 6);
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
    store<u8>(out + 21, this.b.u8(this.symOff(i) + 5));
    store<u16>(out + 22, <u16>flags);
    store<u64>(out + 24, this.symValue(i));
  }
}
