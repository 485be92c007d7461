// The symbol index: one ELF symbol table (.symtab or .dynsym of an open ElfFile) made
// searchable by name, by address, and for local symbols by source file and position.
//
// Facts it depends on (gABI "Symbol Table", https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.symtab.html):
// - Locals come first (sh_info is the first non-local); in a linked file ld emits them
//   object by object, each object's locals after an STT_FILE symbol naming its source
//   ("a.c"). So a local belongs to the file of the nearest STT_FILE before it; globals
//   have lost their file. Two `static int helper()` in a.c and b.c are told apart by
//   that file, and by their *sympos*: the 1-based position among the locals of the same
//   name in symbol-table order (what kpatch computes for the kernel's livepatch
//   `sympos`; 0 there means "the name is unique").
// - GCC splits functions: `foo.cold` (or `foo.cold.N`, Clang's hot/cold splitting too)
//   is the unlikely part of foo, entered by a jump from foo, never called; `foo.part.N`
//   is the outlined body of a partially inlined foo, called from foo and from copies of
//   foo's head inlined elsewhere. Both are FUNC symbols of their own. The *root* of a
//   piece is the name before its first `.cold`/`.part.N` marker (`foo.part.0.cold` ->
//   foo; `foo.constprop.0.cold` -> foo.constprop.0, a clone being a function of its own),
//   looked up among the locals of the piece's file first, then among global and weak
//   definitions, then any definition. Its kind is its last marker (foo.part.0.cold is
//   cold). The root may not exist (foo inlined everywhere, only foo.part.0 left).
// - ld writes versioned symbols into a linked .symtab as "name@VERSION" / "name@@VERSION"
//   (.dynsym keeps versions in .gnu.version); such a symbol is indexed under its base
//   name, so that a lookup of "memcpy" finds "memcpy@@GLIBC_2.14" too.
// - In an ET_REL file st_value is an offset in section st_shndx; elsewhere it is a
//   link-time virtual address (add the load bias for a runtime address).
//
// Memory (raw, from heap.alloc; n symbols, m address entries):
//
//   names[n]   16 bytes  0 hash u32   4 next u32 (id+1 of the next symbol of this bucket, 0: end)
//                        8 name ptr u32 (into the input)   12 name length u32 (without "@VERSION")
//   buckets[B] u32       id+1 of the first symbol of the bucket, 0: empty; B = 2^k >= n
//   meta[n]    16 bytes  0 file u32 (id+1 of the STT_FILE opening its group, 0: none)
//                        4 sympos u32 (0: not a local)   8 root u32 (id+1, 0: none)
//                       12 piece u32 (bits 0-1 kind: 0 whole, 1 cold, 2 part; bit 2: name may
//                          hold a '.'; bits 3-31: length of the root's name)
//   keys[m]    u64       start address of each function, ascending (ET_REL: shndx << 40 | st_value)
//   ents[m]    16 bytes  0 end u64 (exclusive)   8 id u32   12 up u32 (entry+1 of the innermost
//                          earlier entry that contains this one's start, 0: none)
//
// Names are hashed into chained buckets. Symbols are inserted from the last to the
// first, so every chain, and so the symbols of one name, run in symbol-table order:
// find() returns the first and findNext() the following ones.
//
// The address table holds defined STT_FUNC and STT_GNU_IFUNC symbols (not SHN_ABS, not
// SHN_COMMON). Rules, documented in docs/core-abi.md:
// - An unsized symbol (st_size 0: assembler labels) extends to the next function's start,
//   capped at the end of its section (of its PT_LOAD segment when there are no section
//   headers); it is flagged as guessed. One that would be empty is left out.
// - Symbols with the same range are aliases; the one listed is the best by: sized before
//   guessed, GLOBAL before WEAK before LOCAL, fewer leading underscores, lower index.
// - Overlapping ranges: an address belongs to the innermost function containing it,
//   that is the one starting last at or before it (then the smallest). Entries are
//   sorted by (start asc, end desc, preference asc) so that the last entry starting at
//   or before an address is that answer when it contains the address; when it does not,
//   the `up` links (computed with a stack of open ranges, see nest()) lead to the
//   innermost one that does.
import { ElfFile, SymTable, SYMTAB } from "../elf/file";
import { elfFiles } from "../elf/registry";
import * as D from "../elf/defs";
import { hashName, scanName, scanLen, scanDot, scanAt, sameBytes } from "./hash";
import { radixSort16, RADIX_COUNTS_BYTES } from "./sort";

export const PIECE_WHOLE: u32 = 0;
export const PIECE_COLD: u32 = 1;
export const PIECE_PART: u32 = 2;
const PIECE_DOT: u32 = 4;

const NONE64: u64 = u64.MAX_VALUE;
/** Bits of an ET_REL address key taken by the section offset: key = shndx << 40 | offset. */
export const REL_SHIFT: u64 = 40;

/** Flags of an address lookup. */
export const AT_GUESSED: u32 = 1; // the function is unsized: its end is the next function's start

/**
 * The managed handle object: keeps the ElfFile reachable (for the GC) and checks that
 * its ELF handle is still open. Everything the lookups and the build touch lives in
 * IndexData, an unmanaged object: its methods take no managed references, so they
 * carry none of the incremental GC's shadow-stack bookkeeping.
 */
export class SymIndex {
  file: ElfFile;
  elf: i32;
  table: u32;
  tab: SymTable;
  d: IndexData;

  constructor(file: ElfFile, elf: i32, table: u32, tab: SymTable) {
    this.file = file;
    this.elf = elf;
    this.table = table;
    this.tab = tab;
    const d = new IndexData();
    d.n = tab.count;
    d.isRel = file.type == D.ET_REL;
    d.symBase = file.bytes.base + <usize>tab.offset;
    d.strBase = file.bytes.base + <usize>tab.strOffset;
    d.strEnd = d.strBase + <usize>tab.strSize;
    d.xindex = tab.shndx >= 0 ? file.bytes.base + <usize>tab.shndx : 0;
    // Section (addr, size) and PT_LOAD (vaddr, memsz) ranges, for the ends of unsized functions.
    const secs = file.sections;
    d.nsec = <u32>secs.length;
    d.secs = heap.alloc(max<usize>(<usize>d.nsec << 4, 16));
    for (let i = 0; i < secs.length; i++) {
      const sec = unchecked(secs[i]);
      store<u64>(d.secs + (<usize>i << 4), sec.addr);
      store<u64>(d.secs + (<usize>i << 4), sec.size, 8);
    }
    const segs = file.segments;
    let nl: u32 = 0;
    for (let i = 0; i < segs.length; i++) if (unchecked(segs[i]).type == D.PT_LOAD) nl++;
    d.nload = nl;
    d.loads = heap.alloc(max<usize>(<usize>nl << 4, 16));
    nl = 0;
    for (let i = 0; i < segs.length; i++) {
      const seg = unchecked(segs[i]);
      if (seg.type != D.PT_LOAD) continue;
      store<u64>(d.loads + (<usize>nl << 4), seg.vaddr);
      store<u64>(d.loads + (<usize>nl << 4), seg.memsz, 8);
      nl++;
    }
    this.d = d;
  }

  /** Whether the ELF handle the index reads is still open (its input still allocated). */
  alive(): bool {
    return elfFiles.get(this.elf) === this.file;
  }

  /** Releases the raw memory. */
  dispose(): void {
    this.d.dispose();
  }
}

@final @unmanaged
export class IndexData {
  n: u32 = 0;
  isRel: bool = false;
  symBase: usize = 0; // first Elf64_Sym
  strBase: usize = 0;
  strEnd: usize = 0;
  xindex: usize = 0; // SHT_SYMTAB_SHNDX array, or 0
  nsec: u32 = 0;
  secs: usize = 0; // nsec x (addr u64, size u64)
  nload: u32 = 0;
  loads: usize = 0; // nload x (vaddr u64, memsz u64)

  names: usize = 0;
  buckets: usize = 0;
  mask: u32 = 0;
  meta: usize = 0;

  m: u32 = 0;
  keys: usize = 0;
  ents: usize = 0;

  // GOT/PLT slots (built on first use, see slots.ts)
  slotsBuilt: bool = false;
  slotCount: u32 = 0;
  slotRecs: usize = 0;
  slotHead: usize = 0;

  dispose(): void {
    const ptrs: StaticArray<usize> = [this.names, this.buckets, this.meta, this.keys, this.ents, this.slotRecs, this.slotHead, this.secs, this.loads];
    for (let i = 0; i < ptrs.length; i++) if (ptrs[i] != 0) heap.free(ptrs[i]);
    heap.free(changetype<usize>(this));
  }

  // ---- raw symbol fields ------------------------------------------------------

  @inline sym(id: u32): usize {
    return this.symBase + <usize>id * 24;
  }
  @inline info(id: u32): u8 {
    return load<u8>(this.sym(id), 4);
  }
  @inline type(id: u32): u8 {
    return load<u8>(this.sym(id), 4) & 15;
  }
  @inline bind(id: u32): u8 {
    return load<u8>(this.sym(id), 4) >> 4;
  }
  @inline other(id: u32): u8 {
    return load<u8>(this.sym(id), 5);
  }
  @inline value(id: u32): u64 {
    return load<u64>(this.sym(id), 8);
  }
  @inline size(id: u32): u64 {
    return load<u64>(this.sym(id), 16);
  }
  /** st_shndx with SHN_XINDEX resolved (checked against SHT_SYMTAB_SHNDX at elf_open). */
  @inline shndx(id: u32): u32 {
    const s = <u32>load<u16>(this.sym(id), 6);
    if (s == D.SHN_XINDEX && this.xindex != 0) return load<u32>(this.xindex + (<usize>id << 2));
    return s;
  }
  @inline namePtr(id: u32): usize {
    return <usize>load<u32>(this.names + (<usize>id << 4), 8);
  }
  @inline nameLen(id: u32): u32 {
    return load<u32>(this.names + (<usize>id << 4), 12);
  }
  /** Length of the whole name, "@VERSION" included (nameLen() stops before it). */
  fullNameLen(id: u32): u32 {
    const p = this.namePtr(id);
    let e = p + <usize>this.nameLen(id);
    while (e < this.strEnd && load<u8>(e) != 0) e++;
    return <u32>(e - p);
  }
  @inline fileOf(id: u32): u32 {
    return load<u32>(this.meta + (<usize>id << 4));
  }
  @inline symposOf(id: u32): u32 {
    return load<u32>(this.meta + (<usize>id << 4), 4);
  }
  @inline rootOf(id: u32): u32 {
    return load<u32>(this.meta + (<usize>id << 4), 8);
  }
  @inline pieceOf(id: u32): u32 {
    return load<u32>(this.meta + (<usize>id << 4), 12) & 3;
  }
  @inline rootLenOf(id: u32): u32 {
    return load<u32>(this.meta + (<usize>id << 4), 12) >> 3;
  }
  /** Defined: in a section (SHN_UNDEF is 0; reserved indices other than SHN_XINDEX are not sections). */
  isDefined(id: u32): bool {
    return this.shndx(id) != D.SHN_UNDEF;
  }

  // ---- build ------------------------------------------------------------------

  build(): void {
    this.buildNames();
    this.buildMeta();
    this.buildPieces();
    this.buildAddresses();
  }

  private buildNames(): void {
    const n = this.n;
    let nb: u32 = 16;
    while (nb < n && nb < 0x40000000) nb <<= 1;
    this.mask = nb - 1;
    this.buckets = heap.alloc(<usize>nb << 2);
    memory.fill(this.buckets, 0, <usize>nb << 2);
    this.names = heap.alloc(max<usize>(<usize>n << 4, 16));
    this.meta = heap.alloc(max<usize>(<usize>n << 4, 16));
    memory.fill(this.meta, 0, <usize>n << 4);
    const names = this.names;
    const buckets = this.buckets;
    const mask = this.mask;
    const strBase = this.strBase;
    const strEnd = this.strEnd;
    // Last to first, so that each chain lists its symbols in table order.
    for (let i = <i32>n - 1; i >= 0; i--) {
      const s = this.symBase + <usize>i * 24;
      const p = strBase + <usize>load<u32>(s); // st_name: checked in range at elf_open
      const r = names + (<usize>i << 4);
      let h = scanName(p, strEnd);
      let len = scanLen;
      const type = load<u8>(s, 4) & 15;
      if (scanAt && type != D.STT_SECTION && type != D.STT_FILE) {
        // "name@VERSION" / "name@@VERSION" (a linked .symtab): indexed under its base name.
        for (let k: u32 = 1; k < len; k++) {
          if (load<u8>(p + k) == 0x40) {
            len = k;
            h = hashName(p, k);
            break;
          }
        }
      }
      store<u32>(r, h);
      store<u32>(r, <u32>p, 8);
      store<u32>(r, len, 12);
      if (len == 0 || type == D.STT_SECTION || type == D.STT_FILE) {
        store<u32>(r, 0, 4);
        continue;
      }
      if (scanDot) store<u32>(this.meta + (<usize>i << 4), PIECE_DOT, 12);
      const b = buckets + (<usize>(h & mask) << 2);
      store<u32>(r, load<u32>(b), 4);
      store<u32>(b, <u32>i + 1);
    }
  }

  /** File groups (nearest preceding STT_FILE) and sympos of locals. */
  private buildMeta(): void {
    const n = this.n;
    const names = this.names;
    const meta = this.meta;
    let curFile: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      const s = this.symBase + <usize>i * 24;
      const info = load<u8>(s, 4);
      const type = info & 15;
      const bind = info >> 4;
      if (bind != D.STB_LOCAL) continue;
      if (type == D.STT_FILE) {
        curFile = i + 1;
        continue;
      }
      const mr = meta + (<usize>i << 4);
      store<u32>(mr, curFile);
      if (type == D.STT_SECTION) continue;
      const r = names + (<usize>i << 4);
      const len = load<u32>(r, 12);
      if (len == 0 || load<u32>(mr, 4) != 0) continue;
      // First local of its name: number it and every later local of that name along the chain.
      const h = load<u32>(r);
      const p = <usize>load<u32>(r, 8);
      let pos: u32 = 0;
      let j = i + 1;
      while (j != 0) {
        const id = j - 1;
        const q = names + (<usize>id << 4);
        if (load<u32>(q) == h && load<u32>(q, 12) == len && this.bind(id) == D.STB_LOCAL && sameBytes(<usize>load<u32>(q, 8), p, len)) {
          store<u32>(meta + (<usize>id << 4), ++pos, 4);
        }
        j = load<u32>(q, 4);
      }
    }
  }

  /** .cold and .part.N pieces of FUNC symbols, and their roots. */
  private buildPieces(): void {
    const n = this.n;
    for (let i: u32 = 0; i < n; i++) {
      const mr = this.meta + (<usize>i << 4);
      if ((load<u32>(mr, 12) & PIECE_DOT) == 0) continue;
      if (this.type(i) != D.STT_FUNC) {
        store<u32>(mr, 0, 12);
        continue;
      }
      const p = this.namePtr(i);
      const len = <usize>this.nameLen(i);
      let first: usize = 0;
      let kind: u32 = PIECE_WHOLE;
      for (let k: usize = 1; k + 1 < len; k++) {
        if (load<u8>(p + k) != 0x2e) continue;
        const rest = len - k;
        // ".cold" then the end or '.'
        if (rest >= 5 && load<u32>(p + k + 1) == 0x646c6f63 && (rest == 5 || load<u8>(p + k + 5) == 0x2e)) {
          kind = PIECE_COLD;
          if (first == 0) first = k;
        } else if (rest >= 7 && load<u32>(p + k + 1) == 0x74726170 && load<u8>(p + k + 5) == 0x2e && <u32>load<u8>(p + k + 6) - 0x30 < 10) {
          // ".part." then a digit
          kind = PIECE_PART;
          if (first == 0) first = k;
        }
      }
      if (kind == PIECE_WHOLE) {
        store<u32>(mr, 0, 12);
        continue;
      }
      store<u32>(mr, kind | (<u32>first << 3), 12);
      store<u32>(mr, this.findRoot(i, p, first), 8);
    }
  }

  /** id+1 of the root function named by the `len` bytes at p for piece `piece`, 0 when none. */
  private findRoot(piece: u32, p: usize, len: usize): u32 {
    const h = hashName(p, len);
    const file = this.fileOf(piece);
    let global: u32 = 0;
    let any: u32 = 0;
    let j = load<u32>(this.buckets + (<usize>(h & this.mask) << 2));
    while (j != 0) {
      const id = j - 1;
      const q = this.names + (<usize>id << 4);
      if (load<u32>(q) == h && <usize>load<u32>(q, 12) == len && sameBytes(<usize>load<u32>(q, 8), p, len)) {
        const t = this.type(id);
        if ((t == D.STT_FUNC || t == D.STT_GNU_IFUNC) && this.isDefined(id)) {
          const b = this.bind(id);
          if (b == D.STB_LOCAL) {
            if (file != 0 && this.fileOf(id) == file) return j;
          } else if (global == 0) {
            global = j;
          }
          if (any == 0) any = j;
        }
      }
      j = load<u32>(q, 4);
    }
    return global != 0 ? global : any;
  }

  // ---- address table --------------------------------------------------------------

  /** The address key of function `id`, or NONE64 when it has none (ET_REL: offset too large). */
  private keyOf(id: u32, shndx: u32): u64 {
    const v = this.value(id);
    if (!this.isRel) return v;
    if (v >= (<u64>1 << REL_SHIFT)) return NONE64;
    return (<u64>shndx << REL_SHIFT) | v;
  }

  @inline private isFunction(id: u32): bool {
    const t = this.type(id);
    if (t != D.STT_FUNC && t != D.STT_GNU_IFUNC) return false;
    const raw = load<u16>(this.sym(id), 6);
    if (raw == D.SHN_UNDEF || (raw >= D.SHN_LORESERVE && raw != D.SHN_XINDEX)) return false;
    if (this.isRel && this.shndx(id) >= this.nsec) return false;
    return true;
  }

  /**
   * End of the address range an unsized function starting at `key` may extend to:
   * its section's end (ET_REL: the section size), else its PT_LOAD segment's end;
   * NONE64 when unknown.
   */
  private capOf(id: u32, key: u64): u64 {
    const shndx = this.shndx(id);
    const nsec = this.nsec;
    if (this.isRel) {
      const size = load<u64>(this.secs + (<usize>shndx << 4), 8); // isFunction checked shndx < nsec
      return (key & ~((<u64>1 << REL_SHIFT) - 1)) + min<u64>(size, (<u64>1 << REL_SHIFT) - 1);
    }
    if (nsec != 0) {
      if (shndx >= nsec) return NONE64;
      const addr = load<u64>(this.secs + (<usize>shndx << 4));
      const size = load<u64>(this.secs + (<usize>shndx << 4), 8);
      if (key >= addr && key - addr < size) return addr + size;
      return NONE64;
    }
    for (let i: u32 = 0; i < this.nload; i++) {
      const vaddr = load<u64>(this.loads + (<usize>i << 4));
      const memsz = load<u64>(this.loads + (<usize>i << 4), 8);
      if (key >= vaddr && key - vaddr < memsz) return vaddr + memsz;
    }
    return NONE64;
  }

  /**
   * Preference among functions with the same range (higher is better): sized before
   * guessed, GLOBAL before WEAK before LOCAL, fewer leading underscores, lower index.
   */
  private preference(id: u32): u64 {
    const b = this.bind(id);
    const bindRank: u64 = b == D.STB_GLOBAL || b == D.STB_GNU_UNIQUE ? 2 : b == D.STB_WEAK ? 1 : 0;
    const p = this.namePtr(id);
    const len = this.nameLen(id);
    let u: u32 = 0;
    while (u < len && u < 15 && load<u8>(p + u) == 0x5f) u++;
    const sized: u64 = this.size(id) != 0 ? 1 : 0;
    return (sized << 44) | (bindRank << 40) | (<u64>(15 - u) << 32) | <u64>(0xffffffff - id);
  }

  private buildAddresses(): void {
    const n = this.n;
    // recs: 16-byte (key, id) records sorted by key (room for every symbol: one pass);
    // ends: u64 per record.
    const recs = heap.alloc(max<usize>(<usize>n << 4, 16));
    const tmp = heap.alloc(max<usize>(<usize>n << 4, 16));
    const counts = heap.alloc(RADIX_COUNTS_BYTES);
    let m0: u32 = 0;
    let k: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      if (!this.isFunction(i)) continue;
      const key = this.keyOf(i, this.isRel ? this.shndx(i) : 0);
      if (key == NONE64) continue;
      const r = recs + (<usize>k << 4);
      store<u64>(r, key);
      store<u64>(r, <u64>i, 8);
      k++;
    }
    m0 = k;
    radixSort16(recs, tmp, counts, m0);
    heap.free(counts);
    // Ends. tmp is reused as ends[m0] (u64).
    const ends = tmp;
    let next: u64 = NONE64; // smallest key greater than the current one
    for (let j = <i32>m0 - 1; j >= 0; j--) {
      const r = recs + (<usize>j << 4);
      const key = load<u64>(r);
      if (j + 1 < <i32>m0) {
        const nk = load<u64>(recs + (<usize>(j + 1) << 4));
        if (nk > key) next = nk;
      }
      const id = <u32>load<u64>(r, 8);
      const size = this.size(id);
      let end: u64;
      if (size != 0) {
        end = key + size;
        if (end < key) end = NONE64;
      } else {
        end = min<u64>(next, this.capOf(id, key));
        if (end == NONE64) end = key; // nothing bounds it: left out
        if (this.isRel && (end >> REL_SHIFT) != (key >> REL_SHIFT)) end = key;
      }
      store<u64>(ends + (<usize>j << 3), end);
    }
    // Order each run of equal starts by (end desc, preference asc), in one scratch
    // buffer sized for the longest run.
    let longest: u32 = 1;
    let run: u32 = 1;
    for (let i: u32 = 1; i < m0; i++) {
      run = load<u64>(recs + (<usize>i << 4)) == load<u64>(recs + (<usize>(i - 1) << 4)) ? run + 1 : 1;
      if (run > longest) longest = run;
    }
    if (longest > 1) {
      const w = heap.alloc(<usize>longest * 24);
      let j: u32 = 0;
      while (j < m0) {
        const key = load<u64>(recs + (<usize>j << 4));
        let e = j + 1;
        while (e < m0 && load<u64>(recs + (<usize>e << 4)) == key) e++;
        if (e - j > 1) this.sortRun(recs, ends, j, e - j, w);
        j = e;
      }
      heap.free(w);
    }
    // Compact (drop empty ranges) into keys[] and ents[].
    let m: u32 = 0;
    for (let i: u32 = 0; i < m0; i++) if (load<u64>(ends + (<usize>i << 3)) > load<u64>(recs + (<usize>i << 4))) m++;
    this.m = m;
    this.keys = heap.alloc(max<usize>(<usize>m << 3, 8));
    this.ents = heap.alloc(max<usize>(<usize>m << 4, 16));
    let o: u32 = 0;
    for (let i: u32 = 0; i < m0; i++) {
      const key = load<u64>(recs + (<usize>i << 4));
      const end = load<u64>(ends + (<usize>i << 3));
      if (end <= key) continue;
      store<u64>(this.keys + (<usize>o << 3), key);
      const en = this.ents + (<usize>o << 4);
      store<u64>(en, end);
      store<u32>(en, <u32>load<u64>(recs + (<usize>i << 4), 8), 8);
      o++;
    }
    heap.free(recs);
    // The stack of nest() reuses tmp (m <= m0 entries of 4 bytes fit).
    this.nest(tmp);
    heap.free(tmp);
  }

  /** "a goes before b" in a run of equal starts: larger end first, then lower preference. */
  @inline private before(endA: u64, prefA: u64, endB: u64, prefB: u64): bool {
    return endA > endB || (endA == endB && prefA < prefB);
  }

  /** Sorts records [first, first+len) of recs/ends by (end desc, preference asc): insertion sort, heapsort past 16. w: room for len triples. */
  private sortRun(recs: usize, ends: usize, first: u32, len: u32, w: usize): void {
    // Work on a scratch array (w) of (end, pref, id) triples.
    for (let i: u32 = 0; i < len; i++) {
      const id = <u32>load<u64>(recs + (<usize>(first + i) << 4), 8);
      const o = w + <usize>i * 24;
      store<u64>(o, load<u64>(ends + (<usize>(first + i) << 3)));
      store<u64>(o, this.preference(id), 8);
      store<u64>(o, <u64>id, 16);
    }
    if (len <= 16) {
      for (let i: u32 = 1; i < len; i++) {
        let j = i;
        while (j > 0) {
          const a = w + <usize>(j - 1) * 24;
          const b = a + 24;
          if (!this.before(load<u64>(b), load<u64>(b, 8), load<u64>(a), load<u64>(a, 8))) break;
          swap24(a, b);
          j--;
        }
      }
    } else {
      // Heapsort with a max-heap under "before" reversed, so the result ascends in "before" order.
      for (let s = <i32>(len >> 1) - 1; s >= 0; s--) this.siftDown(w, <u32>s, len);
      for (let end = len - 1; end > 0; end--) {
        swap24(w, w + <usize>end * 24);
        this.siftDown(w, 0, end);
      }
    }
    const key = load<u64>(recs + (<usize>first << 4));
    for (let i: u32 = 0; i < len; i++) {
      const o = w + <usize>i * 24;
      store<u64>(ends + (<usize>(first + i) << 3), load<u64>(o));
      const r = recs + (<usize>(first + i) << 4);
      store<u64>(r, key);
      store<u64>(r, load<u64>(o, 16), 8);
    }
  }

  private siftDown(w: usize, start: u32, len: u32): void {
    let root = start;
    while (true) {
      let child = root * 2 + 1;
      if (child >= len) break;
      const c = w + <usize>child * 24;
      if (child + 1 < len) {
        const d = c + 24;
        // the "larger" child: the one that goes later
        if (this.before(load<u64>(c), load<u64>(c, 8), load<u64>(d), load<u64>(d, 8))) child++;
      }
      const r = w + <usize>root * 24;
      const x = w + <usize>child * 24;
      if (!this.before(load<u64>(r), load<u64>(r, 8), load<u64>(x), load<u64>(x, 8))) break;
      swap24(r, x);
      root = child;
    }
  }

  /**
   * Links each entry to the innermost earlier entry containing its start, with a stack
   * of open ranges: entries come by (start asc, end desc), so when an entry comes, the
   * ranges that ended at or before its start are popped and the top of the stack (if
   * any) contains it. The entries still open are exactly the stack, each linked to the
   * one below it, so following `up` from the last entry starting at or before an
   * address visits every range that contains the address, innermost first.
   */
  private nest(stack: usize): void {
    let sp: u32 = 0;
    const m = this.m;
    for (let i: u32 = 0; i < m; i++) {
      const key = load<u64>(this.keys + (<usize>i << 3));
      while (sp > 0) {
        const top = load<u32>(stack + (<usize>(sp - 1) << 2));
        if (load<u64>(this.ents + (<usize>top << 4)) > key) break;
        sp--;
      }
      store<u32>(this.ents + (<usize>i << 4), sp > 0 ? load<u32>(stack + (<usize>(sp - 1) << 2)) + 1 : 0, 12);
      store<u32>(stack + (<usize>sp << 2), i);
      sp++;
    }
  }

  // ---- lookups ------------------------------------------------------------------------

  /** The first symbol named by the `len` bytes at p, or -1. */
  find(p: usize, len: u32): i32 {
    return this.findHashed(p, len, hashName(p, len));
  }

  findHashed(p: usize, len: u32, h: u32): i32 {
    const names = this.names;
    let j = load<u32>(this.buckets + (<usize>(h & this.mask) << 2));
    while (j != 0) {
      const q = names + (<usize>(j - 1) << 4);
      if (load<u32>(q) == h && load<u32>(q, 12) == len && sameBytes(<usize>load<u32>(q, 8), p, len)) return <i32>j - 1;
      j = load<u32>(q, 4);
    }
    return -1;
  }

  /** Batch find: `count` (ptr u32, len u32) entries at `names`, one i32 per entry to `out`; returns how many were found. */
  findMany(names: usize, count: u32, out: usize): i32 {
    let found: i32 = 0;
    for (let i: u32 = 0; i < count; i++) {
      const e = names + (<usize>i << 3);
      const id = this.find(<usize>load<u32>(e), load<u32>(e, 4));
      store<i32>(out + (<usize>i << 2), id);
      found += id >= 0 ? 1 : 0;
    }
    return found;
  }

  /** Batch entryAt over `count` u64 addresses (ET_REL: in section shndx); one i32 id per address to `out`. */
  atMany(addrs: usize, count: u32, shndx: u32, out: usize): i32 {
    let found: i32 = 0;
    for (let i: u32 = 0; i < count; i++) {
      const e = this.entryAt(this.addressKey(load<u64>(addrs + (<usize>i << 3)), shndx));
      const id = e < 0 ? -1 : <i32>this.entryId(<u32>e);
      store<i32>(out + (<usize>i << 2), id);
      found += id >= 0 ? 1 : 0;
    }
    return found;
  }

  /** The next symbol after `id` with the same name, or -1. */
  findNext(id: u32): i32 {
    const names = this.names;
    const r = names + (<usize>id << 4);
    const h = load<u32>(r);
    const len = load<u32>(r, 12);
    const p = <usize>load<u32>(r, 8);
    let j = load<u32>(r, 4);
    while (j != 0) {
      const q = names + (<usize>(j - 1) << 4);
      if (load<u32>(q) == h && load<u32>(q, 12) == len && sameBytes(<usize>load<u32>(q, 8), p, len)) return <i32>j - 1;
      j = load<u32>(q, 4);
    }
    return -1;
  }

  /**
   * The first local named (p, len) whose file is (fp, flen) (flen 0: any file; equal to
   * the STT_FILE name, or one is the other's last path components: gcc writes the
   * source's base name, "b.c" for "src/b.c") and whose sympos is
   * `sympos` (0: any), or -1.
   */
  findLocal(p: usize, len: u32, fp: usize, flen: u32, sympos: u32): i32 {
    let id = this.find(p, len);
    while (id >= 0) {
      const u = <u32>id;
      if (this.bind(u) == D.STB_LOCAL && (sympos == 0 || this.symposOf(u) == sympos)) {
        if (flen == 0) return id;
        const fid = this.fileOf(u);
        if (fid != 0) {
          const np = this.namePtr(fid - 1);
          const nl = this.nameLen(fid - 1);
          if (nl == flen && sameBytes(np, fp, flen)) return id;
          if (nl > flen && load<u8>(np + nl - flen - 1) == 0x2f && sameBytes(np + nl - flen, fp, flen)) return id;
          if (flen > nl && load<u8>(fp + flen - nl - 1) == 0x2f && sameBytes(fp + flen - nl, np, nl)) return id;
        }
      }
      id = this.findNext(u);
    }
    return -1;
  }

  /** Address key of (addr, shndx): ET_REL keys include the section, others ignore it. NONE64: no key. */
  addressKey(addr: u64, shndx: u32): u64 {
    if (!this.isRel) return addr;
    if (addr >= (<u64>1 << REL_SHIFT) || shndx >= (1 << 24)) return NONE64;
    return (<u64>shndx << REL_SHIFT) | addr;
  }

  /** The last entry whose start is at or before `key`, or -1. */
  lastStartingBefore(key: u64): i32 {
    const m = this.m;
    if (m == 0 || key == NONE64) return -1;
    const keys = this.keys;
    if (load<u64>(keys) > key) return -1;
    // Branch-free binary search for the last key <= key: the step is added under a
    // mask (0 or all ones) rather than chosen by a branch or a select, so that no code
    // generator can turn it into an unpredictable jump.
    let base: u32 = 0;
    let len = m;
    while (len > 1) {
      const half = len >> 1;
      const le = <u32>(load<u64>(keys + (<usize>(base + half) << 3)) <= key);
      base += half & (0 - le);
      len -= half;
    }
    return <i32>base;
  }

  /** Entry of the innermost function containing `key`, or -1. */
  entryAt(key: u64): i32 {
    let e = this.lastStartingBefore(key) + 1; // entry + 1
    while (e != 0) {
      const en = this.ents + (<usize>(e - 1) << 4);
      if (key < load<u64>(en)) return <i32>e - 1;
      e = load<u32>(en, 12);
    }
    return -1;
  }

  @inline entryId(e: u32): u32 {
    return load<u32>(this.ents + (<usize>e << 4), 8);
  }
  @inline entryStart(e: u32): u64 {
    return load<u64>(this.keys + (<usize>e << 3));
  }
  @inline entryEnd(e: u32): u64 {
    return load<u64>(this.ents + (<usize>e << 4));
  }

  /** First entry whose start is exactly `key`, or -1. */
  entryStartingAt(key: u64): i32 {
    let i = this.lastStartingBefore(key);
    if (i < 0 || this.entryStart(<u32>i) != key) return -1;
    while (i > 0 && this.entryStart(<u32>i - 1) == key) i--;
    return i;
  }
}

@inline function swap24(a: usize, b: usize): void {
  const x0 = load<u64>(a), x1 = load<u64>(a, 8), x2 = load<u64>(a, 16);
  store<u64>(a, load<u64>(b));
  store<u64>(a, load<u64>(b, 8), 8);
  store<u64>(a, load<u64>(b, 16), 16);
  store<u64>(b, x0);
  store<u64>(b, x1, 8);
  store<u64>(b, x2, 16);
}

export { SYMTAB };
