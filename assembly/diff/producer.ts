// The compile units of an ELF file's DWARF (.debug_info), read only as far as the flags
// check of `patchc build` needs: per unit its DW_AT_name, DW_AT_producer (gcc records
// the code-generation options there: "GNU C17 12.2.0 -mtune=generic -march=x86-64 -g
// -O2 ...") and DW_AT_comp_dir. Works on relocatable objects (the string offsets are
// relocations there) and on linked files (executables, libraries, debug files), DWARF 2
// to 5, and on split-DWARF objects (.dwo: sections named *.dwo).
//
// DWARF 5 (https://dwarfstd.org/doc/DWARF5.pdf), 7.5.1 unit headers, 7.5.3 abbreviations,
// 7.5.6 form encodings, 7.26 string offsets:
//
//   unit header, 32-bit DWARF (unit_length 0xffffffff: u64 length, offsets of 8 bytes):
//     v2-4: unit_length u32 | version u16 | debug_abbrev_offset u32 | address_size u8
//     v5:   unit_length u32 | version u16 | unit_type u8 | address_size u8 |
//           debug_abbrev_offset u32 | [skeleton 4, split_compile 5: dwo_id u64]
//           [type 2, split_type 6: type_signature u64, type_offset u32]
//   then the unit's first DIE: abbrev code (ULEB), its attributes in abbreviation order
//
//   .debug_abbrev entry: code ULEB | tag ULEB | children u8 | (attribute ULEB, form ULEB
//     [DW_FORM_implicit_const: value SLEB])* | 0 0;  a table ends with code 0
//
//   strings: DW_FORM_string (inline, NUL-terminated); strp / line_strp (an offset into
//   .debug_str / .debug_line_str); strx, strx1..4, GNU_str_index (an index into
//   .debug_str_offsets from the unit's DW_AT_str_offsets_base, or, in a .dwo, from the
//   end of the 8-byte header of .debug_str_offsets.dwo)
//
// In an ET_REL object the offsets are 0 in the section bytes and a RELA relocation
// (R_X86_64_32, or _64 with 64-bit DWARF) against the target section's symbol holds
// them: the value is st_value + r_addend. Linked files hold the values themselves.
//
// Split DWARF (-gsplit-dwarf; DWARF 5 section 3.1.3, and the GNU extension it grew from
// for DWARF 4, https://gcc.gnu.org/wiki/DebugFission): the object's unit is a skeleton
// (DWARF 5: unit type DW_UT_skeleton, tag DW_TAG_skeleton_unit; DWARF 4: a
// DW_TAG_compile_unit with DW_AT_GNU_dwo_name) that names the .dwo holding the full unit
// (DW_AT_dwo_name / DW_AT_GNU_dwo_name, relative to DW_AT_comp_dir) and carries no
// DW_AT_name nor DW_AT_producer with gcc 12. Both units carry the same 8-byte dwo_id
// (DWARF 5: in the unit header of the skeleton and of the split unit, DW_UT_split_compile;
// DWARF 4: DW_AT_GNU_dwo_id, form data8, in both first DIEs), so a .dwo of another
// compilation can be told apart. diff_units_dwo reports both per unit.
import { Bytes } from "../bytes";
import { ElfFile, RELA_SECTION, SYMTAB } from "../elf/file";
import { SHF_COMPRESSED } from "../elf/defs";
import { Err, fail } from "../error";
import { sortByKey } from "../stack/sort";
import { Reader } from "./lines";

// Attributes and forms used (DWARF 5, tables 7.5 and 7.6; GNU extensions).
const DW_AT_name: u64 = 0x03;
const DW_AT_comp_dir: u64 = 0x1b;
const DW_AT_producer: u64 = 0x25;
const DW_AT_str_offsets_base: u64 = 0x72;
const DW_AT_dwo_name: u64 = 0x76;
const DW_AT_GNU_dwo_name: u64 = 0x2130;
const DW_AT_GNU_dwo_id: u64 = 0x2131;
const DW_FORM_data8: u64 = 0x07;
const DW_FORM_string: u64 = 0x08;
const DW_FORM_strp: u64 = 0x0e;
const DW_FORM_line_strp: u64 = 0x1f;
const DW_FORM_strx: u64 = 0x1a;
const DW_FORM_strx1: u64 = 0x25;
const DW_FORM_strx4: u64 = 0x28;
const DW_FORM_indirect: u64 = 0x16;
const DW_FORM_implicit_const: u64 = 0x21;
const DW_FORM_sec_offset: u64 = 0x17;
const DW_FORM_GNU_str_index: u64 = 0x1f02;

/** Output record (40 bytes), docs/core-abi.md "Object diff", diff_units. */
export const UNIT_REC: u32 = 40;
export const UNIT_HAS_NAME: u32 = 1;
export const UNIT_HAS_PRODUCER: u32 = 2;
export const UNIT_HAS_COMP_DIR: u32 = 4;
/** Split-DWARF record (24 bytes), docs/core-abi.md "Object diff", diff_units_dwo. */
export const DWO_REC: u32 = 24;
export const DWO_HAS_NAME: u32 = 1;
export const DWO_HAS_ID: u32 = 2;

class Sec {
  start: usize = 0; // absolute pointer to the bytes
  size: u64 = 0;
  index: i32 = -1;
  rels: StaticArray<u8> = new StaticArray<u8>(0); // 24-byte Elf64_Rela sorted by offset
  nrel: u32 = 0;
}

/** A string found for an attribute: absolute pointer and length (len -1: none). */
class Str {
  ptr: usize = 0;
  len: i64 = -1;
  index: i64 = -1; // strx: the index, resolved after the whole DIE is read
}

export class UnitReader {
  out: StaticArray<u8> = new StaticArray<u8>(0);
  /** One DWO_REC per unit record, in the same order. */
  dwoOut: StaticArray<u8> = new StaticArray<u8>(0);
  count: u32 = 0;
  private info: Sec = new Sec();
  private abbrev: Sec = new Sec();
  private str: Sec = new Sec();
  private lineStr: Sec = new Sec();
  private strOffsets: Sec = new Sec();
  private dwo: bool = false;

  constructor(public f: ElfFile) {}

  private section(name: string, s: Sec): i32 {
    let i = this.f.sectionByNameStr(name);
    if (i < 0) {
      i = this.f.sectionByNameStr(name + ".dwo");
      if (i >= 0 && name == ".debug_info") this.dwo = true;
    }
    if (i < 0) return 0;
    const h = unchecked(this.f.sections[i]);
    if (!h.hasData) return 0;
    if ((h.flags & SHF_COMPRESSED) != 0) {
      return fail(Err.DIFF_DWARF_COMPRESSED, name + " is compressed (SHF_COMPRESSED): decompress it first (objcopy --decompress-debug-sections)");
    }
    if (!this.f.bytes.inRange(h.offset, h.size)) return fail(Err.DIFF_DWARF_BAD, name + " lies outside the file");
    s.start = this.f.bytes.ptr(h.offset);
    s.size = h.size;
    s.index = i;
    // Its relocations (an ET_REL object): sorted copies of the Elf64_Rela records.
    const relas = this.f.relas;
    for (let k = 0; k < relas.length; k++) {
      const t = unchecked(relas[k]);
      if (t.kind != RELA_SECTION || t.target != i) continue;
      if (!this.f.bytes.inRange(t.offset, <u64>t.count * 24)) return fail(Err.DIFF_DWARF_BAD, "the relocations of " + name + " lie outside the file");
      s.rels = new StaticArray<u8>(<i32>(t.count * 24));
      memory.copy(changetype<usize>(s.rels), this.f.bytes.ptr(t.offset), <usize>t.count * 24);
      s.nrel = t.count;
      sortByKey(changetype<usize>(s.rels), s.nrel, 24);
      break;
    }
    return 0;
  }

  /** The value of the `size`-byte field at `off` of `s`: its relocation's S + A when it has one, else its bytes. */
  private field(s: Sec, off: u64, size: u32): u64 {
    const rp = changetype<usize>(s.rels);
    let lo: u32 = 0;
    let hi = s.nrel;
    while (lo < hi) {
      const mid = lo + ((hi - lo) >> 1);
      if (load<u64>(rp + <usize>mid * 24) < off) lo = mid + 1;
      else hi = mid;
    }
    if (lo < s.nrel && load<u64>(rp + <usize>lo * 24) == off) {
      const sym = <u32>(load<u64>(rp + <usize>lo * 24 + 8) >> 32);
      const add = load<i64>(rp + <usize>lo * 24 + 16);
      return this.symbolValue(sym) + <u64>add;
    }
    const p = s.start + <usize>off;
    if (size == 8) return load<u64>(p);
    if (size == 4) return <u64>load<u32>(p);
    if (size == 3) return <u64>load<u16>(p) | (<u64>load<u8>(p + 2) << 16);
    if (size == 2) return <u64>load<u16>(p);
    return <u64>load<u8>(p);
  }

  private symbolValue(sym: u32): u64 {
    const t = unchecked(this.f.symtabs[SYMTAB]);
    if (t === null || sym >= t.count) return 0;
    const at = t.offset + <u64>sym * 24;
    if (!this.f.bytes.inRange(at, 24)) return 0;
    return this.f.bytes.u64(at + 8);
  }

  /** A NUL-terminated string at `off` of `s`, into `out`; false when it runs past the section. */
  private strAt(s: Sec, off: u64, out: Str): bool {
    if (s.index < 0 || off >= s.size) return false;
    const b = new Bytes(s.start, s.size);
    const n = b.strlen(off);
    if (n < 0) return false;
    out.ptr = s.start + <usize>off;
    out.len = n;
    return true;
  }

  /** Reads every unit; Err.OK or a failure (message recorded). */
  run(): i32 {
    let r = this.section(".debug_info", this.info);
    if (r != 0) return r;
    if (this.info.index < 0) return 0; // no DWARF: no units
    r = this.section(".debug_abbrev", this.abbrev);
    if (r != 0) return r;
    r = this.section(".debug_str", this.str);
    if (r != 0) return r;
    r = this.section(".debug_line_str", this.lineStr);
    if (r != 0) return r;
    r = this.section(".debug_str_offsets", this.strOffsets);
    if (r != 0) return r;
    const info = this.info;
    let unit: u64 = 0;
    // Each unit is at least 11 bytes: the loop ends within size / 11 rounds.
    while (unit + 4 <= info.size) {
      let len = <u64>load<u32>(info.start + <usize>unit);
      let hdr = unit + 4;
      let osize: u32 = 4;
      if (len == 0xffffffff) {
        if (unit + 12 > info.size) return this.bad(unit, "truncated 64-bit unit length");
        len = load<u64>(info.start + <usize>unit + 4);
        hdr = unit + 12;
        osize = 8;
      } else if (len >= 0xfffffff0) {
        return this.bad(unit, "reserved unit length 0x" + len.toString(16));
      }
      if (len > info.size - hdr) return this.bad(unit, "unit length " + len.toString() + " runs past the end of .debug_info");
      const end = hdr + len;
      r = this.unit(unit, hdr, end, osize);
      if (r != 0) return r;
      unit = end;
    }
    return 0;
  }

  private bad(unit: u64, why: string): i32 {
    return fail(Err.DIFF_DWARF_BAD, ".debug_info unit at 0x" + unit.toString(16) + ": " + why);
  }

  private unit(unit: u64, hdr: u64, end: u64, osize: u32): i32 {
    const info = this.info;
    const rd = new Reader(info.start + <usize>hdr, info.start + <usize>end);
    const version = rd.u8() | (rd.u8() << 8);
    if (!rd.ok) return this.bad(unit, "truncated header");
    if (version < 2 || version > 5) return this.bad(unit, "DWARF version " + version.toString() + " (2 to 5 are read)");
    let unitType: u32 = 1; // DW_UT_compile
    let dwoId: u64 = 0;
    let hasId = false;
    let abbrevOff: u64 = 0;
    if (version >= 5) {
      unitType = rd.u8();
      rd.u8(); // address_size
      abbrevOff = this.fieldAt(rd, osize);
      if (unitType == 4 || unitType == 5) { // dwo_id
        if (rd.end - rd.p >= 8) { dwoId = load<u64>(rd.p); hasId = true; }
        rd.skip(8);
      }
      else if (unitType == 2 || unitType == 6) rd.skip(8 + <u64>osize); // type_signature, type_offset
    } else {
      abbrevOff = this.fieldAt(rd, osize);
      rd.u8(); // address_size
    }
    if (!rd.ok) return this.bad(unit, "truncated header");
    const code = rd.uleb();
    if (!rd.ok) return this.bad(unit, "truncated first DIE");
    const rec = this.record();
    const dwoRec = changetype<usize>(this.dwoOut) + <usize>(this.count - 1) * DWO_REC;
    store<u64>(rec, unit);
    store<u16>(rec + 8, <u16>version);
    store<u8>(rec + 10, <u8>unitType);
    if (hasId) { store<u64>(dwoRec + 8, dwoId); store<u32>(dwoRec + 16, DWO_HAS_ID); }
    if (code == 0) return 0; // an empty unit
    // Its abbreviation.
    if (this.abbrev.index < 0 || abbrevOff >= this.abbrev.size) return this.bad(unit, "abbreviation offset 0x" + abbrevOff.toString(16) + " outside .debug_abbrev");
    const ab = new Reader(this.abbrev.start + <usize>abbrevOff, this.abbrev.start + <usize>this.abbrev.size);
    // Abbreviation entries are at least 4 bytes: bounded by the section size.
    while (true) {
      const c = ab.uleb();
      if (!ab.ok || c == 0) return this.bad(unit, "abbreviation " + code.toString() + " not found");
      if (c == code) break;
      ab.uleb(); // tag
      ab.u8(); // children
      while (ab.ok) {
        const at = ab.uleb();
        const form = ab.uleb();
        if (form == DW_FORM_implicit_const) ab.sleb();
        if (at == 0 && form == 0) break;
      }
    }
    ab.uleb(); // tag
    ab.u8(); // children
    const name = new Str();
    const producer = new Str();
    const compDir = new Str();
    const dwoName = new Str();
    let strBase: i64 = -1;
    while (true) {
      const at = ab.uleb();
      let form = ab.uleb();
      if (!ab.ok) return this.bad(unit, "truncated abbreviation " + code.toString());
      if (at == 0 && form == 0) break;
      if (form == DW_FORM_implicit_const) { ab.sleb(); continue; }
      // DW_FORM_indirect: the form is in the DIE (bounded: each step reads a byte).
      while (form == DW_FORM_indirect && rd.ok) form = rd.uleb();
      const target: Str | null =
        at == DW_AT_name ? name : at == DW_AT_producer ? producer : at == DW_AT_comp_dir ? compDir : at == DW_AT_dwo_name || at == DW_AT_GNU_dwo_name ? dwoName : null;
      if (target !== null && (form == DW_FORM_string || form == DW_FORM_strp || form == DW_FORM_line_strp)) {
        if (form == DW_FORM_string) {
          const off = <u64>(rd.p - info.start);
          if (!this.strAt(info, off, target)) return this.bad(unit, "unterminated string attribute");
          rd.skip(<u64>target.len + 1);
        } else {
          const v = this.fieldAt(rd, osize);
          const s = form == DW_FORM_strp ? this.str : this.lineStr;
          if (!rd.ok || !this.strAt(s, v, target)) {
            return this.bad(unit, "string offset 0x" + v.toString(16) + " outside " + (form == DW_FORM_strp ? ".debug_str" : ".debug_line_str"));
          }
        }
        continue;
      }
      if (target !== null && (form == DW_FORM_strx || form == DW_FORM_GNU_str_index || (form >= DW_FORM_strx1 && form <= DW_FORM_strx4))) {
        if (form == DW_FORM_strx || form == DW_FORM_GNU_str_index) target.index = <i64>rd.uleb();
        else target.index = <i64>this.fieldAt(rd, <u32>(form - DW_FORM_strx1 + 1));
        continue;
      }
      if (at == DW_AT_GNU_dwo_id && form == DW_FORM_data8) {
        if (rd.end - rd.p >= 8) { dwoId = load<u64>(rd.p); hasId = true; }
        rd.skip(8);
        continue;
      }
      if (at == DW_AT_str_offsets_base && form == DW_FORM_sec_offset) {
        strBase = <i64>this.fieldAt(rd, osize);
        continue;
      }
      if (!skipForm(rd, form, osize, version)) return this.bad(unit, "attribute 0x" + at.toString(16) + " has form 0x" + form.toString(16) + ", which is not read");
    }
    if (!rd.ok) return this.bad(unit, "the first DIE runs past the unit's end");
    // String indices: into .debug_str_offsets from the unit's base (a .dwo: after its header).
    if (strBase < 0) strBase = this.dwo && version >= 5 ? 8 : 0;
    const strs = [name, producer, compDir, dwoName];
    for (let k = 0; k < 4; k++) {
      const s = unchecked(strs[k]);
      if (s.index < 0) continue;
      const at = <u64>strBase + <u64>s.index * osize;
      if (<u64>s.index > this.strOffsets.size || this.strOffsets.index < 0 || at < <u64>strBase || at > this.strOffsets.size || <u64>osize > this.strOffsets.size - at) {
        return this.bad(unit, "string index " + s.index.toString() + " outside .debug_str_offsets");
      }
      const v = this.field(this.strOffsets, at, osize);
      if (!this.strAt(this.str, v, s)) return this.bad(unit, "string offset 0x" + v.toString(16) + " (index " + s.index.toString() + ") outside .debug_str");
    }
    let flags: u32 = 0;
    if (name.len >= 0) { flags |= UNIT_HAS_NAME; store<u32>(rec + 12, <u32>name.ptr); store<u32>(rec + 16, <u32>name.len); }
    if (producer.len >= 0) { flags |= UNIT_HAS_PRODUCER; store<u32>(rec + 20, <u32>producer.ptr); store<u32>(rec + 24, <u32>producer.len); }
    if (compDir.len >= 0) { flags |= UNIT_HAS_COMP_DIR; store<u32>(rec + 28, <u32>compDir.ptr); store<u32>(rec + 32, <u32>compDir.len); }
    store<u8>(rec + 11, <u8>flags);
    let dwoFlags: u32 = hasId ? DWO_HAS_ID : 0;
    if (hasId) store<u64>(dwoRec + 8, dwoId);
    if (dwoName.len >= 0) { dwoFlags |= DWO_HAS_NAME; store<u32>(dwoRec, <u32>dwoName.ptr); store<u32>(dwoRec + 4, <u32>dwoName.len); }
    store<u32>(dwoRec + 16, dwoFlags);
    return 0;
  }

  /** An offset-sized field of the unit at the reader's position (relocated), advancing past it. */
  private fieldAt(rd: Reader, size: u32): u64 {
    if (<u64>size > <u64>(rd.end - rd.p)) { rd.ok = false; rd.p = rd.end; return 0; }
    const v = this.field(this.info, <u64>(rd.p - this.info.start), size);
    rd.p += size;
    return v;
  }

  /** A zeroed record at the end of the output. */
  private record(): usize {
    const need = <i32>((this.count + 1) * UNIT_REC);
    if (need > this.out.length) {
      const grown = new StaticArray<u8>(max<i32>(need, this.out.length * 2));
      memory.copy(changetype<usize>(grown), changetype<usize>(this.out), <usize>this.count * UNIT_REC);
      this.out = grown;
    }
    if (need / <i32>UNIT_REC * <i32>DWO_REC > this.dwoOut.length) {
      const grown = new StaticArray<u8>(this.out.length / <i32>UNIT_REC * <i32>DWO_REC);
      memory.copy(changetype<usize>(grown), changetype<usize>(this.dwoOut), <usize>this.count * DWO_REC);
      this.dwoOut = grown;
    }
    const p = changetype<usize>(this.out) + <usize>this.count * UNIT_REC;
    memory.fill(p, 0, UNIT_REC);
    memory.fill(changetype<usize>(this.dwoOut) + <usize>this.count * DWO_REC, 0, DWO_REC);
    this.count++;
    return p;
  }
}

/** Skips an attribute value of `form`; false for a form it does not know (DWARF 5 table 7.6). */
function skipForm(rd: Reader, form: u64, osize: u32, version: u32): bool {
  switch (<u32>form) {
    case 0x01: rd.skip(8); return true; // addr (x86-64: 8 bytes)
    case 0x03: rd.skip(<u64>(rd.u8() | (rd.u8() << 8))); return true; // block2
    case 0x04: { let n: u64 = 0; for (let k: u64 = 0; k < 4; k++) n |= <u64>rd.u8() << (k * 8); rd.skip(n); return true; } // block4
    case 0x05: case 0x12: case 0x26: case 0x2a: rd.skip(2); return true; // data2 ref2 strx2 addrx2
    case 0x06: case 0x13: case 0x1c: case 0x28: case 0x2c: rd.skip(4); return true; // data4 ref4 ref_sup4 strx4 addrx4
    case 0x07: case 0x14: case 0x20: case 0x24: rd.skip(8); return true; // data8 ref8 ref_sig8 ref_sup8
    case 0x08: { while (rd.ok && rd.u8() != 0) {} return true; } // string
    case 0x09: case 0x18: rd.skip(rd.uleb()); return true; // block exprloc
    case 0x0a: rd.skip(<u64>rd.u8()); return true; // block1
    case 0x0b: case 0x0c: case 0x11: case 0x25: case 0x29: rd.skip(1); return true; // data1 flag ref1 strx1 addrx1
    case 0x0d: rd.sleb(); return true; // sdata
    case 0x0f: case 0x15: case 0x1a: case 0x1b: case 0x22: case 0x23: rd.uleb(); return true; // udata ref_udata strx addrx loclistx rnglistx
    case 0x10: rd.skip(version <= 2 ? 8 : <u64>osize); return true; // ref_addr
    case 0x0e: case 0x17: case 0x1d: case 0x1f: rd.skip(<u64>osize); return true; // strp sec_offset strp_sup line_strp
    case 0x19: return true; // flag_present
    case 0x1e: rd.skip(16); return true; // data16
    case 0x27: case 0x2b: rd.skip(3); return true; // strx3 addrx3
    case 0x1f01: case 0x1f02: rd.uleb(); return true; // GNU_addr_index GNU_str_index
    case 0x1f20: case 0x1f21: rd.skip(<u64>osize); return true; // GNU_ref_alt GNU_strp_alt
  }
  return false;
}
