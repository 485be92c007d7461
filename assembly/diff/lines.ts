// The line table of an object (.debug_line), read only as far as the __LINE__ check needs:
// for each code section, the source line of each address.
//
// DWARF 5, 6.2 "Line Number Information" (https://dwarfstd.org/doc/DWARF5.pdf); versions
// 2 to 4 differ only in the header, whose fields after header_length are skipped:
//
//   unit_length u32 (0xffffffff: then u64, and 64-bit offsets)   version u16
//   [v5: address_size u8, segment_selector_size u8]   header_length u32/u64
//   minimum_instruction_length u8   [v>=4: maximum_operations_per_instruction u8]
//   default_is_stmt u8   line_base i8   line_range u8   opcode_base u8
//   standard_opcode_lengths[opcode_base-1] u8   ... (directories, files)
//   program: from the end of the header_length field + header_length to the unit's end
//
// In an ET_REL object DW_LNE_set_address holds 0 and a relocation (R_X86_64_64 against
// the code section's symbol) says which section the sequence describes; gas writes one
// sequence per code section under -ffunction-sections.
import { Obj } from "./object";
import { sortByKey } from "../stack/sort";

export class Lines {
  // rows sorted by (section, address): key = section << 40 | address, value = line (0: past a sequence's end)
  rows: StaticArray<u64> = new StaticArray<u64>(0);
  n: u32 = 0;
  secFirst: StaticArray<u32> = new StaticArray<u32>(0); // first row of each section
  secCount: StaticArray<u32> = new StaticArray<u32>(0);

  /** The line of the instruction at `addr` of section `sec`, or 0 when the table does not say. */
  lineAt(sec: u32, addr: u64): u32 {
    if (sec >= <u32>this.secFirst.length) return 0;
    let lo = unchecked(this.secFirst[sec]);
    let hi = lo + unchecked(this.secCount[sec]);
    const rp = changetype<usize>(this.rows);
    const key = (<u64>sec << 40) | addr;
    // last row with key <= addr
    let found: i64 = -1;
    while (lo < hi) {
      const mid = lo + ((hi - lo) >> 1);
      if (load<u64>(rp + <usize>mid * 16) <= key) { found = mid; lo = mid + 1; }
      else hi = mid;
    }
    if (found < 0) return 0;
    return <u32>load<u64>(rp + <usize>found * 16 + 8);
  }
}

/** A bounded reader of DWARF bytes: every read past `end` sets ok = false and returns 0 (also used by producer.ts). */
export class Reader {
  constructor(public p: usize, public end: usize) {}
  ok: bool = true;
  u8(): u32 {
    if (this.p >= this.end) { this.ok = false; return 0; }
    return <u32>load<u8>(this.p++);
  }
  uleb(): u64 {
    let r: u64 = 0;
    let shift: u64 = 0;
    while (true) {
      const b = this.u8();
      if (!this.ok) return 0;
      if (shift < 64) r |= <u64>(b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) return r;
    }
  }
  sleb(): i64 {
    let r: i64 = 0;
    let shift: u64 = 0;
    let b: u32 = 0;
    while (true) {
      b = this.u8();
      if (!this.ok) return 0;
      if (shift < 64) r |= <i64>(b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) break;
    }
    if (shift < 64 && (b & 0x40) != 0) r |= -(<i64>1 << shift);
    return r;
  }
  skip(n: u64): void {
    if (n > <u64>(this.end - this.p)) { this.ok = false; this.p = this.end; return; }
    this.p += <usize>n;
  }
}

let rowBuf = new StaticArray<u64>(0);
let rowCount: u32 = 0;

function push(key: u64, line: u64): void {
  // A row at the address of the previous one of the same sequence replaces it (the last
  // row at an address is the one in effect for the instruction there).
  const rp = changetype<usize>(rowBuf);
  if (rowCount > 0 && load<u64>(rp + <usize>(rowCount - 1) * 16) == key) {
    store<u64>(rp + <usize>(rowCount - 1) * 16 + 8, line);
    return;
  }
  if (<i32>(rowCount * 2 + 2) > rowBuf.length) {
    const grown = new StaticArray<u64>(max<i32>(64, rowBuf.length * 2));
    memory.copy(changetype<usize>(grown), rp, <usize>rowCount * 16);
    rowBuf = grown;
  }
  const q = changetype<usize>(rowBuf) + <usize>rowCount * 16;
  store<u64>(q, key);
  store<u64>(q + 8, line);
  rowCount++;
}

/** Reads the line table of `o`, or returns null when it has none (no -g) or it cannot be read. */
export function readLines(o: Obj): Lines | null {
  const sec = o.debugLine;
  if (sec < 0 || !o.secHasData(<u32>sec)) return null;
  const start = o.secData(<u32>sec);
  const size = o.secSize(<u32>sec);
  // Relocations of .debug_line, sorted by offset (24-byte Elf64_Rela records).
  const t = o.secRelTable[sec];
  let relCount: u32 = 0;
  let rels = new StaticArray<u8>(0);
  if (t >= 0) {
    const rt = o.f.relas[t];
    relCount = rt.count;
    rels = new StaticArray<u8>(<i32>(relCount * 24));
    memory.copy(changetype<usize>(rels), o.base + <usize>rt.offset, <usize>relCount * 24);
    sortByKey(changetype<usize>(rels), relCount, 24);
  }
  rowBuf = new StaticArray<u64>(0);
  rowCount = 0;
  let unit = start;
  const end = start + <usize>size;
  while (unit + 4 <= end) {
    let len = <u64>load<u32>(unit);
    let hdr = unit + 4;
    let off64 = false;
    if (len == 0xffffffff) {
      if (unit + 12 > end) break;
      len = load<u64>(unit + 4);
      hdr = unit + 12;
      off64 = true;
    }
    if (len > <u64>(end - hdr)) break;
    const unitEnd = hdr + <usize>len;
    const r = new Reader(hdr, unitEnd);
    const version = r.u8() | (r.u8() << 8);
    if (version < 2 || version > 5) { unit = unitEnd; continue; }
    if (version >= 5) { r.u8(); r.u8(); }
    let hlen: u64 = 0;
    if (off64) { for (let k: u64 = 0; k < 8; k++) hlen |= <u64>r.u8() << (k * 8); }
    else { for (let k: u64 = 0; k < 4; k++) hlen |= <u64>r.u8() << (k * 8); }
    const progStart = r.p;
    if (!r.ok || hlen > <u64>(unitEnd - progStart)) break;
    const minInst = <u64>r.u8();
    if (version >= 4) r.u8();
    r.u8(); // default_is_stmt: is_stmt is not used
    const lineBase = <i64><i8>r.u8();
    const lineRange = <u64>r.u8();
    const opcodeBase = r.u8();
    if (!r.ok || lineRange == 0 || opcodeBase == 0) { unit = unitEnd; continue; }
    const stdLens = r.p;
    if (<usize>(opcodeBase - 1) > unitEnd - stdLens) break;
    runProgram(o, new Reader(progStart + <usize>hlen, unitEnd), start, rels, relCount, minInst, lineBase, lineRange, opcodeBase, stdLens);
    unit = unitEnd;
  }
  // Sort rows by key and index them by section.
  const lines = new Lines();
  sortByKey(changetype<usize>(rowBuf), rowCount, 16);
  lines.rows = rowBuf;
  lines.n = rowCount;
  lines.secFirst = new StaticArray<u32>(o.nsec);
  lines.secCount = new StaticArray<u32>(o.nsec);
  const rp = changetype<usize>(rowBuf);
  for (let i: u32 = 0; i < rowCount; i++) {
    const s = <u32>(load<u64>(rp + <usize>i * 16) >> 40);
    if (s >= o.nsec) continue;
    if (unchecked(lines.secCount[s]) == 0) unchecked(lines.secFirst[s] = i);
    unchecked(lines.secCount[s] = unchecked(lines.secCount[s]) + 1);
  }
  rowBuf = new StaticArray<u64>(0);
  rowCount = 0;
  return lines;
}

/** Section and address a DW_LNE_set_address operand at `at` (offset in .debug_line) is relocated to, or -1. */
let setSec: i64 = -1;
let setAddr: u64 = 0;

function relocatedAddress(o: Obj, rels: StaticArray<u8>, n: u32, at: u64): void {
  setSec = -1;
  const rp = changetype<usize>(rels);
  let lo: u32 = 0;
  let hi = n;
  while (lo < hi) {
    const mid = lo + ((hi - lo) >> 1);
    if (load<u64>(rp + <usize>mid * 24) < at) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= n || load<u64>(rp + <usize>lo * 24) != at) return;
  const sym = <u32>(load<u64>(rp + <usize>lo * 24 + 8) >> 32);
  const add = load<i64>(rp + <usize>lo * 24 + 16);
  if (sym == 0 || sym >= o.nsym || !o.isDefined(sym)) return;
  setSec = <i64>unchecked(o.sShndx[sym]);
  setAddr = unchecked(o.sValue[sym]) + <u64>add;
}

function runProgram(o: Obj, r: Reader, secStart: usize, rels: StaticArray<u8>, relCount: u32,
  minInst: u64, lineBase: i64, lineRange: u64, opcodeBase: u32, stdLens: usize): void {
  let sec: i64 = -1;
  let addr: u64 = 0;
  let line: i64 = 1;
  while (r.ok && r.p < r.end) {
    const op = r.u8();
    if (op >= opcodeBase) {
      const adj = <u64>(op - opcodeBase);
      addr += minInst * (adj / lineRange);
      line += lineBase + <i64>(adj % lineRange);
      if (sec >= 0) push((<u64>sec << 40) | (addr & 0xffffffffff), <u64>max<i64>(line, 0));
      continue;
    }
    switch (op) {
      case 0: {
        const len = r.uleb();
        if (!r.ok || len == 0 || len > <u64>(r.end - r.p)) return;
        const at = r.p;
        const sub = r.u8();
        if (sub == 1) { // DW_LNE_end_sequence
          if (sec >= 0) push((<u64>sec << 40) | (addr & 0xffffffffff), 0);
          sec = -1; addr = 0; line = 1;
        } else if (sub == 2) { // DW_LNE_set_address
          relocatedAddress(o, rels, relCount, <u64>(r.p - secStart));
          sec = setSec;
          addr = setAddr;
        }
        r.p = at + <usize>len;
        break;
      }
      case 1: // DW_LNS_copy
        if (sec >= 0) push((<u64>sec << 40) | (addr & 0xffffffffff), <u64>max<i64>(line, 0));
        break;
      case 2: addr += minInst * r.uleb(); break; // advance_pc
      case 3: line += r.sleb(); break; // advance_line
      case 8: addr += minInst * ((<u64>(255 - opcodeBase)) / lineRange); break; // const_add_pc
      case 9: addr += <u64>(r.u8() | (r.u8() << 8)); break; // fixed_advance_pc
      default: {
        // Other standard opcodes: skip their uleb operands (count from the header).
        const n = <u32>load<u8>(stdLens + <usize>(op - 1));
        for (let k: u32 = 0; k < n; k++) r.uleb();
      }
    }
  }
}
