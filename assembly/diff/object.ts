// One side of the diff: an ET_REL object indexed for comparison.
//
// With -ffunction-sections -fdata-sections every function and every data object of a
// translation unit has a section of its own (`.text.<fn>`, `.text.unlikely.<fn>` for
// its cold piece, `.data.<var>`, `.bss.<var>`, `.rodata.<fn>` for its jump tables,
// `.rodata.<fn>.str1.1` for its strings), and the unsuffixed `.text`, `.data`, `.bss`,
// `.rodata` stay empty. That is what lets a function be taken out alone, and what makes a
// relocation against a section symbol (`.bss.calls.0 - 5`: gas turns references to
// local symbols into section symbol + offset) name one object. An object without the
// flags is refused here with the reason.
//
// The index, all in flat arrays over the symbol and section numbers of the file:
//   sections: class (defs.ts SK_*), relocations (copied, sorted by offset), the
//             function owning a text section, the named data of a data section;
//   symbols:  name, normalized name (names.ts), type, binding, section, value, size;
//   functions and named data objects: lists of symbols, with their byte ranges.
//
//   relocation record (Elf64_Rela, 24 bytes, kept as is):
//     0 r_offset u64   8 type u32   12 symbol u32   16 r_addend i64
import { Err, fail } from "../error";
import { ElfFile, SYMTAB, RELA_SECTION, foundLen } from "../elf/file";
import * as D from "../elf/defs";
import { sortByKey } from "../stack/sort";
import { fnv1a } from "../bytes";
import {
  SK_OTHER, SK_TEXT, SK_DATA, SK_RODATA, SK_STR, SK_CONST, SK_TLS, SK_INIT, SK_EH, SK_LSDA,
  relocFieldSize,
} from "./defs";
import { Insns } from "./insn";
import { normalize, hasNumericSuffix, isCompilerData, isPlainDataSection, eq, hasPrefix, functionKind, parentLen } from "./names";

export const REL_SIZE: u32 = 24;

export class Obj {
  f: ElfFile;
  base: usize; // the input's first byte
  nsec: u32 = 0;
  nsym: u32 = 0;
  symtab: u64 = 0; // input offset of .symtab

  secKind: StaticArray<u8>;
  secName: StaticArray<u32>; // input offset of the name
  secNameLen: StaticArray<u32>;
  secRelStart: StaticArray<u32>; // first relocation (index into rels) applying to the section
  secRelCount: StaticArray<u32>;
  secFunc: StaticArray<i32>; // text section: its function (index into funcs), -1
  secDataFirst: StaticArray<i32>; // data section: first of its named objects in dataBySec order, -1
  secDataCount: StaticArray<u32>;
  secLsda: StaticArray<i32>; // text section: its LSDA section (through .eh_frame), -1
  secRelTable: StaticArray<i32>; // the RelaTable (index into f.relas) applying to the section, -1
  rels: StaticArray<u8>; // relocation records, REL_SIZE each
  nrel: u32 = 0;

  sName: StaticArray<u32>;
  sNameLen: StaticArray<u32>;
  sNorm: StaticArray<u32>; // offset in `names`
  sNormLen: StaticArray<u32>;
  names: StaticArray<u8>; // normalized names of functions and data
  sInfo: StaticArray<u8>;
  sShndx: StaticArray<u32>;
  sValue: StaticArray<u64>;
  sSize: StaticArray<u64>;
  sFunc: StaticArray<i32>; // function index of a symbol, -1
  sData: StaticArray<i32>; // data index of a symbol, -1
  sPrivate: StaticArray<u8>; // 1: compiler-made read-only data (by name)

  funcs: StaticArray<u32>; // symbol of each function
  nfunc: u32 = 0;
  fStart: StaticArray<u64>;
  fSize: StaticArray<u64>;
  fKind: StaticArray<u8>;
  fParentLen: StaticArray<u32>;

  datas: StaticArray<u32>; // symbol of each named data object
  ndata: u32 = 0;
  dataBySec: StaticArray<u32>; // data indices grouped by section, by address

  // Name tables: open addressing over symbol index + 1, by normalized name.
  funcTable: StaticArray<u32>;
  dataTable: StaticArray<u32>;
  sameNext: StaticArray<i32>; // next symbol with the same normalized name (same table), -1

  debugLine: i32 = -1; // .debug_line section
  insns: Insns = new Insns(); // instruction starts of the code section decoded last
  hasEhFrame: bool = false;

  constructor(f: ElfFile) {
    this.f = f;
    this.base = f.bytes.base;
    const z8 = new StaticArray<u8>(0);
    const z32 = new StaticArray<u32>(0);
    const zi = new StaticArray<i32>(0);
    const z64 = new StaticArray<u64>(0);
    this.secKind = z8; this.secName = z32; this.secNameLen = z32; this.secRelStart = z32; this.secRelCount = z32;
    this.secFunc = zi; this.secDataFirst = zi; this.secDataCount = z32; this.secLsda = zi; this.secRelTable = zi;
    this.rels = z8;
    this.sName = z32; this.sNameLen = z32; this.sNorm = z32; this.sNormLen = z32; this.names = z8;
    this.sInfo = z8; this.sShndx = z32; this.sValue = z64; this.sSize = z64; this.sFunc = zi; this.sData = zi; this.sPrivate = z8;
    this.funcs = z32; this.fStart = z64; this.fSize = z64; this.fKind = z8; this.fParentLen = z32;
    this.datas = z32; this.dataBySec = z32;
    this.funcTable = z32; this.dataTable = z32; this.sameNext = zi;
  }

  // ---- accessors ------------------------------------------------------------

  @inline relPtr(i: u32): usize { return changetype<usize>(this.rels) + <usize>i * REL_SIZE; }
  @inline relOff(i: u32): u64 { return load<u64>(this.relPtr(i)); }
  @inline relType(i: u32): u32 { return load<u32>(this.relPtr(i) + 8); }
  @inline relSym(i: u32): u32 { return load<u32>(this.relPtr(i) + 12); }
  @inline relAdd(i: u32): i64 { return load<i64>(this.relPtr(i) + 16); }
  @inline symType(s: u32): u8 { return unchecked(this.sInfo[s]) & 15; }
  @inline symBind(s: u32): u8 { return unchecked(this.sInfo[s]) >> 4; }
  @inline namePtr(s: u32): usize { return this.base + <usize>unchecked(this.sName[s]); }
  @inline normPtr(s: u32): usize { return changetype<usize>(this.names) + <usize>unchecked(this.sNorm[s]); }
  @inline secNamePtr(i: u32): usize { return this.base + <usize>unchecked(this.secName[i]); }
  /** Pointer to the first byte of section i (valid when the section has data). */
  @inline secData(i: u32): usize { return this.base + <usize>this.f.sections[i].offset; }
  @inline secSize(i: u32): u64 { return this.f.sections[i].size; }
  @inline secHasData(i: u32): bool { return this.f.sections[i].hasData; }
  @inline isDefined(s: u32): bool {
    const x = unchecked(this.sShndx[s]);
    return x != D.SHN_UNDEF && (x < D.SHN_LORESERVE || x == D.SHN_XINDEX) && x < this.nsec;
  }

  /** First relocation of section `sec` at offset >= off (binary search). */
  relLowerBound(sec: u32, off: u64): u32 {
    let lo = unchecked(this.secRelStart[sec]);
    let hi = lo + unchecked(this.secRelCount[sec]);
    while (lo < hi) {
      const mid = lo + ((hi - lo) >> 1);
      if (this.relOff(mid) < off) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Name of a function or data symbol for messages. */
  symString(s: u32): string {
    return String.UTF8.decodeUnsafe(this.namePtr(s), <usize>unchecked(this.sNameLen[s]), false);
  }

  secString(i: u32): string {
    return String.UTF8.decodeUnsafe(this.secNamePtr(i), <usize>unchecked(this.secNameLen[i]), false);
  }

  // ---- building -------------------------------------------------------------

  /** Indexes the object; returns 0 or a failure code (message recorded). `what`: "original" or "patched". */
  build(what: string): i32 {
    const f = this.f;
    if (f.type != D.ET_REL) return fail(Err.DIFF_NOT_RELOCATABLE, what + " object: ELF type " + f.type.toString() + " is not ET_REL (a relocatable object, as gcc -c writes it)");
    const st = f.symtabs[SYMTAB];
    if (st === null) return fail(Err.DIFF_NOT_RELOCATABLE, what + " object: no .symtab (stripped?): the diff needs the object's symbols");
    this.nsec = <u32>f.sections.length;
    this.nsym = st.count;
    this.symtab = st.offset;
    let r = this.classifySections(what);
    if (r != 0) return r;
    r = this.readSymbols();
    if (r != 0) return r;
    r = this.readRelocations(what);
    if (r != 0) return r;
    r = this.indexFunctions(what);
    if (r != 0) return r;
    r = this.indexData(what);
    if (r != 0) return r;
    this.buildTables();
    this.findLsdas();
    return 0;
  }

  private classifySections(what: string): i32 {
    const n = this.nsec;
    this.secKind = new StaticArray<u8>(n);
    this.secName = new StaticArray<u32>(n);
    this.secNameLen = new StaticArray<u32>(n);
    for (let i: u32 = 0; i < n; i++) {
      const s = this.f.sections[i];
      unchecked(this.secName[i] = s.name);
      unchecked(this.secNameLen[i] = s.nameLen);
      const p = this.base + <usize>s.name;
      const len = s.nameLen;
      if (hasPrefix(p, len, ".gnu.lto_")) {
        return fail(Err.DIFF_LTO, what + " object: section " + this.secString(i) + " holds GCC's intermediate code (an -flto object): its machine code only exists after link-time optimization, so functions cannot be compared or taken out; build the objects without -flto");
      }
      if (eq(p, len, ".debug_line")) this.debugLine = <i32>i;
      let k = SK_OTHER;
      const fl = s.flags;
      if ((fl & D.SHF_ALLOC) != 0) {
        if (eq(p, len, ".eh_frame") || s.type == D.SHT_X86_64_UNWIND) k = SK_EH;
        else if (hasPrefix(p, len, ".gcc_except_table")) k = SK_LSDA;
        else if (s.type == D.SHT_INIT_ARRAY || s.type == D.SHT_FINI_ARRAY || s.type == 16 /* SHT_PREINIT_ARRAY */ ||
          hasPrefix(p, len, ".ctors") || hasPrefix(p, len, ".dtors") || hasPrefix(p, len, ".init_array") || hasPrefix(p, len, ".fini_array")) k = SK_INIT;
        else if ((fl & D.SHF_EXECINSTR) != 0) k = SK_TEXT;
        else if ((fl & D.SHF_TLS) != 0) k = SK_TLS;
        else if ((fl & D.SHF_WRITE) != 0) k = SK_DATA;
        else if ((fl & D.SHF_MERGE) != 0) k = (fl & D.SHF_STRINGS) != 0 ? SK_STR : SK_CONST;
        else if (s.type == D.SHT_PROGBITS || s.type == D.SHT_NOBITS) k = SK_RODATA;
      }
      if (k == SK_EH) this.hasEhFrame = true;
      unchecked(this.secKind[i] = k);
    }
    return 0;
  }

  private readSymbols(): i32 {
    const n = this.nsym;
    const f = this.f;
    const b = f.bytes;
    const st = f.symtabs[SYMTAB]!;
    this.sName = new StaticArray<u32>(n);
    this.sNameLen = new StaticArray<u32>(n);
    this.sNorm = new StaticArray<u32>(n);
    this.sNormLen = new StaticArray<u32>(n);
    this.sInfo = new StaticArray<u8>(n);
    this.sShndx = new StaticArray<u32>(n);
    this.sValue = new StaticArray<u64>(n);
    this.sSize = new StaticArray<u64>(n);
    this.sFunc = new StaticArray<i32>(n);
    this.sData = new StaticArray<i32>(n);
    this.sPrivate = new StaticArray<u8>(n);
    let total: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      const o = this.symtab + <u64>i * D.SYM_SIZE;
      const at = f.symName(st, i); // validated at open
      const len = foundLen;
      unchecked(this.sName[i] = <u32>at);
      unchecked(this.sNameLen[i] = len);
      unchecked(this.sInfo[i] = b.u8(o + 4));
      unchecked(this.sShndx[i] = f.symShndx(st, i));
      unchecked(this.sValue[i] = b.u64(o + 8));
      unchecked(this.sSize[i] = b.u64(o + 16));
      unchecked(this.sFunc[i] = -1);
      unchecked(this.sData[i] = -1);
      total += len;
    }
    // Normalized names of every symbol (sections and files too: cheap, and uniform).
    this.names = new StaticArray<u8>(<i32>max<u32>(total, 1));
    const arena = changetype<usize>(this.names);
    let pos: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      const len = normalize(this.namePtr(i), unchecked(this.sNameLen[i]), arena + pos);
      unchecked(this.sNorm[i] = pos);
      unchecked(this.sNormLen[i] = len);
      pos += len;
    }
    return 0;
  }

  private readRelocations(what: string): i32 {
    const f = this.f;
    const n = this.nsec;
    this.secRelStart = new StaticArray<u32>(n);
    this.secRelCount = new StaticArray<u32>(n);
    this.secRelTable = new StaticArray<i32>(n);
    for (let i: u32 = 0; i < n; i++) unchecked(this.secRelTable[i] = -1);
    let total: u32 = 0;
    for (let t = 0; t < f.relas.length; t++) {
      const rt = f.relas[t];
      if (rt.kind != RELA_SECTION || rt.target <= 0) continue;
      const k = unchecked(this.secKind[rt.target]);
      if (k == SK_OTHER && rt.target != this.debugLine) continue;
      if (rt.symtab != SYMTAB && rt.count > 0) {
        // Relocations of an ET_REL name .symtab symbols; sh_link 0 is only valid with symbol 0 everywhere.
        for (let j: u32 = 0; j < rt.count; j++) {
          if ((f.bytes.u64(rt.offset + <u64>j * D.RELA_SIZE + 8) >> 32) != 0) {
            return fail(Err.DIFF_BAD_RELOCATION, what + " object: relocation section " + this.secString(<u32>rt.section) + " names symbols but links to no symbol table");
          }
        }
      }
      if (unchecked(this.secRelTable[rt.target]) >= 0) {
        return fail(Err.DIFF_BAD_RELOCATION, what + " object: section " + this.secString(<u32>rt.target) + " has two relocation sections");
      }
      unchecked(this.secRelTable[rt.target] = t);
      if (rt.target != this.debugLine) total += rt.count;
    }
    this.rels = new StaticArray<u8>(<i32>(total * REL_SIZE));
    let pos: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      const t = unchecked(this.secRelTable[i]);
      unchecked(this.secRelStart[i] = pos);
      if (t < 0 || <i32>i == this.debugLine) continue;
      const rt = f.relas[t];
      const size = this.secSize(i);
      memory.copy(this.relPtr(pos), this.base + <usize>rt.offset, <usize>rt.count * REL_SIZE);
      for (let j: u32 = 0; j < rt.count; j++) {
        const type = this.relType(pos + j);
        const fs = relocFieldSize(type);
        const off = this.relOff(pos + j);
        if (fs < 0) {
          return fail(Err.DIFF_BAD_RELOCATION, what + " object: section " + this.secString(i) + ": relocation " + j.toString() + " has type " + type.toString() + ", which is not an x86-64 relocation the diff knows");
        }
        if (off > size || <u64>fs > size - off) {
          return fail(Err.DIFF_BAD_RELOCATION, what + " object: section " + this.secString(i) + ": relocation " + j.toString() + " at " + off.toString() + " runs past the section's " + size.toString() + " bytes");
        }
      }
      sortByKey(this.relPtr(pos), rt.count, REL_SIZE);
      unchecked(this.secRelCount[i] = rt.count);
      pos += rt.count;
    }
    this.nrel = pos;
    return 0;
  }

  private indexFunctions(what: string): i32 {
    const n = this.nsym;
    let count: u32 = 0;
    for (let i: u32 = 1; i < n; i++) if (this.isFunctionSym(i)) count++;
    this.nfunc = count;
    this.funcs = new StaticArray<u32>(count);
    this.fStart = new StaticArray<u64>(count);
    this.fSize = new StaticArray<u64>(count);
    this.fKind = new StaticArray<u8>(count);
    this.fParentLen = new StaticArray<u32>(count);
    this.secFunc = new StaticArray<i32>(this.nsec);
    for (let i: u32 = 0; i < this.nsec; i++) unchecked(this.secFunc[i] = -1);
    let k: u32 = 0;
    for (let i: u32 = 1; i < n; i++) {
      if (!this.isFunctionSym(i)) continue;
      const sec = unchecked(this.sShndx[i]);
      const ssize = this.secSize(sec);
      let start = unchecked(this.sValue[i]);
      let size = unchecked(this.sSize[i]);
      if (start > ssize) start = ssize;
      if (size == 0 || size > ssize - start) size = ssize - start;
      unchecked(this.funcs[k] = i);
      unchecked(this.fStart[k] = start);
      unchecked(this.fSize[k] = size);
      unchecked(this.fKind[k] = functionKind(this.namePtr(i), unchecked(this.sNameLen[i])));
      unchecked(this.fParentLen[k] = parentLen);
      unchecked(this.sFunc[i] = <i32>k);
      const other = unchecked(this.secFunc[sec]);
      if (other < 0) {
        unchecked(this.secFunc[sec] = <i32>k);
      } else if (unchecked(this.fStart[other]) != start) {
        // Two functions at different addresses in one section (aliases share an address).
        return fail(Err.DIFF_NO_FUNCTION_SECTIONS, what + " object: section " + this.secString(sec) + " holds functions `" + this.symString(unchecked(this.funcs[other])) + "` and `" + this.symString(i) + "`" +
          ": the object was not compiled with -ffunction-sections, so a function cannot be taken out alone; compile with -ffunction-sections -fdata-sections");
      }
      k++;
    }
    return 0;
  }

  @inline isFunctionSym(i: u32): bool {
    const t = this.symType(i);
    return (t == D.STT_FUNC || t == D.STT_GNU_IFUNC) && this.isDefined(i) && unchecked(this.secKind[unchecked(this.sShndx[i])]) == SK_TEXT;
  }

  /** Named data: objects, TLS and common symbols, except compiler-made data (CSWTCH, __func__, ...: never written). */
  private isDataSym(i: u32): bool {
    const t = this.symType(i);
    const x = unchecked(this.sShndx[i]);
    if (x == D.SHN_COMMON) return t == D.STT_OBJECT || t == D.STT_COMMON || t == D.STT_TLS;
    if (t != D.STT_OBJECT && t != D.STT_TLS && t != D.STT_COMMON) return false;
    if (!this.isDefined(i)) return false;
    const k = unchecked(this.secKind[x]);
    if (k == SK_OTHER || k == SK_TEXT || k == SK_EH || k == SK_INIT) return false;
    if (this.symBind(i) == D.STB_LOCAL && k != SK_TLS && isCompilerData(this.namePtr(i), unchecked(this.sNameLen[i]))) {
      unchecked(this.sPrivate[i] = 1);
      return false;
    }
    return true;
  }

  private indexData(what: string): i32 {
    const n = this.nsym;
    let count: u32 = 0;
    for (let i: u32 = 1; i < n; i++) if (this.isDataSym(i)) count++;
    this.ndata = count;
    this.datas = new StaticArray<u32>(count);
    let k: u32 = 0;
    for (let i: u32 = 1; i < n; i++) {
      if (!this.isDataSym(i)) continue;
      // gcc -fdata-sections gives every named object a section of its own; the unsuffixed
      // sections then only hold anonymous constants (compared as a whole, by content).
      const x = unchecked(this.sShndx[i]);
      if (this.isDefined(i) && isPlainDataSection(this.secNamePtr(x), unchecked(this.secNameLen[x]))) {
        return fail(Err.DIFF_NO_DATA_SECTIONS, what + " object: section " + this.secString(x) + " holds data object `" + this.symString(i) + "`" +
          ": the object was not compiled with -fdata-sections, so its data objects share sections and a reference cannot be told apart from its neighbours; compile with -ffunction-sections -fdata-sections");
      }
      unchecked(this.datas[k] = i);
      unchecked(this.sData[i] = <i32>k);
      k++;
    }
    // Group by section, by address: records (key = section << 40 | value, data index) sorted.
    this.secDataFirst = new StaticArray<i32>(this.nsec);
    this.secDataCount = new StaticArray<u32>(this.nsec);
    for (let i: u32 = 0; i < this.nsec; i++) unchecked(this.secDataFirst[i] = -1);
    const tmp = new StaticArray<u64>(<i32>(count * 2));
    const tp = changetype<usize>(tmp);
    let m: u32 = 0;
    for (let d: u32 = 0; d < count; d++) {
      const s = unchecked(this.datas[d]);
      const x = unchecked(this.sShndx[s]);
      if (x >= this.nsec || x == D.SHN_UNDEF) continue; // common
      store<u64>(tp + <usize>m * 16, (<u64>x << 40) | (unchecked(this.sValue[s]) & 0xffffffffff));
      store<u64>(tp + <usize>m * 16 + 8, <u64>d);
      m++;
    }
    sortByKey(tp, m, 16);
    this.dataBySec = new StaticArray<u32>(m);
    for (let j: u32 = 0; j < m; j++) {
      const d = <u32>load<u64>(tp + <usize>j * 16 + 8);
      unchecked(this.dataBySec[j] = d);
      const x = <u32>(load<u64>(tp + <usize>j * 16) >> 40);
      if (unchecked(this.secDataFirst[x]) < 0) unchecked(this.secDataFirst[x] = <i32>j);
      unchecked(this.secDataCount[x] = unchecked(this.secDataCount[x]) + 1);
    }
    return 0;
  }

  // ---- name tables ------------------------------------------------------------

  @inline private hashOf(s: u32): u32 {
    return fnv1a(this.normPtr(s), <usize>unchecked(this.sNormLen[s]));
  }

  private buildTables(): void {
    this.sameNext = new StaticArray<i32>(this.nsym);
    for (let i: u32 = 0; i < this.nsym; i++) unchecked(this.sameNext[i] = -1);
    this.funcTable = this.makeTable(this.funcs, this.nfunc);
    this.dataTable = this.makeTable(this.datas, this.ndata);
  }

  private makeTable(list: StaticArray<u32>, n: u32): StaticArray<u32> {
    let cap: u32 = 16;
    while (cap < n * 2) cap <<= 1;
    const t = new StaticArray<u32>(cap);
    const tail = new StaticArray<i32>(cap); // last symbol of each chain, to append in symbol order
    const mask = cap - 1;
    for (let k: u32 = 0; k < n; k++) {
      const s = unchecked(list[k]);
      let h = this.hashOf(s) & mask;
      while (true) {
        const e = unchecked(t[h]);
        if (e == 0) {
          unchecked(t[h] = s + 1);
          unchecked(tail[h] = <i32>s);
          break;
        }
        if (this.sameNorm(e - 1, this, s)) {
          unchecked(this.sameNext[unchecked(tail[h])] = <i32>s);
          unchecked(tail[h] = <i32>s);
          break;
        }
        h = (h + 1) & mask;
      }
    }
    return t;
  }

  /** Whether symbol a of this object and symbol b of `o` have the same normalized name. */
  @inline sameNorm(a: u32, o: Obj, b: u32): bool {
    const la = unchecked(this.sNormLen[a]);
    return la == unchecked(o.sNormLen[b]) && memory.compare(this.normPtr(a), o.normPtr(b), <usize>la) == 0;
  }

  @inline sameName(a: u32, o: Obj, b: u32): bool {
    const la = unchecked(this.sNameLen[a]);
    return la == unchecked(o.sNameLen[b]) && memory.compare(this.namePtr(a), o.namePtr(b), <usize>la) == 0;
  }

  /** First symbol of this object (in `funcs` or `datas`) with the normalized name of symbol s of `o`, or -1. */
  lookup(data: bool, o: Obj, s: u32): i32 {
    const t = data ? this.dataTable : this.funcTable;
    const mask = <u32>t.length - 1;
    let h = fnv1a(o.normPtr(s), <usize>unchecked(o.sNormLen[s])) & mask;
    while (true) {
      const e = unchecked(t[h]);
      if (e == 0) return -1;
      if (this.sameNorm(e - 1, o, s)) return <i32>(e - 1);
      h = (h + 1) & mask;
    }
  }

  // ---- exception tables -------------------------------------------------------

  /**
   * The LSDA of each text section, from .eh_frame's relocations: an FDE is length,
   * CIE pointer, pc_begin (relocated against the function's section), pc_range,
   * augmentation data holding the LSDA pointer (relocated against .gcc_except_table*),
   * so in offset order an LSDA relocation follows the pc_begin of its FDE.
   */
  private findLsdas(): void {
    this.secLsda = new StaticArray<i32>(this.nsec);
    for (let i: u32 = 0; i < this.nsec; i++) unchecked(this.secLsda[i] = -1);
    for (let e: u32 = 0; e < this.nsec; e++) {
      if (unchecked(this.secKind[e]) != SK_EH) continue;
      const first = unchecked(this.secRelStart[e]);
      const end = first + unchecked(this.secRelCount[e]);
      let cur: i32 = -1;
      for (let r = first; r < end; r++) {
        const s = this.relSym(r);
        if (s == 0 || s >= this.nsym || !this.isDefined(s)) continue;
        const x = unchecked(this.sShndx[s]);
        const k = unchecked(this.secKind[x]);
        if (k == SK_TEXT) cur = <i32>x;
        else if (k == SK_LSDA && cur >= 0) {
          unchecked(this.secLsda[cur] = <i32>x);
          cur = -1;
        }
      }
    }
  }

  /** Whether a data symbol has gcc's numeric suffix (a block-scope static: `calls.0`). */
  isNumberedLocal(s: u32): bool {
    return this.symBind(s) == D.STB_LOCAL && hasNumericSuffix(this.namePtr(s), unchecked(this.sNameLen[s]));
  }
}
