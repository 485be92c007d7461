// .eh_frame and .eh_frame_hdr: CIE/FDE parsing and the FDE lookup of a CFI registry.
//
// .eh_frame (LSB 5.0 "Exception Frames"; DWARF 5 section 6.4.1) is a sequence of
// records, each a CIE or an FDE, ended by a zero length (or by the section end):
//
//   u32 length            0xffffffff: a u64 length follows (64-bit record); 0: terminator
//   u32 CIE id / pointer  0 in a CIE; in an FDE the distance back from this field to its CIE
//   CIE: u8 version (1, 3 or 4)   asciz augmentation ("zR", "zPLR", "zRS", ...)
//        [v4: u8 address_size, u8 segment_size]
//        uleb code_alignment   sleb data_alignment   return register (u8 in v1, uleb after)
//        'z': uleb length of the augmentation data, then per letter:
//             L: u8 LSDA encoding   P: u8 encoding + personality pointer
//             R: u8 FDE pointer encoding   S: signal frame (no data)   B, G: no data
//        initial instructions ... to the record's end
//   FDE: pc_begin (R encoding)   pc_range (R's format, no application)
//        'z': uleb length + data (the LSDA pointer)   instructions ... to the record's end
//
// .eh_frame_hdr, what PT_GNU_EH_FRAME points at:
//
//   u8 version (1)  u8 eh_frame_ptr_enc  u8 fde_count_enc  u8 table_enc
//   eh_frame_ptr    fde_count    fde_count x { initial_loc, fde_address }, sorted by initial_loc
//
// datarel in the header is relative to the header's start; the linker writes
// table_enc = datarel|sdata4 (0x3b). Pointer encodings: see dwarf.ts.
//
// A registry holds modules (a loaded object's .eh_frame, the vDSO's, a patch
// region's relocated one). Adding one borrows its bytes (the host keeps them
// allocated and unchanged until the module is removed) and builds a sorted table
// {pc, FDE offset} from the header or, when there is none, from a scan of the
// .eh_frame; finding the FDE of a pc is then two binary searches (module, FDE).
// All of it happens before the target is stopped.
import { Bytes } from "../bytes";
import { sortByKey } from "./sort";
import { Err, fail, hex } from "../error";
import {
  where, errLengthTruncated, errLongLengthTruncated, errLength, errCiePointerBefore, errNotCie, errNotFde,
  errCieVersion, errCieSizes, errAugUnterminated, errCieTruncated, errRaColumn, errAugData, errAugShort,
  errEncoding, errAugUnknown, errPcBegin, errPcWraps,
} from "./errors";
import {
  DW_EH_PE_absptr, DW_EH_PE_omit, DW_EH_PE_pcrel, DW_EH_PE_datarel, DW_EH_PE_aligned,
  DW_EH_PE_indirect, DW_EH_PE_uleb128, DW_EH_PE_udata2, DW_EH_PE_udata4, DW_EH_PE_udata8,
  DW_EH_PE_sleb128, DW_EH_PE_sdata2, DW_EH_PE_sdata4, DW_EH_PE_sdata8, NREGS,
} from "./dwarf";

// ---------------------------------------------------------------------------
// Cursor: bounds-checked reads inside [pos, end) of one module's bytes.

@final @unmanaged
export class Cursor {
  base: usize = 0; // the bytes in core memory
  addr: u64 = 0; //  their address in the target
  pos: u64 = 0;
  end: u64 = 0; //   reads stop here (a record's end, or the input's length)
  ok: bool = true;

  @inline set(base: usize, addr: u64, pos: u64, end: u64): void {
    this.base = base; this.addr = addr; this.pos = pos; this.end = end; this.ok = true;
  }

  @inline has(n: u64): bool {
    return this.pos <= this.end && n <= this.end - this.pos;
  }

  @inline u8(): u32 {
    if (this.pos >= this.end) { this.ok = false; return 0; }
    return <u32>load<u8>(this.base + <usize>(this.pos++));
  }
  @inline u16(): u64 {
    if (!this.has(2)) { this.ok = false; this.pos = this.end; return 0; }
    const v = load<u16>(this.base + <usize>this.pos); this.pos += 2; return <u64>v;
  }
  @inline u32(): u64 {
    if (!this.has(4)) { this.ok = false; this.pos = this.end; return 0; }
    const v = load<u32>(this.base + <usize>this.pos); this.pos += 4; return <u64>v;
  }
  @inline u64(): u64 {
    if (!this.has(8)) { this.ok = false; this.pos = this.end; return 0; }
    const v = load<u64>(this.base + <usize>this.pos); this.pos += 8; return v;
  }

  /** ULEB128; one-byte values (nearly all operands) take the inline path. */
  @inline uleb(): u64 {
    const p = this.pos;
    if (p < this.end) {
      const b = load<u8>(this.base + <usize>p);
      if (b < 0x80) { this.pos = p + 1; return <u64>b; }
    }
    return this.ulebLong();
  }

  ulebLong(): u64 {
    let v: u64 = 0;
    let shift: u64 = 0;
    while (this.pos < this.end) {
      const b = <u64>load<u8>(this.base + <usize>(this.pos++));
      if (shift < 64) v |= (b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) return v;
    }
    this.ok = false;
    return 0;
  }

  @inline sleb(): i64 {
    const p = this.pos;
    if (p < this.end) {
      const b = load<u8>(this.base + <usize>p);
      if (b < 0x80) { this.pos = p + 1; return (<i64>b << 57) >> 57; }
    }
    return this.slebLong();
  }

  slebLong(): i64 {
    let v: u64 = 0;
    let shift: u64 = 0;
    while (this.pos < this.end) {
      const b = <u64>load<u8>(this.base + <usize>(this.pos++));
      if (shift < 64) v |= (b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) == 0) {
        if (shift < 64 && (b & 0x40) != 0) v |= ~(<u64>0) << shift;
        return <i64>v;
      }
    }
    this.ok = false;
    return 0;
  }

  /**
   * Reads a pointer in encoding `enc` (DW_EH_PE_*). `dataBase` is the datarel base
   * (the header's address in .eh_frame_hdr; 0 where datarel has no meaning).
   * Sets ok = false on a truncated read or an encoding the unwinder cannot use.
   */
  @inline encoded(enc: u32, dataBase: u64): u64 {
    // pcrel|sdata4 and sdata4 (pc_begin and pc_range): what gcc and ld write in .eh_frame
    if ((enc == 0x1b || enc == 0x0b) && this.pos <= this.end && this.end - this.pos >= 4) {
      const p = this.pos;
      this.pos = p + 4;
      const v = <u64><i64>load<i32>(this.base + <usize>p);
      return enc == 0x1b ? this.addr + p + v : v;
    }
    return this.encodedAny(enc, dataBase);
  }

  encodedAny(enc: u32, dataBase: u64): u64 {
    if (enc == DW_EH_PE_omit) { this.ok = false; return 0; }
    const fieldAddr = this.addr + this.pos;
    let v: u64 = 0;
    const app = enc & 0x70;
    if (app == DW_EH_PE_aligned) {
      // The value sits at the next 8-aligned address, as an absolute pointer.
      const pad = (8 - (fieldAddr & 7)) & 7;
      if (!this.has(pad)) { this.ok = false; return 0; }
      this.pos += pad;
      return this.u64();
    }
    switch (enc & 0x0f) {
      case DW_EH_PE_absptr: v = this.u64(); break;
      case DW_EH_PE_uleb128: v = this.uleb(); break;
      case DW_EH_PE_udata2: v = this.u16(); break;
      case DW_EH_PE_udata4: v = this.u32(); break;
      case DW_EH_PE_udata8: v = this.u64(); break;
      case DW_EH_PE_sleb128: v = <u64>this.sleb(); break;
      case DW_EH_PE_sdata2: v = <u64><i64><i16>this.u16(); break;
      case DW_EH_PE_sdata4: v = <u64><i64><i32>this.u32(); break;
      case DW_EH_PE_sdata8: v = this.u64(); break;
      default: this.ok = false; return 0;
    }
    if (app == DW_EH_PE_pcrel) v += fieldAddr;
    else if (app == DW_EH_PE_datarel) {
      if (dataBase == 0) { this.ok = false; return 0; }
      v += dataBase;
    } else if (app != 0) { this.ok = false; return 0; } // textrel, funcrel: no base known
    if ((enc & DW_EH_PE_indirect) != 0) { this.ok = false; return 0; } // would need target memory
    return v;
  }

  /** Skips a pointer in encoding `enc` without interpreting it (the personality routine). */
  skipEncoded(enc: u32): void {
    if ((enc & 0x70) == DW_EH_PE_aligned) {
      const pad = (8 - ((this.addr + this.pos) & 7)) & 7;
      if (!this.has(pad + 8)) { this.ok = false; this.pos = this.end; return; }
      this.pos += pad + 8;
      return;
    }
    switch (enc & 0x0f) {
      case DW_EH_PE_absptr: case DW_EH_PE_udata8: case DW_EH_PE_sdata8: this.u64(); break;
      case DW_EH_PE_udata2: case DW_EH_PE_sdata2: this.u16(); break;
      case DW_EH_PE_udata4: case DW_EH_PE_sdata4: this.u32(); break;
      case DW_EH_PE_uleb128: this.uleb(); break;
      case DW_EH_PE_sleb128: this.sleb(); break;
      default: this.ok = false;
    }
  }
}

/** Size in bytes of a fixed-size encoding, 0 for a variable or invalid one. */
function encodedSize(enc: u32): u32 {
  switch (enc & 0x0f) {
    case DW_EH_PE_absptr: case DW_EH_PE_udata8: case DW_EH_PE_sdata8: return 8;
    case DW_EH_PE_udata4: case DW_EH_PE_sdata4: return 4;
    case DW_EH_PE_udata2: case DW_EH_PE_sdata2: return 2;
  }
  return 0;
}

function validEncoding(enc: u32): bool {
  if (enc == DW_EH_PE_omit) return true;
  const f = enc & 0x0f;
  if (f != DW_EH_PE_absptr && f != DW_EH_PE_uleb128 && f != DW_EH_PE_udata2 && f != DW_EH_PE_udata4 &&
      f != DW_EH_PE_udata8 && f != DW_EH_PE_sleb128 && f != DW_EH_PE_sdata2 && f != DW_EH_PE_sdata4 &&
      f != DW_EH_PE_sdata8) return false;
  return (enc & 0x70) <= DW_EH_PE_aligned;
}

// ---------------------------------------------------------------------------
// CIE and FDE

/** A parsed CIE. Offsets are into the module's .eh_frame bytes. */
@final @unmanaged
export class Cie {
  off: u64 = <u64>-1; //   offset of the record (the cache key)
  codeAlign: u64 = 1;
  dataAlign: i64 = 0;
  raReg: u32 = 16;
  fdeEnc: u32 = DW_EH_PE_absptr;
  hasZ: bool = false;
  signal: bool = false;
  insStart: u64 = 0; //    initial instructions [insStart, insEnd)
  insEnd: u64 = 0;
  // Initial row (the CIE's instructions run once): ROW_SIZE bytes, see row.ts.
  initRow: usize = 0;
  initRowValid: bool = false;
}

/** A parsed FDE. */
@final @unmanaged
export class Fde {
  off: u64 = 0;
  cieOff: u64 = 0;
  pcBegin: u64 = 0;
  pcEnd: u64 = 0;
  insStart: u64 = 0;
  insEnd: u64 = 0;
}

export const RECORD_CIE: i32 = 1;
export const RECORD_FDE: i32 = 2;
export const RECORD_END: i32 = 3;

// The last readHead: kind, the following record's offset, an FDE's CIE offset.
let headKind: i32 = 0;
let headNext: u64 = 0;
let headCie: u64 = 0;

/**
 * Reads the length and id of the record at `off` (of a module of `len` bytes); on
 * success cur.pos is after the id field and cur.end the record's end.
 * Returns 0, or an error code (recorded with fail()).
 */
function readHead(cur: Cursor, len: u64, off: u64): i32 {
  cur.pos = off;
  cur.end = len;
  const l32 = cur.u32();
  if (!cur.ok) return errLengthTruncated(off);
  if (l32 == 0) { headKind = RECORD_END; headNext = cur.pos; return 0; }
  let length: u64 = l32;
  let idSize: u64 = 4;
  if (l32 == 0xffffffff) {
    length = cur.u64();
    idSize = 8;
    if (!cur.ok) return errLongLengthTruncated(off);
  }
  const body = cur.pos;
  if (!cur.has(length) || length < idSize) return errLength(off, length, len);
  const end = body + length;
  const id = idSize == 4 ? cur.u32() : cur.u64();
  cur.end = end;
  headNext = end;
  if (id == 0) { headKind = RECORD_CIE; return 0; }
  if (id > body) return errCiePointerBefore(off, id);
  headKind = RECORD_FDE;
  headCie = body - id;
  return 0;
}

/** Parses the CIE at `off` into `cie` (not its instructions). Returns 0 or an error code. */
export function parseCie(cur: Cursor, len: u64, off: u64, cie: Cie): i32 {
  const r = readHead(cur, len, off);
  if (r != 0) return r;
  if (headKind != RECORD_CIE) return errNotCie(off);
  const version = cur.u8();
  if (version != 1 && version != 3 && version != 4) return errCieVersion(off, version);
  // Augmentation string.
  const augStart = cur.pos;
  while (cur.ok && cur.u8() != 0) {}
  if (!cur.ok) return errAugUnterminated(off);
  const augEnd = cur.pos - 1;
  let a = augStart;
  let hasZ = false;
  let hasEh = false;
  if (a < augEnd && load<u8>(cur.base + <usize>a) == 0x7a /* z */) { hasZ = true; a++; }
  else if (augEnd - augStart >= 2 && load<u8>(cur.base + <usize>a) == 0x65 && load<u8>(cur.base + <usize>a + 1) == 0x68) {
    hasEh = true; a += 2; // "eh": an old gcc's EH data pointer follows
  }
  if (hasEh) cur.u64();
  if (version == 4) {
    const asz = cur.u8();
    const ssz = cur.u8();
    if (cur.ok && (asz != 8 || ssz != 0)) return errCieSizes(off, asz, ssz);
  }
  cie.off = off;
  cie.codeAlign = cur.uleb();
  cie.dataAlign = cur.sleb();
  cie.raReg = version == 1 ? cur.u8() : <u32>min<u64>(cur.uleb(), 0xffffffff);
  cie.fdeEnc = DW_EH_PE_absptr;
  cie.hasZ = hasZ;
  cie.signal = false;
  cie.initRowValid = false;
  if (!cur.ok) return errCieTruncated(off);
  if (cie.raReg >= NREGS) return errRaColumn(off, cie.raReg);
  if (hasZ) {
    const dataLen = cur.uleb();
    if (!cur.ok || !cur.has(dataLen)) return errAugData(off, false);
    const dataEnd = cur.pos + dataLen;
    const saveEnd = cur.end;
    cur.end = dataEnd;
    for (; a < augEnd; a++) {
      const c = load<u8>(cur.base + <usize>a);
      if (c == 0x52 /* R */) {
        cie.fdeEnc = cur.u8();
        if (cur.ok && !validEncoding(cie.fdeEnc)) return errEncoding(off, 0, cie.fdeEnc);
      } else if (c == 0x4c /* L */) {
        const e = cur.u8();
        if (cur.ok && !validEncoding(e)) return errEncoding(off, 1, e);
      } else if (c == 0x50 /* P */) {
        const e = cur.u8();
        if (cur.ok && !validEncoding(e)) return errEncoding(off, 2, e);
        if (e != DW_EH_PE_omit) cur.skipEncoded(e);
      } else if (c == 0x53 /* S */) {
        cie.signal = true;
      } else if (c == 0x42 /* B */ || c == 0x47 /* G */) {
        // AArch64 BTI / MTE markers: no data.
      } else {
        break; // an unknown letter: 'z' tells us where the data ends
      }
      if (!cur.ok) return errAugShort(off);
    }
    cur.end = saveEnd;
    cur.pos = dataEnd;
  } else if (a < augEnd) {
    return errAugUnknown(off, cur.base + <usize>augStart, <usize>(augEnd - augStart));
  }
  if (cie.fdeEnc == DW_EH_PE_omit) return errEncoding(off, 3, 0);
  cie.insStart = cur.pos;
  cie.insEnd = headNext;
  return 0;
}

/** Kind of the record at off: 1 CIE, 2 FDE, 3 terminator; next offset in nextRecord. Negative: error code. */
export function recordKind(cur: Cursor, len: u64, off: u64): i32 {
  const r = readHead(cur, len, off);
  if (r != 0) return -r;
  nextRecord = headNext;
  return headKind;
}
export let nextRecord: u64 = 0;

// ---------------------------------------------------------------------------
// Modules and the registry. Plain (@unmanaged) structures: the unwinder walks
// them for every frame, and managed objects would cost shadow-stack traffic.

// Table entry: u64 pc_begin, u64 FDE offset (16 bytes), sorted by pc_begin.
export const ENTRY_SIZE: usize = 16;

@final @unmanaged
export class Module {
  id: i32 = 0;
  bytes: usize = 0; //    .eh_frame, in host memory (borrowed, not copied)
  len: u64 = 0;
  addr: u64 = 0; //       its address in the target
  table: usize = 0; //    sorted entries
  count: u32 = 0;
  lo: u64 = 0; //         pcs covered: [lo, hi)
  hi: u64 = 0;
  fromHdr: bool = false;
  cie: Cie = new Cie(); // one-entry CIE cache (most modules have one or two CIEs)

  free(): void {
    if (this.table != 0) heap.free(this.table);
    if (this.cie.initRow != 0) heap.free(this.cie.initRow);
    heap.free(changetype<usize>(this.cie));
    heap.free(changetype<usize>(this));
  }
}

const cur = new Cursor();
const scratchFde = new Fde();

/** Parses the FDE at `off` of module m into fde, using (and filling) its CIE cache. */
export function moduleFde(m: Module, off: u64, fde: Fde): i32 {
  const c = cur;
  c.set(m.bytes, m.addr, 0, m.len);
  let r = readHead(c, m.len, off);
  if (r != 0) return r;
  if (headKind != RECORD_FDE) return errNotFde(off);
  fde.off = off;
  fde.cieOff = headCie;
  fde.insEnd = headNext;
  const body = c.pos;
  const bodyEnd = c.end;
  const cie = m.cie;
  if (cie.off != headCie) {
    r = parseCie(c, m.len, headCie, cie);
    if (r != 0) { cie.off = <u64>-1; return r; }
  }
  c.pos = body;
  c.end = bodyEnd;
  const enc = cie.fdeEnc;
  const begin = c.encoded(enc, 0);
  const range = c.encoded(enc & 0x0f, 0);
  if (!c.ok) return errPcBegin(off, enc);
  if (begin + range < begin) return errPcWraps(off, begin, range);
  fde.pcBegin = begin;
  fde.pcEnd = begin + range;
  if (cie.hasZ) {
    const n = c.uleb();
    if (!c.ok || !c.has(n)) return errAugData(off, true);
    c.pos += n;
  }
  fde.insStart = c.pos;
  return 0;
}

/** Builds m's table by walking every record of its .eh_frame. */
function scanTable(m: Module): i32 {
  // First pass counts FDEs (bounded: every record is at least 8 bytes).
  let off: u64 = 0;
  let n: u32 = 0;
  const maxRecords = m.len / 8 + 1;
  for (let i: u64 = 0; i < maxRecords && off < m.len; i++) {
    cur.set(m.bytes, m.addr, 0, m.len);
    const k = recordKind(cur, m.len, off);
    if (k < 0) return -k;
    if (k == RECORD_END) break;
    if (k == RECORD_FDE) n++;
    off = nextRecord;
  }
  const t = heap.alloc(max<usize>(<usize>n * ENTRY_SIZE, 16));
  let count: u32 = 0;
  off = 0;
  for (let i: u64 = 0; i < maxRecords && off < m.len; i++) {
    cur.set(m.bytes, m.addr, 0, m.len);
    const k = recordKind(cur, m.len, off);
    if (k == RECORD_END) break;
    const next = nextRecord;
    if (k == RECORD_FDE) {
      const r = moduleFde(m, off, scratchFde);
      if (r != 0) { heap.free(t); return r; }
      // Zero-length FDEs (discarded sections in relocated objects) cover nothing.
      if (scratchFde.pcEnd > scratchFde.pcBegin && count < n) {
        const e = t + <usize>count * ENTRY_SIZE;
        store<u64>(e, scratchFde.pcBegin);
        store<u64>(e, off, 8);
        count++;
      }
    }
    off = next;
  }
  sortByKey(t, count, ENTRY_SIZE);
  m.table = t;
  m.count = count;
  return 0;
}

/** Builds m's table from its .eh_frame_hdr bytes [hdr, hdr+hdrLen) at target address hdrAddr. */
function hdrTable(m: Module, hdr: usize, hdrLen: u64, hdrAddr: u64): i32 {
  const c = cur;
  c.set(hdr, hdrAddr, 0, hdrLen);
  const version = c.u8();
  const ptrEnc = c.u8();
  const countEnc = c.u8();
  const tableEnc = c.u8();
  if (!c.ok) return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: truncated header (" + hdrLen.toString() + " bytes)");
  if (version != 1) return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: version " + version.toString() + " (expected 1)");
  const ehPtr = c.encoded(ptrEnc, hdrAddr);
  if (!c.ok) return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: unreadable eh_frame_ptr in encoding " + hex(ptrEnc));
  if (ehPtr != m.addr) {
    return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: eh_frame_ptr " + hex(ehPtr) + " is not the .eh_frame address given, " + hex(m.addr));
  }
  if (countEnc == DW_EH_PE_omit || tableEnc == DW_EH_PE_omit) return scanTable(m); // no search table
  const count = c.encoded(countEnc, hdrAddr);
  if (!c.ok) return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: unreadable fde_count in encoding " + hex(countEnc));
  const esize = <u64>encodedSize(tableEnc) * 2;
  if (esize == 0 || (tableEnc & 0x70) == DW_EH_PE_aligned || (tableEnc & DW_EH_PE_indirect) != 0) {
    return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: table encoding " + hex(tableEnc) + " is not a fixed-size one");
  }
  if (count > (hdrLen - c.pos) / esize) {
    return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: " + count.toString() + " table entries do not fit in " + hdrLen.toString() + " bytes");
  }
  const t = heap.alloc(max<usize>(<usize>count * ENTRY_SIZE, 16));
  let prev: u64 = 0;
  for (let i: u64 = 0; i < count; i++) {
    const pc = c.encoded(tableEnc, hdrAddr);
    const fdeAddr = c.encoded(tableEnc, hdrAddr);
    const fdeOff = fdeAddr - m.addr;
    let bad = "";
    if (!c.ok) bad = "unreadable";
    else if (fdeAddr < m.addr || fdeOff >= m.len) bad = "FDE address " + hex(fdeAddr) + " outside .eh_frame";
    else if (i > 0 && pc < prev) bad = "not sorted (" + hex(pc) + " after " + hex(prev) + ")";
    if (bad.length > 0) {
      heap.free(t);
      return fail(Err.CFI_BAD_HDR, ".eh_frame_hdr: table entry " + i.toString() + ": " + bad);
    }
    const e = t + <usize>i * ENTRY_SIZE;
    store<u64>(e, pc);
    store<u64>(e, fdeOff, 8);
    prev = pc;
  }
  m.table = t;
  m.count = <u32>count;
  m.fromHdr = true;
  return 0;
}

/** Index of the last table entry with pc <= target, or -1. */
@inline
export function searchTable(t: usize, n: u32, target: u64): i32 {
  let lo: i32 = 0;
  let hi: i32 = <i32>n - 1;
  let found: i32 = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (load<u64>(t + <usize>mid * ENTRY_SIZE) <= target) { found = mid; lo = mid + 1; }
    else hi = mid - 1;
  }
  return found;
}

const PTR: usize = sizeof<usize>();

@final @unmanaged
export class Registry {
  mods: usize = 0; //      Module pointers by id (slot 0 unused; 0: a removed module)
  slots: i32 = 1; //       ids in use are < slots
  cap: i32 = 0;
  // Modules with FDEs sorted by lo: u64 lo, u64 hi, u32 id at +16 (24 bytes).
  index: usize = 0;
  indexCount: u32 = 0;
  // Known sigreturn trampolines without CFI: sorted u64 addresses.
  tramps: usize = 0;
  trampCount: u32 = 0;
  trampCap: u32 = 0;
  // Scan sets using this registry; freeing it while they live empties it, and the
  // last of them frees the structure.
  users: u32 = 0;
  dead: bool = false;

  /** The module with this id, or 0. */
  @inline module(id: i32): usize {
    if (id <= 0 || id >= this.slots) return 0;
    return load<usize>(this.mods + <usize>id * PTR);
  }

  /** Adds a module; returns its id (> 0) or 0 with the error recorded. */
  add(eh: usize, ehLen: u64, ehAddr: u64, hdr: usize, hdrLen: u64, hdrAddr: u64): i32 {
    const m = new Module();
    m.bytes = eh; // borrowed: the host keeps it until the module is removed
    m.len = ehLen;
    m.addr = ehAddr;
    const r = hdrLen > 0 ? hdrTable(m, hdr, hdrLen, hdrAddr) : scanTable(m);
    if (r != 0) { m.free(); return 0; }
    if (m.count > 0) {
      m.lo = load<u64>(m.table);
      // The last entry's FDE gives the upper end.
      let hi: u64 = load<u64>(m.table + <usize>(m.count - 1) * ENTRY_SIZE);
      const f = moduleFde(m, load<u64>(m.table + <usize>(m.count - 1) * ENTRY_SIZE, 8), scratchFde);
      if (f != 0) { m.free(); return 0; }
      if (scratchFde.pcEnd > hi) hi = scratchFde.pcEnd;
      m.hi = hi;
      // Modules may not overlap: a pc must have one answer.
      for (let i: i32 = 1; i < this.slots; i++) {
        const op = this.module(i);
        if (op == 0) continue;
        const o = changetype<Module>(op);
        if (o.count == 0) continue;
        if (m.lo < o.hi && o.lo < m.hi) {
          fail(Err.CFI_OVERLAP, "module with .eh_frame at " + hex(ehAddr) + " covers pcs " + hex(m.lo) + ".." + hex(m.hi) +
            ", which overlap module " + i.toString() + " (" + hex(o.lo) + ".." + hex(o.hi) + ")");
          m.free();
          return 0;
        }
      }
    }
    // Reuse a free slot, or grow.
    let id: i32 = 0;
    for (let i: i32 = 1; i < this.slots; i++) if (this.module(i) == 0) { id = i; break; }
    if (id == 0) {
      if (this.slots >= this.cap) {
        const cap = this.cap == 0 ? 16 : this.cap * 2;
        const q = heap.alloc(<usize>cap * PTR);
        memory.fill(q, 0, <usize>cap * PTR);
        if (this.mods != 0) { memory.copy(q, this.mods, <usize>this.slots * PTR); heap.free(this.mods); }
        this.mods = q;
        this.cap = cap;
      }
      id = this.slots++;
    }
    store<usize>(this.mods + <usize>id * PTR, changetype<usize>(m));
    m.id = id;
    this.rebuildIndex();
    return id;
  }

  remove(id: i32): bool {
    const p = this.module(id);
    if (p == 0) return false;
    changetype<Module>(p).free();
    store<usize>(this.mods + <usize>id * PTR, 0);
    this.rebuildIndex();
    return true;
  }

  /** Frees the modules and tables, and the registry itself unless a scan set still uses it. */
  freeAll(): void {
    for (let i: i32 = 1; i < this.slots; i++) {
      const p = this.module(i);
      if (p != 0) changetype<Module>(p).free();
    }
    if (this.mods != 0) heap.free(this.mods);
    if (this.index != 0) heap.free(this.index);
    if (this.tramps != 0) heap.free(this.tramps);
    this.mods = 0; this.slots = 1; this.cap = 0;
    this.index = 0; this.indexCount = 0;
    this.tramps = 0; this.trampCount = 0; this.trampCap = 0;
    this.dead = true;
    if (this.users == 0) heap.free(changetype<usize>(this));
  }

  /** A scan set stops using the registry. */
  release(): void {
    if (this.users > 0) this.users--;
    if (this.dead && this.users == 0) heap.free(changetype<usize>(this));
  }

  private rebuildIndex(): void {
    if (this.index != 0) heap.free(this.index);
    let n: u32 = 0;
    for (let i: i32 = 1; i < this.slots; i++) {
      const p = this.module(i);
      if (p != 0 && changetype<Module>(p).count > 0) n++;
    }
    this.index = heap.alloc(max<usize>(<usize>n * 24, 24));
    let k: u32 = 0;
    for (let i: i32 = 1; i < this.slots; i++) {
      const p = this.module(i);
      if (p == 0) continue;
      const m = changetype<Module>(p);
      if (m.count == 0) continue;
      // insertion by lo (module counts are small)
      let j = k;
      while (j > 0 && load<u64>(this.index + <usize>(j - 1) * 24) > m.lo) {
        memory.copy(this.index + <usize>j * 24, this.index + <usize>(j - 1) * 24, 24);
        j--;
      }
      const e = this.index + <usize>j * 24;
      store<u64>(e, m.lo);
      store<u64>(e, m.hi, 8);
      store<u32>(e, <u32>i, 16);
      k++;
    }
    this.indexCount = k;
  }

  /** The module whose pcs include pc, or 0. */
  @inline moduleFor(pc: u64): usize {
    let lo: i32 = 0;
    let hi: i32 = <i32>this.indexCount - 1;
    let found: i32 = -1;
    const ix = this.index;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (load<u64>(ix + <usize>mid * 24) <= pc) { found = mid; lo = mid + 1; }
      else hi = mid - 1;
    }
    if (found < 0) return 0;
    const e = ix + <usize>found * 24;
    if (pc >= load<u64>(e, 8)) return 0;
    return load<usize>(this.mods + <usize>load<u32>(e, 16) * PTR);
  }

  /**
   * Finds the FDE covering pc: fills `fde` and returns its module, or returns 0
   * (lastFindError tells whether that was "no FDE" (0) or a parse error (its code)).
   */
  find(pc: u64, fde: Fde): usize {
    lastFindError = 0;
    const mp = this.moduleFor(pc);
    if (mp == 0) return 0;
    const m = changetype<Module>(mp);
    const i = searchTable(m.table, m.count, pc);
    if (i < 0) return 0;
    const r = moduleFde(m, load<u64>(m.table + <usize>i * ENTRY_SIZE, 8), fde);
    if (r != 0) { lastFindError = r; return 0; }
    if (pc < fde.pcBegin || pc >= fde.pcEnd) return 0;
    return mp;
  }

  addTrampoline(addr: u64): void {
    for (let i: u32 = 0; i < this.trampCount; i++) if (load<u64>(this.tramps + <usize>i * 8) == addr) return;
    if (this.trampCount == this.trampCap) {
      const cap = this.trampCap == 0 ? 8 : this.trampCap * 2;
      const t = heap.alloc(<usize>cap * 8);
      if (this.tramps != 0) { memory.copy(t, this.tramps, <usize>this.trampCount * 8); heap.free(this.tramps); }
      this.tramps = t;
      this.trampCap = cap;
    }
    let j = this.trampCount;
    while (j > 0 && load<u64>(this.tramps + <usize>(j - 1) * 8) > addr) {
      store<u64>(this.tramps + <usize>j * 8, load<u64>(this.tramps + <usize>(j - 1) * 8));
      j--;
    }
    store<u64>(this.tramps + <usize>j * 8, addr);
    this.trampCount++;
  }

  isTrampoline(pc: u64): bool {
    for (let i: u32 = 0; i < this.trampCount; i++) if (load<u64>(this.tramps + <usize>i * 8) == pc) return true;
    return false;
  }
}

export let lastFindError: i32 = 0;

// ---------------------------------------------------------------------------
// A module from an ELF image as mapped in memory (the vDSO): its program headers
// give PT_GNU_EH_FRAME (the header), the header gives .eh_frame's address, and
// .eh_frame runs at most to the end of the PT_LOAD that holds it.
//
//   Elf64_Ehdr: e_phoff u64 @32, e_phentsize u16 @54, e_phnum u16 @56
//   Elf64_Phdr (56 bytes): p_type u32 @0, p_offset u64 @8, p_vaddr u64 @16, p_filesz u64 @32, p_memsz u64 @40

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474e550;

/**
 * [img, img+len) holds the image from the start of its first PT_LOAD page, which
 * the target has at address `base`. Returns the module id, or 0 with the error recorded.
 */
export function addImage(reg: Registry, img: usize, len: u64, base: u64): i32 {
  const b = new Bytes(img, len);
  if (!b.inRange(0, 64) || b.u32(0) != 0x464c457f || b.u8(4) != 2 || b.u8(5) != 1) {
    fail(Err.CFI_BAD_IMAGE, "image at " + hex(base) + ": not a little-endian ELF64 header");
    return 0;
  }
  const phoff = b.u64(32);
  const phentsize = <u64>b.u16(54);
  const phnum = <u64>b.u16(56);
  if (phentsize < 56 || !b.inRange(phoff, phentsize * phnum)) {
    fail(Err.CFI_BAD_IMAGE, "image at " + hex(base) + ": program headers outside the image");
    return 0;
  }
  // First PT_LOAD page: the image's byte 0.
  let firstPage: u64 = <u64>-1;
  let hdrVaddr: u64 = 0, hdrSize: u64 = 0;
  let haveHdr = false;
  for (let i: u64 = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = b.u32(p);
    if (type == PT_LOAD) {
      const v = b.u64(p + 16) & ~(<u64>0xfff);
      if (v < firstPage) firstPage = v;
    } else if (type == PT_GNU_EH_FRAME) {
      hdrVaddr = b.u64(p + 16);
      hdrSize = b.u64(p + 32);
      haveHdr = true;
    }
  }
  if (firstPage == <u64>-1) { fail(Err.CFI_BAD_IMAGE, "image at " + hex(base) + ": no PT_LOAD segment"); return 0; }
  if (!haveHdr) { fail(Err.CFI_BAD_IMAGE, "image at " + hex(base) + ": no PT_GNU_EH_FRAME segment"); return 0; }
  const hdrOff = hdrVaddr - firstPage;
  if (hdrVaddr < firstPage || !b.inRange(hdrOff, hdrSize) || hdrSize < 4) {
    fail(Err.CFI_BAD_IMAGE, "image at " + hex(base) + ": PT_GNU_EH_FRAME " + hex(hdrVaddr) + "+" + hex(hdrSize) + " outside the image");
    return 0;
  }
  const hdrAddr = base + hdrOff;
  const c = cur;
  c.set(img + <usize>hdrOff, hdrAddr, 0, hdrSize);
  c.u8();
  const enc = c.u8();
  c.pos = 4;
  const ehAddr = c.encoded(enc, hdrAddr);
  if (!c.ok || ehAddr < base || ehAddr - base >= len) {
    fail(Err.CFI_BAD_IMAGE, "image at " + hex(base) + ": .eh_frame_hdr's eh_frame_ptr is outside the image");
    return 0;
  }
  const ehOff = ehAddr - base;
  // .eh_frame ends with the PT_LOAD that holds it (or with the image).
  let ehEnd = len;
  for (let i: u64 = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (b.u32(p) != PT_LOAD) continue;
    const vs = b.u64(p + 16) - firstPage;
    const ve = vs + b.u64(p + 32);
    if (ehOff >= vs && ehOff < ve && ve < ehEnd) ehEnd = ve;
  }
  return reg.add(img + <usize>ehOff, ehEnd - ehOff, ehAddr, img + <usize>hdrOff, hdrSize, hdrAddr);
}
