// ELF fuzz inputs: real files, with header and table fields mutated on purpose.
//
// A seed is a real ELF file (or its image as mapped, see helpers/elf-image.ts) with a
// catalog of its fields: where each counted, sized, offset or index field lies, found by
// parsing the file here (section headers, symbols, dynamic entries, notes, version
// chains, hash tables, relocations). A case is a seed plus a few deterministic edits
// (case id -> PRNG): fields set to values chosen to hit the edges (0, 1, all ones, the
// input length +-1, the table counts +-1, sign bits, another field's value...), random
// bytes, copied or cleared blocks, truncations at interesting offsets.
//
// Pure: used by the fuzz worker (bundled with esbuild) and by the test itself, which
// regenerates a case from its id when the worker hangs on it.

export interface Field {
  off: number; // in the seed's bytes
  size: 1 | 2 | 4 | 8;
  name: string; // "section 3 sh_offset", "dynamic DT_STRSZ d_val", ...
}

export interface Seed {
  name: string; // "libc-image"
  bytes: Uint8Array;
  /** elf_open_image's base for an image seed; undefined: a file for elf_open. */
  base?: bigint;
  fields: Field[];
  /** Numbers of this file worth hitting: counts, sizes, the length (each +-1 is tried too). */
  magic: bigint[];
  /** For an image: where its dynamic d_ptr entries are (to relocate them as ld.so does), and its first page's link-time address. */
  dynPtrs?: number[];
  firstVaddr?: bigint;
}

export interface Case {
  id: number;
  seed: string;
  bytes: Uint8Array;
  image: boolean;
  base: bigint;
  what: string; // the edits, for the report and the regression file's name
}

// ---- a deterministic PRNG (splitmix64 over BigInt is slow: xoshiro128** on u32) ----------

export class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    let x = seed >>> 0 || 0x9e3779b9;
    for (let i = 0; i < 4; i++) {
      x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
      x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
      x = (x ^ (x >>> 16)) >>> 0;
      this.s[i] = x || 1;
      x = (x + 0x9e3779b9) >>> 0;
    }
  }
  u32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }
  below(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x100000000) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.below(a.length)];
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

// ---- reading the seed: the field catalog ------------------------------------------------

const PT_LOAD = 1, PT_DYNAMIC = 2, PT_NOTE = 4, PT_GNU_EH_FRAME = 0x6474e550;
const SHT_SYMTAB = 2, SHT_STRTAB = 3, SHT_RELA = 4, SHT_HASH = 5, SHT_DYNAMIC = 6, SHT_NOTE = 7, SHT_DYNSYM = 11, SHT_RELR = 19;
const SHT_GNU_HASH = 0x6ffffff6, SHT_GNU_VERDEF = 0x6ffffffd, SHT_GNU_VERNEED = 0x6ffffffe, SHT_GNU_VERSYM = 0x6fffffff, SHT_SYMTAB_SHNDX = 18;

const DT_NAMES: Record<number, string> = {
  1: "DT_NEEDED", 2: "DT_PLTRELSZ", 4: "DT_HASH", 5: "DT_STRTAB", 6: "DT_SYMTAB", 7: "DT_RELA", 8: "DT_RELASZ", 9: "DT_RELAENT",
  10: "DT_STRSZ", 11: "DT_SYMENT", 14: "DT_SONAME", 20: "DT_PLTREL", 23: "DT_JMPREL", 35: "DT_RELRSZ", 36: "DT_RELR", 37: "DT_RELRENT",
  0x6ffffef5: "DT_GNU_HASH", 0x6ffffff0: "DT_VERSYM", 0x6ffffffc: "DT_VERDEF", 0x6ffffffd: "DT_VERDEFNUM", 0x6ffffffe: "DT_VERNEED",
  0x6fffffff: "DT_VERNEEDNUM",
};
/** d_val holds an address (relocated by ld.so in a loaded image, see assembly/elf/file.ts). */
const DT_PTRS = new Set([4, 5, 6, 7, 23, 36, 0x6ffffef5, 0x6ffffff0, 0x6ffffffc, 0x6ffffffe]);

/** At most `max` evenly spread indices of n (a table of thousands: a sample, first and last included). */
function sample(n: number, max: number): number[] {
  if (n <= max) return [...Array(n).keys()];
  const r: number[] = [];
  for (let i = 0; i < max; i++) r.push(Math.floor((i * (n - 1)) / (max - 1)));
  return r;
}

interface Shdr {
  index: number;
  at: number; // offset of the header
  name: number;
  type: number;
  flags: bigint;
  addr: number;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
}

/** The field catalog of an ELF file, in file offsets. */
export function fileFields(b: Uint8Array): { fields: Field[]; magic: bigint[]; dynPtrFields: Field[] } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ok = (o: number, n: number) => o >= 0 && o + n <= b.length;
  const fields: Field[] = [];
  const magic = new Set<bigint>([BigInt(b.length)]);
  const dynPtrFields: Field[] = [];
  const f = (off: number, size: 1 | 2 | 4 | 8, name: string) => {
    if (ok(off, size)) fields.push({ off, size, name });
  };
  for (const [o, s, n] of [
    [4, 1, "EI_CLASS"], [5, 1, "EI_DATA"], [6, 1, "EI_VERSION"], [16, 2, "e_type"], [18, 2, "e_machine"], [24, 8, "e_entry"], [32, 8, "e_phoff"],
    [40, 8, "e_shoff"], [52, 2, "e_ehsize"], [54, 2, "e_phentsize"], [56, 2, "e_phnum"], [58, 2, "e_shentsize"], [60, 2, "e_shnum"], [62, 2, "e_shstrndx"],
  ] as const) f(o, s, n);

  // Program headers.
  const phoff = Number(v.getBigUint64(32, true));
  const phnum = v.getUint16(56, true);
  magic.add(BigInt(phnum));
  const phdrs: Array<{ type: number; offset: number; vaddr: number; filesz: number }> = [];
  for (let i = 0; i < phnum && ok(phoff + i * 56, 56); i++) {
    const o = phoff + i * 56;
    phdrs.push({ type: v.getUint32(o, true), offset: Number(v.getBigUint64(o + 8, true)), vaddr: Number(v.getBigUint64(o + 16, true)), filesz: Number(v.getBigUint64(o + 32, true)) });
    for (const [d, s, n] of [[0, 4, "p_type"], [8, 8, "p_offset"], [16, 8, "p_vaddr"], [32, 8, "p_filesz"], [40, 8, "p_memsz"], [48, 8, "p_align"]] as const) {
      f(o + d, s, `program header ${i} ${n}`);
    }
  }
  const vaddrToOff = (a: number, n = 1): number => {
    for (const p of phdrs) if (p.type === PT_LOAD && a >= p.vaddr && a + n <= p.vaddr + p.filesz) return p.offset + (a - p.vaddr);
    return -1;
  };

  // Section headers.
  const shoff = Number(v.getBigUint64(40, true));
  const shnum = v.getUint16(60, true);
  magic.add(BigInt(shnum));
  const sh: Shdr[] = [];
  for (let i = 0; i < shnum && shoff && ok(shoff + i * 64, 64); i++) {
    const o = shoff + i * 64;
    sh.push({
      index: i, at: o, name: v.getUint32(o, true), type: v.getUint32(o + 4, true), flags: v.getBigUint64(o + 8, true), addr: Number(v.getBigUint64(o + 16, true)),
      offset: Number(v.getBigUint64(o + 24, true)), size: Number(v.getBigUint64(o + 32, true)), link: v.getUint32(o + 40, true), info: v.getUint32(o + 44, true),
      entsize: Number(v.getBigUint64(o + 56, true)),
    });
    for (const [d, s, n] of [[0, 4, "sh_name"], [4, 4, "sh_type"], [8, 8, "sh_flags"], [24, 8, "sh_offset"], [32, 8, "sh_size"], [40, 4, "sh_link"], [44, 4, "sh_info"], [48, 8, "sh_addralign"], [56, 8, "sh_entsize"]] as const) {
      f(o + d, s, `section ${i} ${n}`);
    }
  }
  for (const s of sh) {
    magic.add(BigInt(s.size));
    if (s.entsize) magic.add(BigInt(s.size / s.entsize));
  }
  const data = (s: Shdr) => s.type !== 8 && ok(s.offset, s.size);

  for (const s of sh) {
    if (!data(s)) continue;
    const tag = `section ${s.index}`;
    if (s.type === SHT_SYMTAB || s.type === SHT_DYNSYM) {
      const n = Math.floor(s.size / 24);
      for (const i of sample(n, 48)) {
        const o = s.offset + i * 24;
        for (const [d, sz, nm] of [[0, 4, "st_name"], [4, 1, "st_info"], [6, 2, "st_shndx"], [8, 8, "st_value"], [16, 8, "st_size"]] as const) f(o + d, sz, `${tag} symbol ${i} ${nm}`);
      }
    } else if (s.type === SHT_RELA) {
      for (const i of sample(Math.floor(s.size / 24), 32)) {
        f(s.offset + i * 24, 8, `${tag} rela ${i} r_offset`);
        f(s.offset + i * 24 + 8, 4, `${tag} rela ${i} r_type`);
        f(s.offset + i * 24 + 12, 4, `${tag} rela ${i} r_sym`);
      }
    } else if (s.type === SHT_RELR) {
      for (const i of sample(Math.floor(s.size / 8), 16)) f(s.offset + i * 8, 8, `${tag} relr word ${i}`);
    } else if (s.type === SHT_DYNAMIC) {
      for (let i = 0; i < Math.floor(s.size / 16); i++) {
        const o = s.offset + i * 16;
        const t = Number(v.getBigInt64(o, true));
        const nm = DT_NAMES[t] ?? `tag ${t}`;
        f(o, 8, `dynamic ${i} ${nm} d_tag`);
        f(o + 8, 8, `dynamic ${i} ${nm} d_val`);
        if (DT_PTRS.has(t)) dynPtrFields.push({ off: o + 8, size: 8, name: nm });
        if (t === 0) break;
      }
    } else if (s.type === SHT_NOTE) {
      noteFields(v, s.offset, s.size, tag, f);
    } else if (s.type === SHT_GNU_HASH && s.size >= 16) {
      const nb = v.getUint32(s.offset, true), bloom = v.getUint32(s.offset + 8, true);
      magic.add(BigInt(nb));
      for (const [d, nm] of [[0, "nbuckets"], [4, "symoffset"], [8, "bloom_size"], [12, "bloom_shift"]] as const) f(s.offset + d, 4, `${tag} gnu_hash ${nm}`);
      const buckets = s.offset + 16 + bloom * 8;
      for (const i of sample(nb, 16)) f(buckets + i * 4, 4, `${tag} gnu_hash bucket ${i}`);
      const chains = buckets + nb * 4;
      for (const i of sample(Math.max(0, Math.floor((s.offset + s.size - chains) / 4)), 16)) f(chains + i * 4, 4, `${tag} gnu_hash chain ${i}`);
    } else if (s.type === SHT_HASH && s.size >= 8) {
      f(s.offset, 4, `${tag} hash nbucket`);
      f(s.offset + 4, 4, `${tag} hash nchain`);
    } else if (s.type === SHT_GNU_VERSYM) {
      for (const i of sample(Math.floor(s.size / 2), 32)) f(s.offset + i * 2, 2, `${tag} versym ${i}`);
    } else if (s.type === SHT_GNU_VERDEF) {
      verdefFields(v, s.offset, s.size, s.info, tag, f);
    } else if (s.type === SHT_GNU_VERNEED) {
      verneedFields(v, s.offset, s.size, s.info, tag, f);
    } else if (s.type === SHT_SYMTAB_SHNDX) {
      for (const i of sample(Math.floor(s.size / 4), 8)) f(s.offset + i * 4, 4, `${tag} shndx ${i}`);
    } else if (s.type === SHT_STRTAB) {
      magic.add(BigInt(s.size));
      // The last bytes of a string table: its terminating NULs.
      for (let k = 1; k <= 2 && k <= s.size; k++) f(s.offset + s.size - k, 1, `${tag} strtab byte -${k}`);
    }
  }
  for (const p of phdrs) {
    if (p.type === PT_NOTE && sh.length === 0) noteFields(v, p.offset, p.filesz, "PT_NOTE", f);
    if (p.type === PT_GNU_EH_FRAME) {
      const o = vaddrToOff(p.vaddr, 8);
      if (o >= 0) {
        f(o, 1, "eh_frame_hdr version");
        f(o + 1, 1, "eh_frame_hdr eh_frame_ptr_enc");
        f(o + 4, 4, "eh_frame_hdr eh_frame_ptr");
      }
    }
    if (p.type === PT_DYNAMIC && sh.length === 0) {
      for (let i = 0; i < Math.floor(p.filesz / 16) && ok(p.offset + i * 16, 16); i++) {
        const o = p.offset + i * 16;
        const t = Number(v.getBigInt64(o, true));
        f(o + 8, 8, `dynamic ${i} ${DT_NAMES[t] ?? t} d_val`);
        if (t === 0) break;
      }
    }
  }
  return { fields, magic: [...magic], dynPtrFields };
}

type AddField = (off: number, size: 1 | 2 | 4 | 8, name: string) => void;

function noteFields(v: DataView, off: number, size: number, tag: string, f: AddField): void {
  let p = 0;
  for (let k = 0; k < 16 && p + 12 <= size && off + p + 12 <= v.byteLength; k++) {
    const namesz = v.getUint32(off + p, true), descsz = v.getUint32(off + p + 4, true);
    f(off + p, 4, `${tag} note ${k} n_namesz`);
    f(off + p + 4, 4, `${tag} note ${k} n_descsz`);
    f(off + p + 8, 4, `${tag} note ${k} n_type`);
    p += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3);
  }
}

function verdefFields(v: DataView, off: number, size: number, count: number, tag: string, f: AddField): void {
  let p = off;
  for (let i = 0; i < Math.min(count, 64) && p + 20 <= off + size; i++) {
    for (const [d, s, n] of [[2, 2, "vd_flags"], [4, 2, "vd_ndx"], [6, 2, "vd_cnt"], [12, 4, "vd_aux"], [16, 4, "vd_next"]] as const) f(p + d, s, `${tag} verdef ${i} ${n}`);
    const a = p + v.getUint32(p + 12, true);
    if (a + 8 <= off + size) {
      f(a, 4, `${tag} verdef ${i} vda_name`);
      f(a + 4, 4, `${tag} verdef ${i} vda_next`);
    }
    const next = v.getUint32(p + 16, true);
    if (!next) break;
    p += next;
  }
}

function verneedFields(v: DataView, off: number, size: number, count: number, tag: string, f: AddField): void {
  let p = off;
  for (let i = 0; i < Math.min(count, 32) && p + 16 <= off + size; i++) {
    for (const [d, s, n] of [[2, 2, "vn_cnt"], [4, 4, "vn_file"], [8, 4, "vn_aux"], [12, 4, "vn_next"]] as const) f(p + d, s, `${tag} verneed ${i} ${n}`);
    let a = p + v.getUint32(p + 8, true);
    const cnt = v.getUint16(p + 2, true);
    for (let j = 0; j < Math.min(cnt, 32) && a + 16 <= off + size; j++) {
      for (const [d, s, n] of [[4, 2, "vna_flags"], [6, 2, "vna_other"], [8, 4, "vna_name"], [12, 4, "vna_next"]] as const) f(a + d, s, `${tag} verneed ${i} aux ${j} ${n}`);
      const next = v.getUint32(a + 12, true);
      if (!next) break;
      a += next;
    }
    const next = v.getUint32(p + 12, true);
    if (!next) break;
    p += next;
  }
}

interface LoadSeg {
  offset: number;
  vaddr: number;
  filesz: number;
}

/** File offset -> image offset, for a field inside a PT_LOAD's file bytes (else -1). */
function fileToImage(loads: LoadSeg[], firstVaddr: number, off: number, size: number): number {
  for (const l of loads) if (off >= l.offset && off + size <= l.offset + l.filesz) return l.vaddr + (off - l.offset) - firstVaddr;
  return -1;
}

export function makeFileSeed(name: string, bytes: Uint8Array): Seed {
  const { fields, magic } = fileFields(bytes);
  return { name, bytes, fields, magic };
}

/** An image seed: `image` laid out from `file` (helpers/elf-image.ts); fields mapped into it. */
export function makeImageSeed(name: string, file: Uint8Array, image: Uint8Array, firstVaddr: number, loads: LoadSeg[], base: bigint): Seed {
  const { fields, magic, dynPtrFields } = fileFields(file);
  const map = (fl: Field[]) =>
    fl.flatMap((x) => {
      const o = fileToImage(loads, firstVaddr, x.off, x.size);
      return o >= 0 && o + x.size <= image.length ? [{ ...x, off: o }] : [];
    });
  magic.push(BigInt(image.length), base);
  return { name, bytes: image, base, fields: map(fields), magic, dynPtrs: map(dynPtrFields).map((x) => x.off), firstVaddr: BigInt(firstVaddr) };
}

// ---- making a case --------------------------------------------------------------------

const MASK = { 1: 0xffn, 2: 0xffffn, 4: 0xffffffffn, 8: 0xffffffffffffffffn } as const;

function readField(b: Uint8Array, f: Field): bigint {
  let x = 0n;
  for (let i = f.size - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[f.off + i]);
  return x;
}

function writeField(b: Uint8Array, off: number, size: 1 | 2 | 4 | 8, x: bigint): void {
  x &= MASK[size];
  for (let i = 0; i < size; i++) {
    b[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
}

/** A value for field `f` (current value v) aimed at the edges. */
function edgeValue(r: Rng, seed: Seed, bytes: Uint8Array, f: Field, v: bigint): bigint {
  const max = MASK[f.size];
  const len = BigInt(bytes.length);
  switch (r.below(16)) {
    case 0: return r.pick([0n, 1n, 2n]);
    case 1: return r.pick([max, max - 1n, max >> 1n, (max >> 1n) + 1n]);
    case 2: return v + BigInt(r.below(8) + 1);
    case 3: return v - BigInt(r.below(8) + 1);
    case 4: return v ^ (1n << BigInt(r.below(f.size * 8)));
    case 5: return r.pick([len, len - 1n, len + 1n, len - BigInt(r.below(64)), len + BigInt(r.below(4096))]);
    case 6: {
      const m = r.pick(seed.magic);
      return m + BigInt(r.below(3)) - 1n;
    }
    case 7: return BigInt(r.below(bytes.length + 64));
    case 8: return r.u64();
    case 9: return v * 2n + BigInt(r.below(2));
    case 10: return v >> BigInt(r.below(8) + 1);
    case 11: {
      const g = r.pick(seed.fields);
      return readField(seed.bytes, g);
    }
    case 12: return r.pick([0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 1n << 63n, 0xff00n, 0xfff1n, 0xfff2n, 0xffffn, 0x1000n, 0x10000n]);
    case 13: return v + BigInt(r.below(0x10000)) * BigInt(r.chance(0.5) ? 1 : -1);
    case 14: return seed.base !== undefined ? seed.base + BigInt(r.below(bytes.length + 4096)) : BigInt(r.below(256));
    default: return BigInt(r.below(64));
  }
}

/** Interesting lengths to cut at: the ends of fields, tables and the file, +-small. */
function cutPoint(r: Rng, seed: Seed, len: number): number {
  switch (r.below(4)) {
    case 0: {
      const f = r.pick(seed.fields);
      return f.off + r.below(f.size + 1);
    }
    case 1: return len - 1 - r.below(64);
    case 2: return r.below(4096);
    default: return r.below(len);
  }
}

/** Case `id` of `seed` for a run with `runSeed`: deterministic. */
export function makeCase(seed: Seed, id: number, runSeed: number): Case {
  const r = new Rng((Math.imul(id, 0x9e3779b1) ^ runSeed ^ Math.imul(hashName(seed.name), 0x85ebca77)) >>> 0);
  let bytes: Uint8Array = seed.bytes.slice();
  const what: string[] = [];
  let image = seed.base !== undefined;
  let base = seed.base ?? 0n;
  // An image as ld.so leaves it: its dynamic d_ptr entries relocated by the load bias.
  if (image && seed.dynPtrs && r.chance(0.5)) {
    const bias = base - (seed.firstVaddr ?? 0n);
    for (const o of seed.dynPtrs) writeField(bytes, o, 8, readField(bytes, { off: o, size: 8, name: "" }) + bias);
    what.push("d_ptr relocated");
  }
  const edits = r.chance(0.6) ? 1 : 2 + r.below(3);
  for (let k = 0; k < edits; k++) {
    const kind = r.below(100);
    if (kind < 62 && seed.fields.length) {
      const f = r.pick(seed.fields);
      if (f.off + f.size > bytes.length) continue;
      const v = readField(bytes, f);
      const x = edgeValue(r, seed, bytes, f, v) & MASK[f.size];
      writeField(bytes, f.off, f.size, x);
      what.push(`${f.name}=${x.toString(16)}`);
    } else if (kind < 80) {
      // Random bytes, mostly near a field.
      const n = 1 + r.below(16);
      const near = r.chance(0.7) && seed.fields.length ? r.pick(seed.fields).off : -1;
      for (let i = 0; i < n; i++) {
        const at = near >= 0 ? Math.min(bytes.length - 1, Math.max(0, near + r.below(128) - 32)) : r.below(bytes.length);
        bytes[at] = r.below(256);
      }
      what.push(`${n} random bytes${near >= 0 ? ` near ${near}` : ""}`);
    } else if (kind < 88) {
      // A block cleared, filled with 0xff, or copied over another place.
      const len = 1 + r.below(r.chance(0.5) ? 64 : 4096);
      const at = r.chance(0.5) && seed.fields.length ? r.pick(seed.fields).off : r.below(bytes.length);
      const end = Math.min(bytes.length, at + len);
      const op = r.below(3);
      if (op === 0) bytes.fill(0, at, end);
      else if (op === 1) bytes.fill(0xff, at, end);
      else bytes.copyWithin(at, r.below(bytes.length), r.below(bytes.length) + (end - at));
      what.push(`block ${["zero", "ff", "copy"][op]} ${at}+${end - at}`);
    } else if (kind < 96) {
      const cut = Math.max(0, Math.min(bytes.length, cutPoint(r, seed, bytes.length)));
      bytes = bytes.slice(0, cut);
      what.push(`truncated to ${cut}`);
    } else {
      // The other entry point: a file opened as an image or the other way round.
      if (image) {
        image = false;
        what.push("opened as a file");
      } else if (bytes.length >= 64 && bytes[16] !== 1) {
        image = true;
        base = 0x7f0000000000n + BigInt(r.below(16)) * 0x1000n;
        what.push(`opened as an image at ${base.toString(16)}`);
      }
    }
  }
  return { id, seed: seed.name, bytes, image, base, what: what.join(", ") };
}

function hashName(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}
