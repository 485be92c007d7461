// Exports of the ELF reader. Record layouts are documented in docs/core-abi.md
// ("ELF reader"); every pointer in a record points into the caller's input buffer,
// which must stay allocated (and unchanged) until elf_close.
import { Err, fail, failNeg, clearError } from "../error";
import { ElfFile, Section, Segment, RelaTable, Version, DYNSYM, RELR, foundLen } from "./file";
import { elfFiles } from "./registry";
import { RELA_SIZE, DYN_SIZE, R_X86_64_RELATIVE, VER_NDX_GLOBAL, SHN_XINDEX } from "./defs";

function open(ptr: usize, len: usize, isImage: bool, base: u64): i32 {
  clearError();
  if (ptr == 0 && len != 0) {
    fail(Err.BAD_ARGUMENT, "elf_open: null input pointer");
    return 0;
  }
  const f = new ElfFile(ptr, <u64>len, isImage, base);
  if (f.open() != 0) return 0;
  return elfFiles.add(f);
}

/** Opens an ELF file held in [ptr, ptr+len). Returns a handle > 0, or 0 on failure. */
export function elf_open(ptr: usize, len: usize): i32 {
  return open(ptr, len, false, 0);
}

/**
 * Opens an image as mapped in a process: [ptr, ptr+len) holds memory from the start
 * of its first PT_LOAD page, which the process has at address `base`.
 */
export function elf_open_image(ptr: usize, len: usize, base: u64): i32 {
  return open(ptr, len, true, base);
}

/** Releases a handle (the caller then frees its input buffer). Returns 0, or BAD_HANDLE. */
export function elf_close(h: i32): i32 {
  if (!elfFiles.remove(h)) return fail(Err.BAD_HANDLE, "elf_close: " + h.toString() + " is not an open ELF handle");
  return 0;
}

function get(h: i32, what: string): ElfFile | null {
  const f = elfFiles.get(h);
  if (f === null) fail(Err.BAD_HANDLE, what + ": " + h.toString() + " is not an open ELF handle");
  return f;
}

/**
 * Writes the 96-byte info record:
 *    0 e_type u16          2 e_machine u16       4 e_flags u32          8 e_entry u64
 *   16 sections u32       20 segments u32       24 .symtab count u32   28 .dynsym count u32
 *   32 rela tables u32    36 versions u32       40 dynamic entries u32 44 build-id length u32
 *   48 build-id ptr u32   52 flags u32 (1 image, 2 has .symtab, 4 has .dynsym, 8 has dynamic, 16 has PT_TLS)
 *   56 first page vaddr u64   64 image base u64   72 TLS segment index i32   76 reserved
 *   80 input ptr u32      84 input length u32   88 reserved u64
 */
export function elf_info(h: i32, out: usize): i32 {
  const f = get(h, "elf_info");
  if (f === null) return Err.BAD_HANDLE;
  store<u16>(out, f.type);
  store<u16>(out + 2, f.machine);
  store<u32>(out + 4, f.flags);
  store<u64>(out + 8, f.entry);
  store<u32>(out + 16, f.sections.length);
  store<u32>(out + 20, f.segments.length);
  const st = f.symtabs[0];
  const dy = f.symtabs[1];
  store<u32>(out + 24, st === null ? 0 : st.count);
  store<u32>(out + 28, dy === null ? 0 : dy.count);
  store<u32>(out + 32, f.relas.length);
  store<u32>(out + 36, f.versions.length);
  store<u32>(out + 40, f.dynamicCount);
  store<u32>(out + 44, f.buildId < 0 ? 0 : f.buildIdLen);
  store<u32>(out + 48, f.buildId < 0 ? 0 : <u32>f.bytes.ptr(<u64>f.buildId));
  let flags: u32 = 0;
  if (f.isImage) flags |= 1;
  if (st !== null) flags |= 2;
  if (dy !== null) flags |= 4;
  if (f.dynamicOffset >= 0) flags |= 8;
  if (f.tlsSegment >= 0) flags |= 16;
  store<u32>(out + 52, flags);
  store<u64>(out + 56, f.firstVaddr);
  store<u64>(out + 64, f.base);
  store<i32>(out + 72, f.tlsSegment);
  store<u32>(out + 76, 0);
  store<u32>(out + 80, <u32>f.bytes.base);
  store<u32>(out + 84, <u32>f.bytes.length);
  store<u64>(out + 88, 0);
  return 0;
}

/**
 * Writes `count` 72-byte section records from index `first`:
 *    0 name ptr u32   4 name length u32   8 sh_type u32   12 sh_link u32
 *   16 sh_flags u64  24 sh_addr u64      32 sh_offset u64  40 sh_size u64
 *   48 sh_info u32   52 has data u32 (1: offset..offset+size is in the input)
 *   56 sh_addralign u64   64 sh_entsize u64
 * Returns the number written, or -1 when the range is not valid.
 */
export function elf_sections(h: i32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_sections");
  if (f === null) return -1;
  const n = <u32>f.sections.length;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "elf_sections: range " + first.toString() + "+" + count.toString() + " exceeds " + n.toString() + " sections");
  for (let i: u32 = 0; i < count; i++) {
    const s: Section = f.sections[first + i];
    const o = out + <usize>i * 72;
    store<u32>(o, s.nameLen == 0 && s.name == 0 ? 0 : <u32>f.bytes.ptr(s.name));
    store<u32>(o + 4, s.nameLen);
    store<u32>(o + 8, s.type);
    store<u32>(o + 12, s.link);
    store<u64>(o + 16, s.flags);
    store<u64>(o + 24, s.addr);
    store<u64>(o + 32, s.offset);
    store<u64>(o + 40, s.size);
    store<u32>(o + 48, s.info);
    store<u32>(o + 52, s.hasData ? 1 : 0);
    store<u64>(o + 56, s.align);
    store<u64>(o + 64, s.entsize);
  }
  return <i32>count;
}

/** Index of the section named [name, name+len), or -1 (no error recorded: absence is an answer). */
export function elf_section_by_name(h: i32, name: usize, len: u32): i32 {
  const f = get(h, "elf_section_by_name");
  if (f === null) return -1;
  return f.sectionByName(name, len);
}

/**
 * Writes `count` 56-byte segment records (the Elf64_Phdr layout) from index `first`:
 *    0 p_type u32  4 p_flags u32  8 p_offset u64  16 p_vaddr u64  24 p_paddr u64
 *   32 p_filesz u64  40 p_memsz u64  48 p_align u64
 */
export function elf_segments(h: i32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_segments");
  if (f === null) return -1;
  const n = <u32>f.segments.length;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "elf_segments: range exceeds " + n.toString() + " segments");
  for (let i: u32 = 0; i < count; i++) {
    const s: Segment = f.segments[first + i];
    const o = out + <usize>i * 56;
    store<u32>(o, s.type);
    store<u32>(o + 4, s.flags);
    store<u64>(o + 8, s.offset);
    store<u64>(o + 16, s.vaddr);
    store<u64>(o + 24, s.paddr);
    store<u64>(o + 32, s.filesz);
    store<u64>(o + 40, s.memsz);
    store<u64>(o + 48, s.align);
  }
  return <i32>count;
}

/**
 * Writes `count` 48-byte symbol records of table `table` (0 .symtab, 1 .dynsym) from `first`:
 *    0 name ptr u32       4 name length u32     8 st_value u64        16 st_size u64
 *   24 st_info u8        25 st_other u8        26 versym u16 (bit 15: hidden; 1: global/none)
 *   28 section index u32 (SHN_XINDEX resolved; SHN_UNDEF/ABS/COMMON as in the file)
 *   32 version name ptr u32   36 version name length u32 (0: no version)
 *   40 version file ptr u32   44 version file length u32 (a requirement's library; 0 for a definition)
 */
export function elf_symbols(h: i32, table: u32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_symbols");
  if (f === null) return -1;
  if (table > 1 || f.symtabs[table] === null) return failNeg(Err.ELF_NO_SUCH_TABLE, "elf_symbols: the file has no " + (table == 0 ? ".symtab" : table == 1 ? ".dynsym" : "table " + table.toString()));
  const t = f.symtabs[table]!;
  if (first > t.count || count > t.count - first) return failNeg(Err.BAD_ARGUMENT, "elf_symbols: range exceeds " + t.count.toString() + " symbols");
  // Raw memory only in the loop (validated at open): no managed object, no call.
  const base = f.bytes.base;
  const syms = base + <usize>t.offset;
  const strs = base + <usize>t.strOffset;
  const lens = changetype<usize>(t.nameLens);
  const versym: usize = t.versym < 0 ? 0 : base + <usize>t.versym;
  const xindex: usize = t.shndx < 0 ? 0 : base + <usize>t.shndx;
  const words = changetype<usize>(f.versionWords);
  const nwords = <u32>f.versionWords.length;
  for (let i: u32 = 0; i < count; i++) {
    const idx = <usize>(first + i);
    const s = syms + idx * 24;
    const o = out + <usize>i * 48;
    store<u32>(o, <u32>(strs + <usize>load<u32>(s)));
    store<u32>(o, load<u32>(lens + (idx << 2)), 4);
    store<u64>(o, load<u64>(s, 8), 8);
    store<u64>(o, load<u64>(s, 16), 16);
    store<u8>(o, load<u8>(s, 4), 24);
    store<u8>(o, load<u8>(s, 5), 25);
    const vs: u16 = versym != 0 ? load<u16>(versym + (idx << 1)) : VER_NDX_GLOBAL;
    store<u16>(o, vs, 26);
    const raw = load<u16>(s, 6);
    store<u32>(o, raw == SHN_XINDEX ? load<u32>(xindex + (idx << 2)) : <u32>raw, 28);
    const k = <u32>(vs & 0x7fff);
    if (k > 1 && (k << 2) < nwords) {
      const w = words + (<usize>k << 4);
      store<u64>(o, load<u64>(w), 32);
      store<u64>(o, load<u64>(w, 8), 40);
    } else {
      store<u64>(o, 0, 32);
      store<u64>(o, 0, 40);
    }
  }
  return <i32>count;
}

/**
 * Writes `count` 24-byte relocation-table records from `first`:
 *    0 kind u32 (0 SHT_RELA section, 1 DT_RELA, 2 DT_JMPREL, 3 RELR: SHT_RELR or DT_RELR,
 *      expanded by elf_relas into R_X86_64_RELATIVE records)   4 count u32 (expanded)
 *    8 section i32 (-1: from the dynamic segment)   12 target section i32 (sh_info, -1: none)
 *   16 symbol table u32 (0 .symtab, 1 .dynsym)      20 reserved
 */
export function elf_rela_tables(h: i32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_rela_tables");
  if (f === null) return -1;
  const n = <u32>f.relas.length;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "elf_rela_tables: range exceeds " + n.toString() + " tables");
  for (let i: u32 = 0; i < count; i++) {
    const t: RelaTable = f.relas[first + i];
    const o = out + <usize>i * 24;
    store<u32>(o, t.kind);
    store<u32>(o + 4, t.count);
    store<i32>(o + 8, t.section);
    store<i32>(o + 12, t.target);
    store<u32>(o + 16, t.symtab);
    store<u32>(o + 20, 0);
  }
  return <i32>count;
}

/**
 * Writes `count` 24-byte relocation records of table `table` from `first`:
 *    0 r_offset u64    8 type u32    12 symbol index u32    16 r_addend i64
 */
export function elf_relas(h: i32, table: u32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_relas");
  if (f === null) return -1;
  if (table >= <u32>f.relas.length) return failNeg(Err.ELF_NO_SUCH_TABLE, "elf_relas: no relocation table " + table.toString());
  const t = f.relas[table];
  if (first > t.count || count > t.count - first) return failNeg(Err.BAD_ARGUMENT, "elf_relas: range exceeds " + t.count.toString() + " relocations");
  if (t.kind == RELR) {
    expandRelr(f, t, first, count, out);
  } else {
    memory.copy(out, f.bytes.ptr(t.offset + <u64>first * RELA_SIZE), <usize>count * RELA_SIZE);
  }
  return <i32>count;
}

/** Writes relocations first..first+count of a RELR table as R_X86_64_RELATIVE records (addend 0: it is in place). */
function expandRelr(f: ElfFile, t: RelaTable, first: u32, count: u32, out: usize): void {
  const b = f.bytes;
  let where: u64 = 0;
  let k: u32 = 0; // index of the next expanded relocation
  const end = first + count;
  for (let i: u32 = 0; i < t.words && k < end; i++) {
    const w = b.u64(t.offset + <u64>i * 8);
    if ((w & 1) == 0) {
      if (k >= first) writeRelative(out + <usize>(k - first) * RELA_SIZE, w);
      k++;
      where = w + 8;
    } else {
      for (let bit: u64 = 1; bit < 64 && k < end; bit++) {
        if (((w >> bit) & 1) == 0) continue;
        if (k >= first) writeRelative(out + <usize>(k - first) * RELA_SIZE, where + (bit - 1) * 8);
        k++;
      }
      where += 63 * 8;
    }
  }
}

function writeRelative(o: usize, offset: u64): void {
  store<u64>(o, offset);
  store<u32>(o + 8, R_X86_64_RELATIVE);
  store<u32>(o + 12, 0);
  store<i64>(o + 16, 0);
}

/** Writes `count` 16-byte dynamic entries (d_tag i64, d_val u64) from `first`. */
export function elf_dynamic(h: i32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_dynamic");
  if (f === null) return -1;
  const n = f.dynamicCount;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "elf_dynamic: range exceeds " + n.toString() + " entries");
  memory.copy(out, f.bytes.ptr(<u64>f.dynamicOffset + <u64>first * DYN_SIZE), <usize>count * DYN_SIZE);
  return <i32>count;
}

/**
 * Pointer to the NUL-terminated string at `offset` in the dynamic string table (DT_STRTAB,
 * as for DT_NEEDED and DT_SONAME values), its length written to `lenOut`; 0 when invalid.
 */
export function elf_dynstr(h: i32, offset: u32, lenOut: usize): usize {
  const f = get(h, "elf_dynstr");
  if (f === null) return 0;
  const t = f.symtabs[DYNSYM];
  if (t === null) {
    fail(Err.ELF_NO_SUCH_TABLE, "elf_dynstr: the file has no dynamic string table");
    return 0;
  }
  const at = f.str(t.strOffset, t.strSize, offset);
  if (at < 0) {
    fail(Err.ELF_BAD_STRING, "elf_dynstr: offset " + offset.toString() + " is not a string in the dynamic string table");
    return 0;
  }
  store<u32>(lenOut, foundLen);
  return f.bytes.ptr(<u64>at);
}


/**
 * Writes `count` 24-byte version records from `first`:
 *    0 index u16   2 is definition u8   3 is base (the file's own name) u8
 *    4 name ptr u32   8 name length u32   12 file ptr u32   16 file length u32   20 reserved
 */
export function elf_versions(h: i32, first: u32, count: u32, out: usize): i32 {
  const f = get(h, "elf_versions");
  if (f === null) return -1;
  const n = <u32>f.versions.length;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, "elf_versions: range exceeds " + n.toString() + " versions");
  for (let i: u32 = 0; i < count; i++) {
    const v: Version = f.versions[first + i];
    const o = out + <usize>i * 24;
    store<u16>(o, v.index);
    store<u8>(o + 2, v.isDef ? 1 : 0);
    store<u8>(o + 3, v.isBase ? 1 : 0);
    store<u32>(o + 4, <u32>f.bytes.ptr(v.name));
    store<u32>(o + 8, v.nameLen);
    store<u32>(o + 12, v.isDef ? 0 : <u32>f.bytes.ptr(v.file));
    store<u32>(o + 16, v.isDef ? 0 : v.fileLen);
    store<u32>(o + 20, 0);
  }
  return <i32>count;
}

/**
 * Writes the 48-byte unwind-table record:
 *    0 .eh_frame address u64   8 .eh_frame input offset i64 (-1: none)   16 .eh_frame size u64
 *   24 .eh_frame_hdr address u64   32 .eh_frame_hdr input offset i64 (-1: none)   40 size u64
 * Addresses are link-time for files and runtime for images. Found through program
 * headers only, .eh_frame's size is an upper bound (to the end of its PT_LOAD).
 */
export function elf_eh_frame(h: i32, out: usize): i32 {
  const f = get(h, "elf_eh_frame");
  if (f === null) return Err.BAD_HANDLE;
  store<u64>(out, f.ehFrameAddr);
  store<i64>(out + 8, f.ehFrameOffset);
  store<u64>(out + 16, f.ehFrameSize);
  store<u64>(out + 24, f.ehFrameHdrAddr);
  store<i64>(out + 32, f.ehFrameHdrOffset);
  store<u64>(out + 40, f.ehFrameHdrSize);
  return 0;
}

/** Input offset of `size` bytes at link-time address `vaddr` (via PT_LOAD), or -1. */
export function elf_addr_to_offset(h: i32, vaddr: u64, size: u64): i64 {
  const f = get(h, "elf_addr_to_offset");
  if (f === null) return -1;
  return f.addrToOffset(vaddr, size);
}
