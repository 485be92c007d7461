// The patch region's header: the first page(s) of every region `patchc apply` maps in a
// target, read back by `patchc status` and `patchc revert` from a fresh process. It is
// the only record of what is applied: the target's own memory (docs/region.md).
//
// Layout (version 1), all little-endian; `str` is (offset u32, length u32) of bytes in
// the header (offsets from the header's start, inside its `size`):
//
//    0 magic "PATCHCRG"        8 version u16 (1)     10 flags u16 (0)
//   12 size u32 (bytes used)  16 state u32 (1 active, 2 retired)
//   20 functions u32          24 symbols u32         28 parts u32        32 dependencies u32
//   36 sequence u32 (1 + the highest of the patches applied before it: the order applied)
//   40 applied at u64 (ms since the epoch)
//   48 region base u64        56 region size u64     64 module bias u64
//   72 .eh_frame address u64  80 .eh_frame size u64 (0: none)
//   88 content hash [32]
//  120 patch id str          128 module path str    136 module build-id str (hex)
//  144 reserved [16]
//  160 records: functions (64 bytes each), symbols (24), parts (16), dependencies (16),
//      then the string bytes.
//
//   function:   0 name str   8 site u64   16 new address u64   24 new size u64
//              32 saved str (the bytes the site held before this patch, restored by revert)
//              40 jump str (the bytes this patch wrote at the site)
//              48 previous str (the patch whose jump `saved` is; length 0: the original code)
//              56 reserved u64
//   symbol:     0 name str   8 address u64  16 size u64     (globals the patch defines)
//   part:       0 offset u32 4 size u32      8 prot u32     12 reserved u32
//   dependency: 0 patch id str               8 hash str (64 hex, or length 0)
//
// decodeRegion() checks every offset and count against the bytes it is given and every
// value against its domain: a corrupt header is reported (RegionError), never trusted.
import { PATCH_ID_RE } from "../format/model.js";

export const REGION_MAGIC = "PATCHCRG";
export const REGION_VERSION = 1;
export const STATE_OFFSET = 16;
export const STATE = { active: 1, retired: 2 } as const;
const FIXED = 160;
const FN = 64;
const SYM = 24;
const PART = 16;
const DEP = 16;
/** Headers larger than this are refused (a corrupt size field must not make a reader allocate gigabytes). */
export const MAX_HEADER = 1 << 20;

export interface RegionFunction {
  name: string;
  site: bigint;
  newAddr: bigint;
  newSize: bigint;
  saved: Uint8Array;
  jump: Uint8Array;
  previous?: string;
}

export interface RegionHeader {
  state: "active" | "retired";
  sequence: number;
  appliedAt: Date;
  base: bigint;
  size: bigint;
  bias: bigint;
  ehFrame?: { addr: bigint; size: bigint };
  hash: string;
  patchId: string;
  modulePath: string;
  buildId: string;
  functions: RegionFunction[];
  symbols: Array<{ name: string; addr: bigint; size: bigint }>;
  parts: Array<{ offset: number; size: number; prot: number }>;
  dependencies: Array<{ patchId: string; hash?: string }>;
}

export class RegionError extends Error {
  constructor(
    readonly where: string,
    readonly reason: string,
  ) {
    super(`${where}: corrupt patch region header: ${reason}`);
    this.name = "RegionError";
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** The header as bytes (its exact length; the region reserves it rounded up to pages). */
export function encodeRegion(h: RegionHeader): Uint8Array {
  const strings: Uint8Array[] = [];
  let strLen = 0;
  const strBase = FIXED + h.functions.length * FN + h.symbols.length * SYM + h.parts.length * PART + h.dependencies.length * DEP;
  const str = (v: DataView, at: number, s: string | Uint8Array | undefined): void => {
    const b = s === undefined ? new Uint8Array(0) : typeof s === "string" ? enc.encode(s) : s;
    v.setUint32(at, b.length ? strBase + strLen : 0, true);
    v.setUint32(at + 4, b.length, true);
    strings.push(b);
    strLen += b.length;
  };
  // Strings are appended as fields are written, so the record area is written first into
  // a buffer sized for the records, then joined with the strings.
  const rec = new Uint8Array(strBase);
  const v = new DataView(rec.buffer);
  rec.set(enc.encode(REGION_MAGIC), 0);
  v.setUint16(8, REGION_VERSION, true);
  v.setUint32(STATE_OFFSET, STATE[h.state], true);
  v.setUint32(20, h.functions.length, true);
  v.setUint32(24, h.symbols.length, true);
  v.setUint32(28, h.parts.length, true);
  v.setUint32(32, h.dependencies.length, true);
  v.setUint32(36, h.sequence, true);
  v.setBigUint64(40, BigInt(h.appliedAt.getTime()), true);
  v.setBigUint64(48, h.base, true);
  v.setBigUint64(56, h.size, true);
  v.setBigUint64(64, BigInt.asUintN(64, h.bias), true);
  v.setBigUint64(72, h.ehFrame?.addr ?? 0n, true);
  v.setBigUint64(80, h.ehFrame?.size ?? 0n, true);
  if (!/^[0-9a-f]{64}$/.test(h.hash)) throw new Error(`region header: hash "${h.hash}" is not 64 hex digits`);
  rec.set(Buffer.from(h.hash, "hex"), 88);
  str(v, 120, h.patchId);
  str(v, 128, h.modulePath);
  str(v, 136, h.buildId);
  let at = FIXED;
  for (const f of h.functions) {
    str(v, at, f.name);
    v.setBigUint64(at + 8, f.site, true);
    v.setBigUint64(at + 16, f.newAddr, true);
    v.setBigUint64(at + 24, f.newSize, true);
    str(v, at + 32, f.saved);
    str(v, at + 40, f.jump);
    str(v, at + 48, f.previous);
    at += FN;
  }
  for (const s of h.symbols) {
    str(v, at, s.name);
    v.setBigUint64(at + 8, s.addr, true);
    v.setBigUint64(at + 16, s.size, true);
    at += SYM;
  }
  for (const p of h.parts) {
    v.setUint32(at, p.offset, true);
    v.setUint32(at + 4, p.size, true);
    v.setUint32(at + 8, p.prot, true);
    at += PART;
  }
  for (const d of h.dependencies) {
    str(v, at, d.patchId);
    str(v, at + 8, d.hash);
    at += DEP;
  }
  const size = strBase + strLen;
  if (size > MAX_HEADER) throw new Error(`region header: ${size} bytes (more than ${MAX_HEADER})`);
  v.setUint32(12, size, true);
  const out = new Uint8Array(size);
  out.set(rec, 0);
  let p = strBase;
  for (const s of strings) {
    out.set(s, p);
    p += s.length;
  }
  return out;
}

/** Whether `b` starts with the region magic (the anonymous-mapping fallback is found by it). */
export function hasRegionMagic(b: Uint8Array): boolean {
  if (b.length < 8) return false;
  for (let i = 0; i < 8; i++) if (b[i] !== REGION_MAGIC.charCodeAt(i)) return false;
  return true;
}

/** The header's total size from its first 16 bytes (to read exactly that much), or a RegionError. */
export function regionHeaderSize(b: Uint8Array, where: string): number {
  if (!hasRegionMagic(b)) throw new RegionError(where, "bad magic");
  if (b.length < 16) throw new RegionError(where, `${b.length} bytes, shorter than the fixed part`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const version = v.getUint16(8, true);
  if (version !== REGION_VERSION) throw new RegionError(where, `version ${version} (this patchc reads ${REGION_VERSION})`);
  const size = v.getUint32(12, true);
  if (size < FIXED || size > MAX_HEADER) throw new RegionError(where, `size ${size} is outside ${FIXED}..${MAX_HEADER}`);
  return size;
}

/** Decodes a header; `where` ("process 12, region at 0x7f..") names it in errors. */
export function decodeRegion(b: Uint8Array, where: string): RegionHeader {
  const size = regionHeaderSize(b, where);
  if (b.length < size) throw new RegionError(where, `the header says ${size} bytes, ${b.length} given`);
  const v = new DataView(b.buffer, b.byteOffset, size);
  const bad = (reason: string): never => {
    throw new RegionError(where, reason);
  };
  const stateNo = v.getUint32(STATE_OFFSET, true);
  const state = stateNo === STATE.active ? "active" : stateNo === STATE.retired ? "retired" : bad(`state ${stateNo} is neither 1 (active) nor 2 (retired)`);
  const nf = v.getUint32(20, true);
  const ns = v.getUint32(24, true);
  const np = v.getUint32(28, true);
  const nd = v.getUint32(32, true);
  const records = FIXED + nf * FN + ns * SYM + np * PART + nd * DEP;
  if (nf > size || ns > size || np > size || nd > size || records > size) bad(`${nf} functions, ${ns} symbols, ${np} parts and ${nd} dependencies do not fit in ${size} bytes`);
  const bytesAt = (at: number, what: string): Uint8Array => {
    const off = v.getUint32(at, true);
    const len = v.getUint32(at + 4, true);
    if (len === 0) return new Uint8Array(0);
    if (off < records || off > size || len > size - off) bad(`${what}: bytes ${off}+${len} outside the string area ${records}..${size}`);
    return b.slice(off, off + len);
  };
  const strAt = (at: number, what: string): string => {
    try {
      return dec.decode(bytesAt(at, what));
    } catch (e) {
      if (e instanceof RegionError) throw e;
      return bad(`${what}: not UTF-8`);
    }
  };
  const patchId = strAt(120, "patch id");
  if (!PATCH_ID_RE.test(patchId)) bad(`patch id "${patchId.slice(0, 80)}" is not a valid patch id`);
  const base = v.getBigUint64(48, true);
  const regionSize = v.getBigUint64(56, true);
  if (base % 4096n !== 0n || regionSize % 4096n !== 0n || regionSize < BigInt(size)) bad(`region 0x${base.toString(16)} of ${regionSize} bytes is not page-aligned or smaller than its header`);
  const inRegion = (a: bigint, n: bigint) => a >= base && n <= regionSize && a - base <= regionSize - n;
  const buildId = strAt(136, "build-id");
  if (!/^([0-9a-f]{2}){1,64}$/.test(buildId)) bad(`build-id "${buildId.slice(0, 140)}" is not hex`);
  const ehAddr = v.getBigUint64(72, true);
  const ehSize = v.getBigUint64(80, true);
  if (ehSize && !inRegion(ehAddr, ehSize)) bad(".eh_frame lies outside the region");
  const h: RegionHeader = {
    state,
    sequence: v.getUint32(36, true),
    appliedAt: new Date(Number(v.getBigUint64(40, true) & 0xfffffffffffffn)),
    base,
    size: regionSize,
    bias: BigInt.asIntN(64, v.getBigUint64(64, true)),
    ehFrame: ehSize ? { addr: ehAddr, size: ehSize } : undefined,
    hash: Buffer.from(b.subarray(88, 120)).toString("hex"),
    patchId,
    modulePath: strAt(128, "module path"),
    buildId,
    functions: [],
    symbols: [],
    parts: [],
    dependencies: [],
  };
  let at = FIXED;
  for (let i = 0; i < nf; i++, at += FN) {
    const what = `function ${i}`;
    const f: RegionFunction = {
      name: strAt(at, `${what} name`),
      site: v.getBigUint64(at + 8, true),
      newAddr: v.getBigUint64(at + 16, true),
      newSize: v.getBigUint64(at + 24, true),
      saved: bytesAt(at + 32, `${what} saved bytes`),
      jump: bytesAt(at + 40, `${what} jump`),
    };
    const prev = strAt(at + 48, `${what} previous patch`);
    if (prev) {
      if (!PATCH_ID_RE.test(prev)) bad(`${what} (${f.name}): previous patch "${prev.slice(0, 80)}" is not a patch id`);
      f.previous = prev;
    }
    if (!f.name) bad(`${what}: no name`);
    if (f.saved.length === 0 || f.saved.length > 64 || f.jump.length !== f.saved.length) bad(`${what} (${f.name}): ${f.saved.length} saved bytes for a jump of ${f.jump.length}`);
    if (!inRegion(f.newAddr, f.newSize)) bad(`${what} (${f.name}): its new code 0x${f.newAddr.toString(16)} (${f.newSize} bytes) lies outside the region`);
    h.functions.push(f);
  }
  for (let i = 0; i < ns; i++, at += SYM) {
    const s = { name: strAt(at, `symbol ${i} name`), addr: v.getBigUint64(at + 8, true), size: v.getBigUint64(at + 16, true) };
    if (!s.name) bad(`symbol ${i}: no name`);
    if (!inRegion(s.addr, s.size)) bad(`symbol ${i} (${s.name}) lies outside the region`);
    h.symbols.push(s);
  }
  let end = 0;
  for (let i = 0; i < np; i++, at += PART) {
    const p = { offset: v.getUint32(at, true), size: v.getUint32(at + 4, true), prot: v.getUint32(at + 8, true) };
    if (p.offset !== end || p.size === 0 || p.size % 4096 !== 0 || p.prot > 7 || (p.prot & 6) === 6) bad(`part ${i}: ${p.size} bytes at ${p.offset} with protection ${p.prot} (parts cover the region in order, page-sized, never writable and executable)`);
    end += p.size;
    h.parts.push(p);
  }
  if (np && BigInt(end) !== regionSize) bad(`the parts cover ${end} bytes of a ${regionSize}-byte region`);
  for (let i = 0; i < nd; i++, at += DEP) {
    const id = strAt(at, `dependency ${i}`);
    const hash = strAt(at + 8, `dependency ${i} hash`);
    if (!PATCH_ID_RE.test(id)) bad(`dependency ${i}: "${id.slice(0, 80)}" is not a patch id`);
    if (hash && !/^[0-9a-f]{64}$/.test(hash)) bad(`dependency ${i} (${id}): hash is not 64 hex digits`);
    h.dependencies.push(hash ? { patchId: id, hash } : { patchId: id });
  }
  return h;
}
