// The ELF64 reader: one ElfFile per input, validated once at open so that every
// accessor afterwards is a plain load at an offset already proven in range.
//
// Two views of the same format:
//   - a file (ET_REL, ET_EXEC, ET_DYN as stored on disk): offsets are file offsets,
//     section headers give the tables; without section headers the dynamic segment does.
//   - an image (as mapped in a process: the vDSO, a library whose file was replaced on
//     disk): the input holds memory from the start of the first PT_LOAD (page-aligned,
//     where the ELF header lies) and only program headers and the dynamic segment are
//     used. Section headers are usually not mapped and are ignored.
//
//   image input:  [ first PT_LOAD page ... last PT_LOAD end )
//                 ^ base (runtime address of input[0]) = bias + firstVaddr
//   vaddr v  ->  input offset v - firstVaddr
//
// The dynamic section of a loaded module is partly relocated by ld.so (glibc adjusts
// DT_STRTAB, DT_SYMTAB, DT_HASH, DT_GNU_HASH, DT_RELA, DT_JMPREL, DT_VERSYM, DT_PLTGOT
// by the load bias in place; DT_VERDEF/DT_VERNEED stay link-time vaddrs), so an image's
// d_ptr is accepted both as an absolute address and as a vaddr (see addrToOffset).
import { Bytes } from "../bytes";
import { Err, fail, hex } from "../error";
import * as D from "./defs";

export class Section {
  index: u32 = 0;
  name: u32 = 0; // offset of the NUL-terminated name in the input (0 with nameLen 0: no name)
  nameLen: u32 = 0;
  type: u32 = 0;
  flags: u64 = 0;
  addr: u64 = 0;
  offset: u64 = 0;
  size: u64 = 0;
  link: u32 = 0;
  info: u32 = 0;
  align: u64 = 0;
  entsize: u64 = 0;
  /** Whether offset..offset+size lies in the input (false for SHT_NOBITS and SHT_NULL). */
  hasData: bool = false;
}

export class Segment {
  type: u32 = 0;
  flags: u32 = 0;
  offset: u64 = 0;
  vaddr: u64 = 0;
  paddr: u64 = 0;
  filesz: u64 = 0;
  memsz: u64 = 0;
  align: u64 = 0;
}

export const SYMTAB: u32 = 0; // .symtab
export const DYNSYM: u32 = 1; // .dynsym

/** A symbol table with its string table; records are validated in bulk at open. */
export class SymTable {
  kind: u32 = SYMTAB;
  offset: u64 = 0; // of the first Elf64_Sym in the input
  count: u32 = 0;
  strOffset: u64 = 0;
  strSize: u64 = 0;
  firstGlobal: u32 = 0; // sh_info: index of the first non-local symbol (0 when unknown)
  versym: i64 = -1; // offset of the .gnu.version array (one u16 per symbol), or -1
  shndx: i64 = -1; // offset of SHT_SYMTAB_SHNDX (one u32 per symbol), or -1
  section: i32 = -1; // the section it came from, -1 when found through the dynamic segment
  /** Length of each symbol's name, measured once when checkSymbols validates it. */
  nameLens: StaticArray<u32> = new StaticArray<u32>(0);
}

export const RELA_SECTION: u32 = 0; // a SHT_RELA section
export const RELA_DYN: u32 = 1; // DT_RELA (.rela.dyn)
export const RELA_PLT: u32 = 2; // DT_JMPREL (.rela.plt)
export const RELR: u32 = 3; // SHT_RELR section or DT_RELR (.relr.dyn): packed relative relocations

// SHT_RELR (gABI, "Relative relocation table"): a sequence of u64 words. An even word is
// the address of the next relocation (a word of R_X86_64_RELATIVE with its addend in
// place), and sets `where` to the word after it. An odd word is a bitmap: bit i (1..63)
// relocates where + (i-1)*8; then `where` advances by 63 words.
/** Number of relocations a RELR table of `words` words at `off` expands to. */
export function relrCount(b: Bytes, off: u64, words: u32): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < words; i++) {
    const w = b.u64(off + <u64>i * 8);
    n += (w & 1) == 0 ? 1 : <u32>popcnt(w) - 1;
  }
  return n;
}

export class RelaTable {
  kind: u32 = RELA_SECTION;
  offset: u64 = 0;
  count: u32 = 0;
  section: i32 = -1; // the SHT_RELA section, or -1 when from the dynamic segment
  target: i32 = -1; // section the relocations apply to (sh_info), or -1
  symtab: u32 = DYNSYM; // which symbol table r_sym indexes
  words: u32 = 0; // RELR: number of packed words (count is the expanded number)
}

/** One symbol version: index (as in .gnu.version) -> name, and for a requirement the file. */
export class Version {
  index: u16 = 0;
  name: u32 = 0; // input offset of the name
  nameLen: u32 = 0;
  file: u32 = 0; // input offset of the needed file (verneed), else 0
  fileLen: u32 = 0;
  isDef: bool = false; // from .gnu.version_d (a definition) rather than .gnu.version_r
  isBase: bool = false; // VER_FLG_BASE: the file's own name, not a version
}

/** Length of the string found by strAt(); valid right after a successful call. */
export let foundLen: u32 = 0;

/** Names a version record in messages: verdef entry i (j = -1), verneed entry i (j = -2) or its aux j. */
function versionWhat(i: u32, j: i32): string {
  if (j == -1) return ".gnu.version_d entry " + i.toString();
  const what = ".gnu.version_r entry " + i.toString();
  return j < 0 ? what : what + " aux " + j.toString();
}

/** The scanning budget scanNames() leaves. */
let scanLeft: u64 = 0;

// The hot loops of checkSymbols, over raw memory: no managed object and no call inside
// them (AssemblyScript's incremental runtime spills managed locals to its shadow stack
// around calls, which costs more than the work here).

/**
 * Measures the names of symbols [from, count) (Elf64_Sym at `syms`) in the string table at
 * (strs, strSize), into lens[]; stops at a name that is not a string of the table or when
 * the scanning `budget` is spent. Returns where it stopped (count: all measured), the
 * budget left in scanLeft.
 */
function scanNames(syms: usize, from: u32, count: u32, strs: usize, strSize: u64, lens: usize, budget: u64): u32 {
  const end = strs + <usize>strSize;
  let i = from;
  for (; i < count; i++) {
    if (budget == 0) break;
    const name = load<u32>(syms + <usize>i * 24);
    if (<u64>name >= strSize) break;
    const start = strs + <usize>name;
    let p = start;
    while (p < end && load<u8>(p) != 0) p++;
    if (p == end) break;
    const cost = <u64>(p - start) + 1;
    budget = cost >= budget ? 0 : budget - cost;
    store<u32>(lens + (<usize>i << 2), <u32>(p - start));
  }
  scanLeft = budget;
  return i;
}

/**
 * The first of `count` symbols whose section index (SHN_XINDEX through `xindex`, 0: no
 * SHT_SYMTAB_SHNDX) is not one of `nsec` sections, or whose .gnu.version entry (`versym`,
 * 0: none) names no version (versionSlot: `slots`, `nslots` u16 entries); count when none.
 */
function checkIndices(syms: usize, count: u32, nsec: u32, xindex: usize, versym: usize, slots: usize, nslots: u32): u32 {
  for (let i: u32 = 0; i < count; i++) {
    const shndx = load<u16>(syms + <usize>i * 24, 6);
    if (shndx == D.SHN_XINDEX) {
      if (xindex == 0 || load<u32>(xindex + (<usize>i << 2)) >= nsec) return i;
    } else if (shndx < D.SHN_LORESERVE && nsec != 0 && <u32>shndx >= nsec) {
      return i;
    }
    if (versym != 0) {
      const v = <u32>(load<u16>(versym + (<usize>i << 1)) & ~D.VERSYM_HIDDEN);
      if (v > <u32>D.VER_NDX_GLOBAL && (v >= nslots || load<u16>(slots + (<usize>v << 1)) == 0)) return i;
    }
  }
  return count;
}

/**
 * The NUL bytes of one string table, ascending: where the string at an index ends is
 * then a binary search instead of a scan (see ElfFile.str()).
 */
class NulIndex {
  nuls: StaticArray<u32>;

  constructor(b: Bytes, public tabOff: u64, public tabSize: u64) {
    const start = b.ptr(tabOff);
    const size = <usize>tabSize;
    let n = 0;
    for (let i: usize = 0; i < size; i++) if (load<u8>(start + i) == 0) n++;
    this.nuls = new StaticArray<u32>(n);
    let k = 0;
    for (let i: usize = 0; i < size; i++) if (load<u8>(start + i) == 0) unchecked((this.nuls[k++] = <u32>i));
  }

  /** As strAt(). */
  find(idx: u32): i64 {
    if (<u64>idx >= this.tabSize) return -1;
    const nuls = this.nuls;
    let lo = 0;
    let hi = nuls.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (unchecked(nuls[mid]) < idx) lo = mid + 1;
      else hi = mid;
    }
    if (lo == nuls.length) return -1;
    foundLen = unchecked(nuls[lo]) - idx;
    return <i64>(this.tabOff + <u64>idx);
  }
}

/** d_tags whose d_ptr is the address of a table or code in the image (bounds for the room of .dynsym). */
function isTableTag(tag: i64): bool {
  return tag == D.DT_HASH || tag == D.DT_GNU_HASH || tag == D.DT_STRTAB || tag == D.DT_SYMTAB || tag == D.DT_RELA ||
    tag == D.DT_JMPREL || tag == D.DT_RELR || tag == D.DT_VERSYM || tag == D.DT_VERDEF || tag == D.DT_VERNEED ||
    tag == D.DT_PLTGOT || tag == D.DT_INIT || tag == D.DT_FINI || tag == D.DT_INIT_ARRAY || tag == D.DT_FINI_ARRAY ||
    tag == D.DT_PREINIT_ARRAY;
}

export class ElfFile {
  bytes: Bytes;
  isImage: bool;
  base: u64; // image: runtime address of input[0]; file: 0
  firstVaddr: u64 = 0; // image: page-aligned vaddr of the first PT_LOAD

  type: u16 = 0;
  machine: u16 = 0;
  entry: u64 = 0;
  flags: u32 = 0;
  phoff: u64 = 0;
  shoff: u64 = 0;
  shstrndx: u32 = 0;

  sections: Array<Section> = [];
  segments: Array<Segment> = [];
  symtabs: StaticArray<SymTable | null> = new StaticArray<SymTable | null>(2);
  relas: Array<RelaTable> = [];
  versions: Array<Version> = [];
  /** versionSlot[index] = position in versions + 1, or 0 (dense over version indices). */
  versionSlot: StaticArray<u16> = new StaticArray<u16>(0);
  /**
   * Per version index k, at 4k: the version's name ptr, name length, and for a requirement
   * its file's ptr and length (zeros: no such version), as elf_symbols writes them.
   */
  versionWords: StaticArray<u32> = new StaticArray<u32>(0);

  dynamicOffset: i64 = -1; // input offset of the dynamic array, or -1
  dynamicCount: u32 = 0;
  buildId: i64 = -1; // input offset of the build-id bytes, or -1
  buildIdLen: u32 = 0;
  ehFrameAddr: u64 = 0;
  ehFrameOffset: i64 = -1;
  ehFrameSize: u64 = 0;
  ehFrameHdrAddr: u64 = 0;
  ehFrameHdrOffset: i64 = -1;
  ehFrameHdrSize: u64 = 0;
  tlsSegment: i32 = -1;

  // Names are found by scanning to their NUL (strAt). Names may share one long NUL-free
  // run, though (crafted: n symbols whose names all start in one S-byte string cost n*S),
  // so scanning has a budget proportional to the input; past it, a string table gets a
  // NulIndex and each lookup is a binary search: O(input + names * log) in all.
  private scanBudget: u64;
  private nulIndexes: Array<NulIndex> = [];

  constructor(ptr: usize, len: u64, isImage: bool, base: u64) {
    this.bytes = new Bytes(ptr, len);
    this.isImage = isImage;
    this.base = base;
    this.scanBudget = 8 * len + (1 << 20);
  }

  /** strAt() over the input, in bounded time (see scanBudget). */
  str(tabOff: u64, tabSize: u64, idx: u32): i64 {
    if (this.scanBudget > 0) {
      const at = strAt(this.bytes, tabOff, tabSize, idx);
      const cost: u64 = at >= 0 ? <u64>foundLen + 1 : <u64>idx < tabSize ? tabSize - <u64>idx : 1;
      this.scanBudget = cost >= this.scanBudget ? 0 : this.scanBudget - cost;
      return at;
    }
    const ix = this.nulIndexes;
    for (let i = 0; i < ix.length; i++) {
      const t = unchecked(ix[i]);
      if (t.tabOff == tabOff && t.tabSize == tabSize) return t.find(idx);
    }
    const t = new NulIndex(this.bytes, tabOff, tabSize);
    ix.push(t);
    return t.find(idx);
  }

  /** Reads and validates everything; returns Err.OK or the failure code (message recorded). */
  open(): i32 {
    let r = this.readHeader();
    if (r != 0) return r;
    r = this.readSegments();
    if (r != 0) return r;
    if (!this.isImage && this.shoff != 0) {
      r = this.readSections();
      if (r != 0) return r;
      r = this.tablesFromSections();
    } else {
      r = this.tablesFromDynamic();
    }
    if (r != 0) return r;
    r = this.findBuildId();
    if (r != 0) return r;
    return this.findEhFrame();
  }

  // ---- header ---------------------------------------------------------------

  private readHeader(): i32 {
    const b = this.bytes;
    if (!b.inRange(0, D.EHDR_SIZE)) {
      return fail(Err.ELF_TRUNCATED, "ELF header: input of " + b.length.toString() + " bytes is shorter than the 64-byte header");
    }
    if (b.u32(0) != 0x464c457f) return fail(Err.ELF_BAD_MAGIC, "ELF header: not an ELF file (bad magic)");
    if (b.u8(4) != D.ELFCLASS64) return fail(Err.ELF_UNSUPPORTED, "ELF header: class " + b.u8(4).toString() + " is not ELFCLASS64");
    if (b.u8(5) != D.ELFDATA2LSB) return fail(Err.ELF_UNSUPPORTED, "ELF header: data encoding " + b.u8(5).toString() + " is not little-endian");
    if (b.u8(6) != D.EV_CURRENT) return fail(Err.ELF_UNSUPPORTED, "ELF header: ident version " + b.u8(6).toString() + " is not 1");
    this.type = b.u16(16);
    this.machine = b.u16(18);
    if (this.machine != D.EM_X86_64) return fail(Err.ELF_UNSUPPORTED, "ELF header: machine " + this.machine.toString() + " is not x86-64 (62)");
    if (this.type != D.ET_REL && this.type != D.ET_EXEC && this.type != D.ET_DYN) {
      return fail(Err.ELF_UNSUPPORTED, "ELF header: type " + this.type.toString() + " is not ET_REL, ET_EXEC or ET_DYN");
    }
    if (this.isImage && this.type == D.ET_REL) return fail(Err.ELF_UNSUPPORTED, "ELF header: an ET_REL object cannot be a mapped image");
    this.entry = b.u64(24);
    this.phoff = b.u64(32);
    this.shoff = b.u64(40);
    this.flags = b.u32(48);
    const phnum = <u32>b.u16(56);
    if (phnum != 0 && b.u16(54) != D.PHDR_SIZE) {
      return fail(Err.ELF_BAD_HEADER, "ELF header: e_phentsize " + b.u16(54).toString() + " is not 56");
    }
    if (this.shoff != 0 && b.u16(58) != D.SHDR_SIZE) {
      return fail(Err.ELF_BAD_HEADER, "ELF header: e_shentsize " + b.u16(58).toString() + " is not 64");
    }
    return 0;
  }

  // ---- program headers ------------------------------------------------------

  private readSegments(): i32 {
    const b = this.bytes;
    const phnum = <u32>b.u16(56);
    if (phnum == 0) {
      if (this.isImage) return fail(Err.ELF_BAD_SEGMENT, "program headers: an image needs program headers, e_phnum is 0");
      return 0;
    }
    if (phnum == 0xffff) return fail(Err.ELF_UNSUPPORTED, "program headers: PN_XNUM (more than 65534 segments) is not supported");
    if (!b.inRange(this.phoff, <u64>phnum * D.PHDR_SIZE)) {
      return fail(Err.ELF_TRUNCATED, "program headers: " + phnum.toString() + " entries at " + hex(this.phoff) + " run past the end of the input (" + hex(b.length) + ")");
    }
    let first = true;
    for (let i: u32 = 0; i < phnum; i++) {
      const o = this.phoff + <u64>i * D.PHDR_SIZE;
      const s = new Segment();
      s.type = b.u32(o);
      s.flags = b.u32(o + 4);
      s.offset = b.u64(o + 8);
      s.vaddr = b.u64(o + 16);
      s.paddr = b.u64(o + 24);
      s.filesz = b.u64(o + 32);
      s.memsz = b.u64(o + 40);
      s.align = b.u64(o + 48);
      if (s.type == D.PT_LOAD) {
        if (s.filesz > s.memsz) {
          return fail(Err.ELF_BAD_SEGMENT, "program header " + i.toString() + ": PT_LOAD p_filesz " + hex(s.filesz) + " exceeds p_memsz " + hex(s.memsz));
        }
        if (s.vaddr + s.memsz < s.vaddr) return fail(Err.ELF_BAD_SEGMENT, "program header " + i.toString() + ": PT_LOAD wraps around the address space");
        if (first) {
          // The page that holds the first segment: where an image's input starts.
          this.firstVaddr = s.vaddr & ~(<u64>0xfff);
          first = false;
        }
      }
      if (s.type == D.PT_TLS) this.tlsSegment = <i32>i;
      this.segments.push(s);
    }
    if (this.isImage && first) return fail(Err.ELF_BAD_SEGMENT, "program headers: an image needs a PT_LOAD segment");
    return 0;
  }

  /**
   * Input offset of `size` bytes at virtual address `vaddr`, or -1 when they are not in
   * the input (not in a PT_LOAD's file bytes, or past the end of an image).
   */
  addrToOffset(vaddr: u64, size: u64): i64 {
    if (this.isImage) {
      // Absolute (relocated by ld.so) or link-time vaddr: see the note at the top.
      if (this.base != this.firstVaddr && vaddr >= this.base && this.bytes.inRange(vaddr - this.base, size)) {
        return <i64>(vaddr - this.base);
      }
      if (vaddr >= this.firstVaddr && this.bytes.inRange(vaddr - this.firstVaddr, size)) {
        return <i64>(vaddr - this.firstVaddr);
      }
      return -1;
    }
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = unchecked(segs[i]);
      if (s.type != D.PT_LOAD) continue;
      if (vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz && size <= s.filesz - (vaddr - s.vaddr)) {
        const off = s.offset + (vaddr - s.vaddr);
        if (off >= s.offset && this.bytes.inRange(off, size)) return <i64>off;
        return -1;
      }
    }
    return -1;
  }

  /** Input offset of a segment's file bytes (an image: found by address), or -1 when they are not in the input. */
  segmentOffset(s: Segment): i64 {
    if (this.isImage) return this.addrToOffset(s.vaddr, s.filesz);
    return this.bytes.inRange(s.offset, s.filesz) ? <i64>s.offset : -1;
  }

  /** The runtime/link-time address of an input offset (image: absolute; file: via PT_LOAD), or 0 if none. */
  offsetToAddr(off: u64): u64 {
    if (this.isImage) return this.base + off;
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = unchecked(segs[i]);
      if (s.type == D.PT_LOAD && off >= s.offset && off - s.offset < s.filesz) return s.vaddr + (off - s.offset);
    }
    return 0;
  }

  // ---- section headers --------------------------------------------------------

  private readSections(): i32 {
    const b = this.bytes;
    if (!b.inRange(this.shoff, D.SHDR_SIZE)) {
      return fail(Err.ELF_TRUNCATED, "section headers: e_shoff " + hex(this.shoff) + " is past the end of the input (" + hex(b.length) + ")");
    }
    // e_shnum == 0 with e_shoff != 0: the real count is in section 0's sh_size; the same for e_shstrndx.
    let shnum = <u64>b.u16(60);
    if (shnum == 0) shnum = b.u64(this.shoff + 32);
    let shstrndx = <u32>b.u16(62);
    if (shstrndx == D.SHN_XINDEX) shstrndx = b.u32(this.shoff + 44);
    if (shnum > D.MAX_SECTIONS) return fail(Err.ELF_BAD_HEADER, "section headers: count " + shnum.toString() + " is absurd");
    if (!b.inRange(this.shoff, shnum * D.SHDR_SIZE)) {
      return fail(Err.ELF_TRUNCATED, "section headers: " + shnum.toString() + " entries at " + hex(this.shoff) + " run past the end of the input (" + hex(b.length) + ")");
    }
    if (shstrndx >= <u32>shnum && shstrndx != 0) {
      return fail(Err.ELF_BAD_HEADER, "ELF header: e_shstrndx " + shstrndx.toString() + " is not a section (there are " + shnum.toString() + ")");
    }
    this.shstrndx = shstrndx;
    const n = <u32>shnum;
    for (let i: u32 = 0; i < n; i++) {
      const o = this.shoff + <u64>i * D.SHDR_SIZE;
      const s = new Section();
      s.index = i;
      s.name = b.u32(o);
      s.type = b.u32(o + 4);
      s.flags = b.u64(o + 8);
      s.addr = b.u64(o + 16);
      s.offset = b.u64(o + 24);
      s.size = b.u64(o + 32);
      s.link = b.u32(o + 40);
      s.info = b.u32(o + 44);
      s.align = b.u64(o + 48);
      s.entsize = b.u64(o + 56);
      if (s.type != D.SHT_NOBITS && s.type != D.SHT_NULL) {
        if (!b.inRange(s.offset, s.size)) {
          return fail(Err.ELF_TRUNCATED, "section " + i.toString() + ": sh_offset " + hex(s.offset) + " + sh_size " + hex(s.size) + " runs past the end of the input (" + hex(b.length) + ")");
        }
        s.hasData = true;
      }
      if (s.link >= n && s.type != D.SHT_NULL) {
        return fail(Err.ELF_BAD_SECTION, "section " + i.toString() + ": sh_link " + s.link.toString() + " is not a section");
      }
      this.sections.push(s);
    }
    // Names, once the string table is known good.
    if (shstrndx != 0) {
      const strs = this.sections[shstrndx];
      if (strs.type != D.SHT_STRTAB || !strs.hasData) {
        return fail(Err.ELF_BAD_SECTION, "section " + shstrndx.toString() + ": the section-name table (e_shstrndx) is not a SHT_STRTAB with data");
      }
      for (let i: u32 = 0; i < n; i++) {
        const s = this.sections[i];
        const at = this.str(strs.offset, strs.size, s.name);
        if (at < 0) {
          return fail(Err.ELF_BAD_STRING, "section " + i.toString() + ": sh_name " + s.name.toString() + " is not a string in the section-name table (size " + strs.size.toString() + ")");
        }
        s.name = <u32>at;
        s.nameLen = foundLen;
      }
    } else {
      for (let i: u32 = 0; i < n; i++) {
        this.sections[i].name = 0;
        this.sections[i].nameLen = 0;
      }
    }
    return 0;
  }

  /** Index of the section with this name, or -1. */
  sectionByName(name: usize, len: u32): i32 {
    const secs = this.sections;
    for (let i = 0; i < secs.length; i++) {
      const s = unchecked(secs[i]);
      if (s.nameLen == len && memory.compare(this.bytes.ptr(s.name), name, len) == 0) return i;
    }
    return -1;
  }

  sectionByNameStr(name: string): i32 {
    const buf = String.UTF8.encode(name);
    return this.sectionByName(changetype<usize>(buf), <u32>buf.byteLength);
  }

  private tablesFromSections(): i32 {
    const secs = this.sections;
    const n = <u32>secs.length;
    for (let i: u32 = 0; i < n; i++) {
      const s = secs[i];
      if (s.type == D.SHT_SYMTAB || s.type == D.SHT_DYNSYM) {
        const kind = s.type == D.SHT_SYMTAB ? SYMTAB : DYNSYM;
        if (this.symtabs[kind] !== null) {
          return fail(Err.ELF_BAD_SECTION, "section " + i.toString() + ": a second " + (kind == SYMTAB ? "SHT_SYMTAB" : "SHT_DYNSYM") + " section");
        }
        if (s.size % D.SYM_SIZE != 0) {
          return fail(Err.ELF_BAD_SYMBOL, "section " + i.toString() + ": symbol table size " + s.size.toString() + " is not a multiple of 24");
        }
        const strs = secs[s.link];
        if (strs.type != D.SHT_STRTAB || !strs.hasData) {
          return fail(Err.ELF_BAD_SECTION, "section " + i.toString() + ": sh_link " + s.link.toString() + " is not a string table");
        }
        const t = new SymTable();
        t.kind = kind;
        t.offset = s.offset;
        t.count = <u32>(s.size / D.SYM_SIZE);
        t.strOffset = strs.offset;
        t.strSize = strs.size;
        t.firstGlobal = s.info;
        t.section = <i32>i;
        this.symtabs[kind] = t;
      }
    }
    // Extended section indices, .gnu.version and the version definitions and needs.
    for (let i: u32 = 0; i < n; i++) {
      const s = secs[i];
      if (s.type == D.SHT_SYMTAB_SHNDX) {
        const t = this.symtabs[SYMTAB];
        if (t === null || t.section != <i32>s.link || s.size < <u64>t.count * 4) {
          return fail(Err.ELF_BAD_SECTION, "section " + i.toString() + ": SHT_SYMTAB_SHNDX does not match the symbol table it links to");
        }
        t.shndx = <i64>s.offset;
      } else if (s.type == D.SHT_GNU_VERSYM) {
        const t = this.symtabs[DYNSYM];
        if (t === null || s.size < <u64>t.count * 2) {
          return fail(Err.ELF_BAD_VERSION, "section " + i.toString() + ": .gnu.version has " + (s.size / 2).toString() + " entries for " + (t === null ? "no" : t.count.toString()) + " dynamic symbols");
        }
        t.versym = <i64>s.offset;
      }
    }
    for (let i: u32 = 0; i < n; i++) {
      const s = secs[i];
      if (s.type != D.SHT_GNU_VERDEF && s.type != D.SHT_GNU_VERNEED) continue;
      const strs = secs[s.link];
      if (strs.type != D.SHT_STRTAB || !strs.hasData) {
        return fail(Err.ELF_BAD_VERSION, "section " + i.toString() + ": version section's sh_link is not a string table");
      }
      const r = s.type == D.SHT_GNU_VERDEF
        ? this.readVerdef(s.offset, s.size, s.info, strs.offset, strs.size)
        : this.readVerneed(s.offset, s.size, s.info, strs.offset, strs.size);
      if (r != 0) return r;
    }
    // Relocation tables.
    for (let i: u32 = 0; i < n; i++) {
      const s = secs[i];
      if (s.type == D.SHT_REL) {
        return fail(Err.ELF_UNSUPPORTED, "section " + i.toString() + ": SHT_REL relocations are not used on x86-64");
      }
      if (s.type == D.SHT_RELR) {
        if (s.size % D.RELR_SIZE != 0) return fail(Err.ELF_BAD_RELOCATION, "section " + i.toString() + ": SHT_RELR size " + s.size.toString() + " is not a multiple of 8");
        this.relas.push(this.relrTable(s.offset, <u32>(s.size / D.RELR_SIZE), <i32>i));
        continue;
      }
      if (s.type != D.SHT_RELA) continue;
      if (s.size % D.RELA_SIZE != 0) {
        return fail(Err.ELF_BAD_RELOCATION, "section " + i.toString() + ": SHT_RELA size " + s.size.toString() + " is not a multiple of 24");
      }
      const t = new RelaTable();
      t.kind = RELA_SECTION;
      t.offset = s.offset;
      t.count = <u32>(s.size / D.RELA_SIZE);
      t.section = <i32>i;
      const hasTarget = (s.flags & D.SHF_INFO_LINK) != 0 || this.type == D.ET_REL;
      if (hasTarget && s.info >= n) return fail(Err.ELF_BAD_RELOCATION, "section " + i.toString() + ": sh_info " + s.info.toString() + " is not a section");
      t.target = hasTarget ? <i32>s.info : -1;
      if (s.link == 0) {
        t.symtab = DYNSYM; // no symbols referenced (e.g. only R_X86_64_RELATIVE)
      } else {
        const st = secs[s.link];
        if (st.type == D.SHT_SYMTAB) t.symtab = SYMTAB;
        else if (st.type == D.SHT_DYNSYM) t.symtab = DYNSYM;
        else return fail(Err.ELF_BAD_RELOCATION, "section " + i.toString() + ": sh_link " + s.link.toString() + " is not a symbol table");
      }
      const r = this.checkRelaSymbols(t, "section " + i.toString());
      if (r != 0) return r;
      this.relas.push(t);
    }
    // Dynamic section (for DT_NEEDED, DT_SONAME; the tables came from sections).
    for (let i: u32 = 0; i < n; i++) {
      const s = secs[i];
      if (s.type == D.SHT_DYNAMIC && s.hasData) {
        this.dynamicOffset = <i64>s.offset;
        this.dynamicCount = <u32>(s.size / D.DYN_SIZE);
        break;
      }
    }
    return this.checkSymbols();
  }

  /** Every r_sym of the table indexes its symbol table (0 when that table is absent). */
  private checkRelaSymbols(t: RelaTable, what: string): i32 {
    const st = this.symtabs[t.symtab];
    const nsym: u32 = st === null ? 0 : st.count;
    const b = this.bytes;
    for (let j: u32 = 0; j < t.count; j++) {
      const sym = <u32>(b.u64(t.offset + <u64>j * D.RELA_SIZE + 8) >> 32);
      if (sym != 0 && sym >= nsym) {
        return fail(Err.ELF_BAD_RELOCATION, what + ": relocation " + j.toString() + " refers to symbol " + sym.toString() + " of a table with " + nsym.toString() + " symbols");
      }
    }
    return 0;
  }

  /** Names and section indices of every symbol are valid (so accessors need no checks). */
  private checkSymbols(): i32 {
    const nsec = <u32>this.sections.length;
    const base = this.bytes.base;
    for (let k: u32 = 0; k < 2; k++) {
      const t = this.symtabs[k];
      if (t === null) continue;
      const what = k == SYMTAB ? ".symtab" : ".dynsym";
      const lens = new StaticArray<u32>(<i32>t.count);
      t.nameLens = lens;
      const syms = base + <usize>t.offset;
      // Names: measured by scanning within the budget (see str()), past it through str().
      let i: u32 = 0;
      while (true) {
        i = scanNames(syms, i, t.count, base + <usize>t.strOffset, t.strSize, changetype<usize>(lens), this.scanBudget);
        this.scanBudget = scanLeft;
        if (i >= t.count) break;
        const name = load<u32>(syms + <usize>i * D.SYM_SIZE);
        if (this.str(t.strOffset, t.strSize, name) < 0) {
          return fail(Err.ELF_BAD_STRING, what + " symbol " + i.toString() + ": st_name " + name.toString() + " is not a string in its string table (size " + t.strSize.toString() + ")");
        }
        unchecked((lens[i] = foundLen));
        i++;
      }
      // Section and version indices: the first bad symbol, if any, then its reason.
      const xindex: usize = t.shndx < 0 ? 0 : base + <usize>t.shndx;
      const versym: usize = t.versym < 0 ? 0 : base + <usize>t.versym;
      const bad = checkIndices(syms, t.count, nsec, xindex, versym, changetype<usize>(this.versionSlot), <u32>this.versionSlot.length);
      if (bad < t.count) {
        const b = this.bytes;
        const o = t.offset + <u64>bad * D.SYM_SIZE;
        const shndx = b.u16(o + 6);
        if (shndx == D.SHN_XINDEX) {
          if (t.shndx < 0) return fail(Err.ELF_BAD_SYMBOL, what + " symbol " + bad.toString() + ": SHN_XINDEX without a SHT_SYMTAB_SHNDX section");
          if (b.u32(<u64>t.shndx + <u64>bad * 4) >= nsec) {
            return fail(Err.ELF_BAD_SYMBOL, what + " symbol " + bad.toString() + ": extended section index is not a section");
          }
        } else if (shndx < D.SHN_LORESERVE && nsec != 0 && <u32>shndx >= nsec) {
          return fail(Err.ELF_BAD_SYMBOL, what + " symbol " + bad.toString() + ": st_shndx " + shndx.toString() + " is not a section (there are " + nsec.toString() + ")");
        }
        const v = b.u16(<u64>t.versym + <u64>bad * 2) & ~D.VERSYM_HIDDEN;
        return fail(Err.ELF_BAD_VERSION, what + " symbol " + bad.toString() + ": version index " + v.toString() + " is not defined in .gnu.version_d or _r");
      }
    }
    this.buildVersionWords();
    return 0;
  }

  /** Per version index, the four words elf_symbols writes (see versionWords). */
  private buildVersionWords(): void {
    const n = this.versionSlot.length;
    const w = new StaticArray<u32>(n * 4);
    for (let k = 0; k < n; k++) {
      const v = this.versionOf(<u16>k);
      if (v === null) continue;
      w[4 * k] = <u32>this.bytes.ptr(v.name);
      w[4 * k + 1] = v.nameLen;
      if (!v.isDef) {
        w[4 * k + 2] = <u32>this.bytes.ptr(v.file);
        w[4 * k + 3] = v.fileLen;
      }
    }
    this.versionWords = w;
  }


  // ---- symbol versions ----------------------------------------------------------

  /** `j` < 0: verdef entry i; else verneed entry i, aux j (their names, in messages only: built on failure). */
  private addVersion(v: Version, i: u32, j: i32): i32 {
    if (<u32>v.index >= D.MAX_VERSIONS) return fail(Err.ELF_BAD_VERSION, versionWhat(i, j) + ": version index " + v.index.toString() + " is absurd");
    if (<i32>v.index >= this.versionSlot.length) {
      // Grown geometrically: indices rising one by one must not copy n^2/2 entries.
      const grown = new StaticArray<u16>(max(<i32>v.index + 1, this.versionSlot.length * 2));
      for (let i = 0; i < this.versionSlot.length; i++) grown[i] = this.versionSlot[i];
      this.versionSlot = grown;
    }
    if (this.versionSlot[v.index] != 0) {
      // A verdef and a verneed entry may not share an index; a repeat is malformed.
      return fail(Err.ELF_BAD_VERSION, versionWhat(i, j) + ": version index " + v.index.toString() + " is defined twice");
    }
    this.versions.push(v);
    this.versionSlot[v.index] = <u16>this.versions.length;
    return 0;
  }

  versionOf(index: u16): Version | null {
    if (<i32>index >= this.versionSlot.length) return null;
    const slot = unchecked(this.versionSlot[index]);
    return slot == 0 ? null : unchecked(this.versions[<i32>slot - 1]); // slots are set to pushed positions only
  }

  // Elf64_Verdef chain: `count` entries (sh_info / DT_VERDEFNUM), each vd_next bytes after the last.
  private readVerdef(off: u64, size: u64, count: u32, strOff: u64, strSize: u64): i32 {
    const b = this.bytes;
    if (count > D.MAX_VERSIONS) return fail(Err.ELF_BAD_VERSION, ".gnu.version_d: count " + count.toString() + " is absurd");
    let p = off;
    for (let i: u32 = 0; i < count; i++) {
      if (p < off || !b.inRange(p, D.VERDEF_SIZE) || p + D.VERDEF_SIZE > off + size) return fail(Err.ELF_BAD_VERSION, versionWhat(i, -1) + ": at " + hex(p) + " lies outside the section");
      const flags = b.u16(p + 2);
      const ndx = b.u16(p + 4);
      const aux = b.u32(p + 12);
      const next = b.u32(p + 16);
      const a = p + aux;
      if (!b.inRange(a, D.VERDAUX_SIZE) || a + D.VERDAUX_SIZE > off + size) return fail(Err.ELF_BAD_VERSION, versionWhat(i, -1) + ": vd_aux " + aux.toString() + " lies outside the section");
      const at = this.str(strOff, strSize, b.u32(a));
      if (at < 0) return fail(Err.ELF_BAD_STRING, versionWhat(i, -1) + ": vda_name is not a string in the linked string table");
      const v = new Version();
      v.index = ndx & ~D.VERSYM_HIDDEN;
      v.name = <u32>at;
      v.nameLen = foundLen;
      v.isDef = true;
      v.isBase = (flags & D.VER_FLG_BASE) != 0;
      const r = this.addVersion(v, i, -1);
      if (r != 0) return r;
      if (next == 0) break;
      p += next;
    }
    return 0;
  }

  // Elf64_Verneed chain: per needed file, vn_cnt Vernaux entries, each naming a version index.
  private readVerneed(off: u64, size: u64, count: u32, strOff: u64, strSize: u64): i32 {
    const b = this.bytes;
    if (count > D.MAX_VERSIONS) return fail(Err.ELF_BAD_VERSION, ".gnu.version_r: count " + count.toString() + " is absurd");
    const end = off + size;
    let p = off;
    let budget: u32 = D.MAX_VERSIONS; // total Vernaux entries: bounds vn_cnt lies
    for (let i: u32 = 0; i < count; i++) {
      if (p < off || !b.inRange(p, D.VERNEED_SIZE) || p + D.VERNEED_SIZE > end) return fail(Err.ELF_BAD_VERSION, versionWhat(i, -2) + ": at " + hex(p) + " lies outside the section");
      const cnt = <u32>b.u16(p + 2);
      const file = this.str(strOff, strSize, b.u32(p + 4));
      if (file < 0) return fail(Err.ELF_BAD_STRING, versionWhat(i, -2) + ": vn_file is not a string in the linked string table");
      const fileLen = foundLen;
      let a = p + <u64>b.u32(p + 8);
      for (let j: u32 = 0; j < cnt; j++) {
        if (budget-- == 0) return fail(Err.ELF_BAD_VERSION, versionWhat(i, -2) + ": too many version requirements");
        if (a < off || !b.inRange(a, D.VERNAUX_SIZE) || a + D.VERNAUX_SIZE > end) return fail(Err.ELF_BAD_VERSION, versionWhat(i, <i32>j) + ": at " + hex(a) + " lies outside the section");
        const at = this.str(strOff, strSize, b.u32(a + 8));
        if (at < 0) return fail(Err.ELF_BAD_STRING, versionWhat(i, <i32>j) + ": vna_name is not a string in the linked string table");
        const v = new Version();
        v.index = b.u16(a + 6) & ~D.VERSYM_HIDDEN;
        v.name = <u32>at;
        v.nameLen = foundLen;
        v.file = <u32>file;
        v.fileLen = fileLen;
        const r = this.addVersion(v, i, <i32>j);
        if (r != 0) return r;
        const next = b.u32(a + 12);
        if (next == 0) break;
        a += next;
      }
      const next = b.u32(p + 12);
      if (next == 0) break;
      p += next;
    }
    return 0;
  }

  // ---- tables from the dynamic segment (images, files without section headers) ----

  private dyn(tag: i64): u64 {
    // Last-wins would be as valid; glibc takes the first, so do we.
    const b = this.bytes;
    for (let i: u32 = 0; i < this.dynamicCount; i++) {
      const o = <u64>this.dynamicOffset + <u64>i * D.DYN_SIZE;
      if (b.i64(o) == tag) return b.u64(o + 8);
    }
    return 0;
  }

  private hasDyn(tag: i64): bool {
    const b = this.bytes;
    for (let i: u32 = 0; i < this.dynamicCount; i++) {
      if (b.i64(<u64>this.dynamicOffset + <u64>i * D.DYN_SIZE) == tag) return true;
    }
    return false;
  }

  private findDynamic(): i32 {
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s.type != D.PT_DYNAMIC) continue;
      const off = this.segmentOffset(s);
      if (off < 0) return fail(Err.ELF_BAD_DYNAMIC, "PT_DYNAMIC: " + hex(s.filesz) + " bytes at " + hex(this.isImage ? s.vaddr : s.offset) + " are not in the input");
      this.dynamicOffset = off;
      // The array ends at DT_NULL or at the end of the segment, whichever comes first.
      const max = <u32>(s.filesz / D.DYN_SIZE);
      let n: u32 = 0;
      while (n < max && this.bytes.i64(<u64>off + <u64>n * D.DYN_SIZE) != D.DT_NULL) n++;
      this.dynamicCount = n;
      return 0;
    }
    return 0;
  }

  private tablesFromDynamic(): i32 {
    let r = this.findDynamic();
    if (r != 0 || this.dynamicOffset < 0) return r;
    const b = this.bytes;
    const symtabAddr = this.dyn(D.DT_SYMTAB);
    const strtabAddr = this.dyn(D.DT_STRTAB);
    const strSize = this.dyn(D.DT_STRSZ);
    if (this.hasDyn(D.DT_SYMENT) && this.dyn(D.DT_SYMENT) != D.SYM_SIZE) {
      return fail(Err.ELF_BAD_DYNAMIC, "dynamic section: DT_SYMENT " + this.dyn(D.DT_SYMENT).toString() + " is not 24");
    }
    let strOff: i64 = -1;
    if (strtabAddr != 0) {
      strOff = this.addrToOffset(strtabAddr, strSize);
      if (strOff < 0) return fail(Err.ELF_BAD_DYNAMIC, "dynamic section: DT_STRTAB " + hex(strtabAddr) + " with DT_STRSZ " + hex(strSize) + " is not in the input");
    }
    if (symtabAddr != 0) {
      if (strOff < 0) return fail(Err.ELF_BAD_DYNAMIC, "dynamic section: DT_SYMTAB without DT_STRTAB");
      const count = this.dynsymCount(symtabAddr);
      if (count < 0) return <i32>(-count);
      const symOff = this.addrToOffset(symtabAddr, <u64>count * D.SYM_SIZE);
      if (symOff < 0) return fail(Err.ELF_BAD_DYNAMIC, "dynamic section: DT_SYMTAB " + hex(symtabAddr) + " with " + count.toString() + " symbols is not in the input");
      const t = new SymTable();
      t.kind = DYNSYM;
      t.offset = <u64>symOff;
      t.count = <u32>count;
      t.strOffset = <u64>strOff;
      t.strSize = strSize;
      const versym = this.dyn(D.DT_VERSYM);
      if (versym != 0) {
        const vo = this.addrToOffset(versym, <u64>count * 2);
        if (vo < 0) return fail(Err.ELF_BAD_VERSION, "dynamic section: DT_VERSYM " + hex(versym) + " is not in the input");
        t.versym = vo;
      }
      this.symtabs[DYNSYM] = t;
      const verdef = this.dyn(D.DT_VERDEF);
      if (verdef != 0) {
        const n = <u32>this.dyn(D.DT_VERDEFNUM);
        const vo = this.addrToOffset(verdef, D.VERDEF_SIZE);
        if (vo < 0) return fail(Err.ELF_BAD_VERSION, "dynamic section: DT_VERDEF " + hex(verdef) + " is not in the input");
        r = this.readVerdef(<u64>vo, b.length - <u64>vo, n, <u64>strOff, strSize);
        if (r != 0) return r;
      }
      const verneed = this.dyn(D.DT_VERNEED);
      if (verneed != 0) {
        const n = <u32>this.dyn(D.DT_VERNEEDNUM);
        const vo = this.addrToOffset(verneed, D.VERNEED_SIZE);
        if (vo < 0) return fail(Err.ELF_BAD_VERSION, "dynamic section: DT_VERNEED " + hex(verneed) + " is not in the input");
        r = this.readVerneed(<u64>vo, b.length - <u64>vo, n, <u64>strOff, strSize);
        if (r != 0) return r;
      }
    }
    r = this.dynRela(D.DT_RELA, D.DT_RELASZ, RELA_DYN, "DT_RELA");
    if (r != 0) return r;
    const relr = this.dyn(D.DT_RELR);
    if (relr != 0) {
      const size = this.dyn(D.DT_RELRSZ);
      const off = size % D.RELR_SIZE == 0 ? this.addrToOffset(relr, size) : -1;
      if (off < 0) return fail(Err.ELF_BAD_RELOCATION, "dynamic section: DT_RELR " + hex(relr) + " with size " + hex(size) + " is not in the input");
      this.relas.push(this.relrTable(<u64>off, <u32>(size / D.RELR_SIZE), -1));
    }
    if (this.hasDyn(D.DT_JMPREL)) {
      if (this.hasDyn(D.DT_PLTREL) && this.dyn(D.DT_PLTREL) != <u64>D.DT_RELA) {
        return fail(Err.ELF_BAD_DYNAMIC, "dynamic section: DT_PLTREL is not DT_RELA");
      }
      r = this.dynRela(D.DT_JMPREL, D.DT_PLTRELSZ, RELA_PLT, "DT_JMPREL");
      if (r != 0) return r;
    }
    return this.checkSymbols();
  }

  private relrTable(off: u64, words: u32, section: i32): RelaTable {
    const t = new RelaTable();
    t.kind = RELR;
    t.offset = off;
    t.words = words;
    t.count = relrCount(this.bytes, off, words);
    t.section = section;
    return t;
  }

  private dynRela(tag: i64, sizeTag: i64, kind: u32, what: string): i32 {
    const addr = this.dyn(tag);
    if (addr == 0) return 0;
    const size = this.dyn(sizeTag);
    if (size % D.RELA_SIZE != 0) return fail(Err.ELF_BAD_RELOCATION, "dynamic section: " + what + " size " + size.toString() + " is not a multiple of 24");
    const off = this.addrToOffset(addr, size);
    if (off < 0) return fail(Err.ELF_BAD_RELOCATION, "dynamic section: " + what + " " + hex(addr) + " with size " + hex(size) + " is not in the input");
    const t = new RelaTable();
    t.kind = kind;
    t.offset = <u64>off;
    t.count = <u32>(size / D.RELA_SIZE);
    t.symtab = DYNSYM;
    const r = this.checkRelaSymbols(t, "dynamic section " + what);
    if (r != 0) return r;
    this.relas.push(t);
    return 0;
  }

  // ---- the number of dynamic symbols ----------------------------------------------
  //
  // Without section headers nothing states how many entries .dynsym has (there is no
  // DT_SYMSZ). What the dynamic section gives, each a LOWER bound on the count:
  //
  //   DT_HASH (SysV, gABI "Hash Table"): nbucket u32, nchain u32, bucket[nbucket] u32,
  //     chain[nchain] u32. nchain equals the number of symbols: exact.
  //
  //   DT_GNU_HASH (https://sourceware.org/glibc/wiki/ and
  //   https://flapenguin.me/elf-dt-gnu-hash):
  //     nbuckets u32, symoffset u32, bloom_size u32, bloom_shift u32,
  //     bloom[bloom_size] u64, buckets[nbuckets] u32, chain[] u32
  //     Only symbols symoffset.. are hashed (the linker sorts them by bucket); chain[i -
  //     symoffset] holds symbol i's hash with bit 0 set on the last symbol of a bucket.
  //     buckets[b] is the first symbol of bucket b, 0 for an empty bucket. So the hashed
  //     symbols end where the chain of the highest bucket start ends. Symbols 1..symoffset-1
  //     are not hashed: the undefined imports (and anything else not exported).
  //     An executable that exports nothing (a non-PIE program calling puts and malloc)
  //     has symoffset 1 and only empty buckets: the GNU hash says "1" while .dynsym holds
  //     every import after symbol 0. The hash alone undercounts such modules.
  //
  //   DT_RELA / DT_JMPREL: r_sym = r_info >> 32 indexes .dynsym, so the highest one + 1.
  //   (DT_RELR entries are relative relocations: they name no symbol.)
  //
  //   DT_VERSYM (.gnu.version): one u16 per .dynsym entry, same index space. Its size is
  //     not stated either, but when a known table follows it (GNU ld: .gnu.version_d/_r;
  //     lld: the same), the room between them is the array plus zero padding; ld writes 0
  //     (VER_NDX_LOCAL) only for symbol 0 and local symbols (which come first), 1 or more
  //     for every global, so the last non-zero entry + 1 is a lower bound too. An import
  //     no relocation names (gcc -Wl,-u,exit) is counted only by this one.
  //
  // The count is the largest of these, and it must fit in the room the symbols have: from
  // DT_SYMTAB to the nearest known table after it in the same PT_LOAD (DT_STRTAB follows
  // .dynsym with GNU ld, .gnu.version with lld), or to the end of that PT_LOAD's bytes.
  //
  //   GNU ld:  .hash .gnu.hash .dynsym .dynstr .gnu.version .gnu.version_d .gnu.version_r .rela.dyn .rela.plt
  //   lld:     .dynsym .gnu.version .gnu.version_r .gnu.hash .hash .dynstr .rela.dyn .rela.plt

  /** Input offset of the end of the PT_LOAD file bytes that hold input offset `off` (the input's end when none does). */
  private loadEnd(off: u64): u64 {
    const len = this.bytes.length;
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = unchecked(segs[i]);
      if (s.type != D.PT_LOAD) continue;
      if (this.isImage) {
        const v = this.firstVaddr + off; // image offsets are link-time vaddrs - firstVaddr
        if (v >= s.vaddr && v - s.vaddr < s.filesz) return min(s.vaddr + s.filesz - this.firstVaddr, len);
      } else if (off >= s.offset && off - s.offset < s.filesz) {
        return min(s.offset + s.filesz, len);
      }
    }
    return len;
  }

  /** Whether the last roomEnd() was bounded by a known table (rather than by a segment's end). */
  private roomByTable: bool = false;

  /**
   * End (input offset) of the room of a table at input offset `off`: the nearest table
   * the dynamic section or the program headers place after it within its PT_LOAD, or the
   * end of that PT_LOAD's bytes (roomByTable tells which).
   */
  private roomEnd(off: u64): u64 {
    let end = this.loadEnd(off);
    this.roomByTable = false;
    const b = this.bytes;
    for (let i: u32 = 0; i < this.dynamicCount; i++) {
      const o = <u64>this.dynamicOffset + <u64>i * D.DYN_SIZE;
      const tag = b.i64(o);
      if (!isTableTag(tag)) continue;
      const at = this.addrToOffset(b.u64(o + 8), 1);
      if (at >= 0 && <u64>at > off && <u64>at < end) {
        end = <u64>at;
        this.roomByTable = true;
      }
    }
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = unchecked(segs[i]);
      if (s.type != D.PT_DYNAMIC && s.type != D.PT_NOTE && s.type != D.PT_INTERP && s.type != D.PT_GNU_EH_FRAME) continue;
      const at = this.isImage ? (s.vaddr >= this.firstVaddr && this.bytes.inRange(s.vaddr - this.firstVaddr, 1) ? <i64>(s.vaddr - this.firstVaddr) : -1) : this.addrToOffset(s.vaddr, 1);
      if (at >= 0 && <u64>at > off && <u64>at < end) {
        end = <u64>at;
        this.roomByTable = true;
      }
    }
    return end;
  }

  /** Highest r_sym + 1 in a DT_RELA/DT_JMPREL table (0: none, or the table is not readable: dynRela reports that); the relocation in relaMaxAt. */
  private relaMaxAt: u32 = 0;
  private relaSymEnd(tag: i64, sizeTag: i64): u64 {
    const addr = this.dyn(tag);
    if (addr == 0) return 0;
    const size = this.dyn(sizeTag);
    if (size % D.RELA_SIZE != 0) return 0;
    const off = this.addrToOffset(addr, size);
    if (off < 0) return 0;
    const n = size / D.RELA_SIZE;
    const b = this.bytes;
    let top: u64 = 0;
    for (let j: u64 = 0; j < n; j++) {
      const sym = b.u64(<u64>off + j * D.RELA_SIZE + 8) >> 32;
      if (sym + 1 > top) {
        top = sym + 1;
        this.relaMaxAt = <u32>j;
      }
    }
    return top == 1 ? 0 : top; // r_sym 0 only: no symbol named
  }

  /**
   * Number of .dynsym entries (see above): the largest of DT_HASH's nchain, the GNU hash's
   * end, the highest r_sym + 1 of DT_RELA/DT_JMPREL and the last global's .gnu.version
   * entry + 1, within the room after DT_SYMTAB. Returns -code on failure.
   */
  private dynsymCount(symtabAddr: u64): i64 {
    const b = this.bytes;
    const hash = this.dyn(D.DT_HASH);
    const gnu = this.dyn(D.DT_GNU_HASH);
    if (hash == 0 && gnu == 0) {
      return -<i64>fail(Err.ELF_BAD_HASH, "dynamic section: DT_SYMTAB without DT_HASH or DT_GNU_HASH: the number of dynamic symbols is unknown");
    }
    const symOff = this.addrToOffset(symtabAddr, D.SYM_SIZE);
    if (symOff < 0) return -<i64>fail(Err.ELF_BAD_DYNAMIC, "dynamic section: DT_SYMTAB " + hex(symtabAddr) + " is not in the input");
    const roomEnd = this.roomEnd(<u64>symOff);
    const room = (roomEnd - <u64>symOff) / D.SYM_SIZE;
    const roomText = ": only " + room.toString() + " symbols fit between DT_SYMTAB " + hex(symtabAddr) + " and " + hex(this.offsetToAddr(roomEnd - 1) + 1);
    let count: u64 = 0;
    if (hash != 0) {
      const o = this.addrToOffset(hash, 8);
      if (o < 0) return -<i64>fail(Err.ELF_BAD_HASH, "dynamic section: DT_HASH " + hex(hash) + " is not in the input");
      const nchain = <u64>b.u32(<u64>o + 4);
      if (nchain > room) return -<i64>fail(Err.ELF_BAD_HASH, "DT_HASH: nchain " + nchain.toString() + roomText);
      count = nchain;
    }
    if (gnu != 0) {
      const g = this.gnuHashEnd(gnu);
      if (g < 0) return g;
      if (<u64>g > room) return -<i64>fail(Err.ELF_BAD_HASH, "DT_GNU_HASH: the hashed symbols end at " + g.toString() + roomText);
      if (<u64>g > count) count = <u64>g;
    }
    const tags: StaticArray<i64> = [D.DT_RELA, D.DT_RELASZ, D.DT_JMPREL, D.DT_PLTRELSZ];
    for (let k = 0; k < 4; k += 2) {
      const top = this.relaSymEnd(tags[k], tags[k + 1]);
      if (top > room) {
        const what = k == 0 ? "DT_RELA" : "DT_JMPREL";
        return -<i64>fail(Err.ELF_BAD_RELOCATION, "dynamic section " + what + ": relocation " + this.relaMaxAt.toString() + " refers to symbol " + (top - 1).toString() + roomText);
      }
      if (top > count) count = top;
    }
    const versym = this.dyn(D.DT_VERSYM);
    const vo = versym != 0 ? this.addrToOffset(versym, 2) : -1;
    if (vo >= 0) {
      const vEnd = this.roomEnd(<u64>vo);
      if (this.roomByTable) {
        // The last non-zero entry; entries past the symbols' room mean the gap is not only .gnu.version.
        let last: u64 = 0;
        const n = (vEnd - <u64>vo) / 2;
        for (let i: u64 = 0; i < n; i++) if (b.u16(<u64>vo + i * 2) != 0) last = i + 1;
        if (last <= room && last > count) count = last;
      }
    }
    return <i64>count;
  }

  /** DT_GNU_HASH: one past the last hashed symbol (symoffset when no bucket is used), or -code. */
  private gnuHashEnd(gnu: u64): i64 {
    const b = this.bytes;
    const o = this.addrToOffset(gnu, 16);
    if (o < 0) return -<i64>fail(Err.ELF_BAD_HASH, "dynamic section: DT_GNU_HASH " + hex(gnu) + " is not in the input");
    const nbuckets = <u64>b.u32(<u64>o);
    const symoffset = <u64>b.u32(<u64>o + 4);
    const bloomSize = <u64>b.u32(<u64>o + 8);
    const bucketsOff = <u64>o + 16 + bloomSize * 8;
    if (!b.inRange(bucketsOff, nbuckets * 4)) {
      return -<i64>fail(Err.ELF_BAD_HASH, "DT_GNU_HASH: " + nbuckets.toString() + " buckets after a bloom filter of " + bloomSize.toString() + " words run past the end of the input");
    }
    let maxSym: u64 = 0;
    for (let i: u64 = 0; i < nbuckets; i++) {
      const s = <u64>b.u32(bucketsOff + i * 4);
      if (s > maxSym) maxSym = s;
    }
    if (maxSym == 0) return <i64>symoffset; // no hashed symbols
    if (maxSym < symoffset) return -<i64>fail(Err.ELF_BAD_HASH, "DT_GNU_HASH: bucket symbol " + maxSym.toString() + " is below symoffset " + symoffset.toString());
    const chainOff = bucketsOff + nbuckets * 4;
    // Walk the last chain to its end; the input length bounds the walk.
    let i = maxSym;
    while (true) {
      const co = chainOff + (i - symoffset) * 4;
      if (!b.inRange(co, 4)) return -<i64>fail(Err.ELF_BAD_HASH, "DT_GNU_HASH: chain of symbol " + maxSym.toString() + " runs past the end of the input");
      if ((b.u32(co) & 1) != 0) break;
      i++;
    }
    return <i64>(i + 1);
  }

  // ---- notes, build-id, .eh_frame ------------------------------------------------

  private findBuildId(): i32 {
    const secs = this.sections;
    for (let i = 0; i < secs.length; i++) {
      const s = secs[i];
      if (s.type == D.SHT_NOTE && s.hasData) {
        const r = this.scanNotes(s.offset, s.size, s.align, "section " + i.toString());
        if (r != 0 || this.buildId >= 0) return r;
      }
    }
    if (secs.length > 0) return 0;
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s.type != D.PT_NOTE) continue;
      const off = this.segmentOffset(s);
      if (off < 0) return fail(Err.ELF_BAD_NOTE, "program header " + i.toString() + ": PT_NOTE is not in the input");
      const r = this.scanNotes(<u64>off, s.filesz, s.align, "program header " + i.toString());
      if (r != 0 || this.buildId >= 0) return r;
    }
    return 0;
  }

  // Elf64_Nhdr: namesz u32, descsz u32, type u32, then name and desc, each padded to the note
  // alignment (4, or 8 for .note.gnu.property), counted from the start of the container.
  private scanNotes(off: u64, size: u64, align: u64, what: string): i32 {
    const b = this.bytes;
    const a: u64 = align == 8 ? 8 : 4;
    let p: u64 = 0;
    while (p + 12 <= size) {
      const namesz = <u64>b.u32(off + p);
      const descsz = <u64>b.u32(off + p + 4);
      const type = b.u32(off + p + 8);
      const nameOff = p + 12;
      // Padding is to the alignment relative to the container: desc at align(p + 12 + namesz).
      const descOff = (nameOff + namesz + a - 1) & ~(a - 1);
      const end = (descOff + descsz + a - 1) & ~(a - 1);
      if (namesz > size || descsz > size || descOff + descsz > size || nameOff + namesz > size) {
        return fail(Err.ELF_BAD_NOTE, what + ": note at " + hex(off + p) + " (namesz " + namesz.toString() + ", descsz " + descsz.toString() + ") runs past its container");
      }
      if (type == D.NT_GNU_BUILD_ID && namesz == 4 && b.u32(off + nameOff) == 0x00554e47 /* "GNU\0" */) {
        this.buildId = <i64>(off + descOff);
        this.buildIdLen = <u32>descsz;
        return 0;
      }
      p = end;
    }
    return 0;
  }

  private findEhFrame(): i32 {
    if (this.sections.length > 0) {
      const e = this.sectionByNameStr(".eh_frame");
      if (e >= 0) {
        const s = this.sections[e];
        if (s.hasData) {
          this.ehFrameAddr = s.addr;
          this.ehFrameOffset = <i64>s.offset;
          this.ehFrameSize = s.size;
        }
      }
      const h = this.sectionByNameStr(".eh_frame_hdr");
      if (h >= 0) {
        const s = this.sections[h];
        if (s.hasData) {
          this.ehFrameHdrAddr = s.addr;
          this.ehFrameHdrOffset = <i64>s.offset;
          this.ehFrameHdrSize = s.size;
        }
      }
      return 0;
    }
    // Program headers only: PT_GNU_EH_FRAME is .eh_frame_hdr, whose eh_frame_ptr gives .eh_frame.
    //   .eh_frame_hdr: version u8 (1), eh_frame_ptr_enc u8, fde_count_enc u8, table_enc u8, eh_frame_ptr (encoded), ...
    const segs = this.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s.type != D.PT_GNU_EH_FRAME) continue;
      const off = this.addrToOffset(s.vaddr, s.filesz);
      if (off < 0 || s.filesz < 8) return fail(Err.ELF_BAD_SEGMENT, "program header " + i.toString() + ": PT_GNU_EH_FRAME is not in the input");
      const b = this.bytes;
      if (b.u8(<u64>off) != 1) return fail(Err.ELF_BAD_SEGMENT, "PT_GNU_EH_FRAME: .eh_frame_hdr version " + b.u8(<u64>off).toString() + " is not 1");
      this.ehFrameHdrAddr = this.isImage ? this.base + <u64>off : s.vaddr;
      this.ehFrameHdrOffset = off;
      this.ehFrameHdrSize = s.filesz;
      const enc = b.u8(<u64>off + 1);
      const field = <u64>off + 4;
      let v: u64 = 0;
      const fmt = enc & 0x0f;
      if (fmt == 0x0b || fmt == 0x03) {
        v = fmt == 0x0b ? <u64><i64>b.i32(field) : <u64>b.u32(field);
      } else if ((fmt == 0x0c || fmt == 0x04 || fmt == 0x00) && s.filesz >= 12) {
        v = b.u64(field);
      } else {
        return fail(Err.ELF_UNSUPPORTED, "PT_GNU_EH_FRAME: eh_frame_ptr encoding " + hex(enc) + " is not supported");
      }
      const app = enc & 0x70;
      const fieldAddr = s.vaddr + 4; // link-time address of the field
      if (app == 0x10) v += fieldAddr; // DW_EH_PE_pcrel
      else if (app == 0x30) v += s.vaddr; // DW_EH_PE_datarel: relative to .eh_frame_hdr
      else if (app != 0) return fail(Err.ELF_UNSUPPORTED, "PT_GNU_EH_FRAME: eh_frame_ptr application " + hex(app) + " is not supported");
      // v is a link-time vaddr now; .eh_frame runs to the end of the containing PT_LOAD's file bytes.
      for (let j = 0; j < segs.length; j++) {
        const l = segs[j];
        if (l.type == D.PT_LOAD && v >= l.vaddr && v - l.vaddr < l.filesz) {
          const size = l.filesz - (v - l.vaddr);
          const eo = this.isImage ? (v >= this.firstVaddr && this.bytes.inRange(v - this.firstVaddr, 1) ? <i64>(v - this.firstVaddr) : -1) : this.addrToOffset(v, 1);
          if (eo < 0) break;
          this.ehFrameOffset = eo;
          this.ehFrameSize = min(size, this.bytes.length - <u64>eo);
          this.ehFrameAddr = this.isImage ? this.base + <u64>eo : v;
          break;
        }
      }
      if (this.isImage) {
        this.ehFrameHdrAddr = this.base + <u64>off;
      }
      return 0;
    }
    return 0;
  }

  // ---- symbol accessors (records validated at open) ------------------------------

  @inline symOffset(t: SymTable, i: u32): u64 {
    return t.offset + <u64>i * D.SYM_SIZE;
  }

  /** The section index of symbol i, with SHN_XINDEX resolved. */
  @inline symShndx(t: SymTable, i: u32): u32 {
    const s = this.bytes.u16(this.symOffset(t, i) + 6);
    if (s == D.SHN_XINDEX) return this.bytes.u32(<u64>t.shndx + <u64>i * 4);
    return <u32>s;
  }

  /** The .gnu.version entry of symbol i (hidden bit included), or 1 (global) when there is none. */
  @inline symVersym(t: SymTable, i: u32): u16 {
    if (t.versym < 0) return D.VER_NDX_GLOBAL;
    return this.bytes.u16(<u64>t.versym + <u64>i * 2);
  }

  /** Input offset of the name of symbol i; its length is left in foundLen. */
  @inline symName(t: SymTable, i: u32): u64 {
    // Validated at open, its length measured then (a name is never scanned again).
    foundLen = unchecked(t.nameLens[i]); // i < t.count: every caller checks its range
    return t.strOffset + <u64>this.bytes.u32(this.symOffset(t, i));
  }
}

/**
 * Offset in `b` of the NUL-terminated string at index `idx` of the string table at
 * (tabOff, tabSize), with its length left in foundLen; -1 when idx is outside the table or
 * the string is not terminated inside it.
 */
export function strAt(b: Bytes, tabOff: u64, tabSize: u64, idx: u32): i64 {
  if (<u64>idx >= tabSize) return -1;
  const start = b.base + <usize>(tabOff + <u64>idx);
  const end = b.base + <usize>(tabOff + tabSize);
  let p = start;
  while (p < end && load<u8>(p) != 0) p++;
  if (p == end) return -1;
  foundLen = <u32>(p - start);
  return <i64>(tabOff + <u64>idx);
}
