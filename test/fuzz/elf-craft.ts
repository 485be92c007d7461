// Crafted ELF inputs for the fuzz test: small writers of worst cases that random
// mutation of real files does not reach, aimed at run time (work per byte of input)
// rather than at bounds: long NUL-free strings shared by many names, long version chains.
//
// buildElf() writes an ET_REL or ET_DYN file from a list of sections (data + header
// fields); section 0 and .shstrtab are added, offsets assigned in order.

export interface CraftSection {
  name: string;
  type: number;
  data: Uint8Array;
  link?: number;
  info?: number;
  flags?: bigint;
  entsize?: number;
  addralign?: number;
  /** sh_name override (an offset into .shstrtab, valid or not). */
  nameOffset?: number;
}

export function buildElf(sections: CraftSection[], opts: { type?: number; shstrtab?: Uint8Array; shstrtabNameOffsets?: boolean } = {}): Uint8Array {
  // .shstrtab: the names, unless given.
  const names: number[] = [];
  let shstr: Uint8Array;
  if (opts.shstrtab) {
    shstr = opts.shstrtab;
    for (const s of sections) names.push(s.nameOffset ?? 0);
  } else {
    const parts: number[] = [0];
    for (const s of sections) {
      names.push(parts.length);
      for (const c of s.name) parts.push(c.charCodeAt(0));
      parts.push(0);
    }
    names.push(parts.length);
    for (const c of ".shstrtab") parts.push(c.charCodeAt(0));
    parts.push(0);
    shstr = Uint8Array.from(parts);
  }
  const all = [...sections.map((s, i) => ({ ...s, sh_name: s.nameOffset ?? names[i] })), { name: ".shstrtab", type: 3, data: shstr, sh_name: names[sections.length] ?? 0 }];
  let off = 64;
  const offsets: number[] = [];
  for (const s of all) {
    off = (off + 7) & ~7;
    offsets.push(off);
    off += s.data.length;
  }
  off = (off + 7) & ~7;
  const shoff = off;
  const shnum = all.length + 1;
  const out = new Uint8Array(shoff + shnum * 64);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setUint16(16, opts.type ?? 1, true); // ET_REL
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true);
  v.setBigUint64(40, BigInt(shoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(58, 64, true);
  v.setUint16(60, shnum, true);
  v.setUint16(62, shnum - 1, true); // .shstrtab is last
  all.forEach((s, i) => {
    out.set(s.data, offsets[i]);
    const o = shoff + (i + 1) * 64;
    v.setUint32(o, s.sh_name, true);
    v.setUint32(o + 4, s.type, true);
    v.setBigUint64(o + 8, s.flags ?? 0n, true);
    v.setBigUint64(o + 24, BigInt(offsets[i]), true);
    v.setBigUint64(o + 32, BigInt(s.data.length), true);
    v.setUint32(o + 40, s.link ?? 0, true);
    v.setUint32(o + 44, s.info ?? 0, true);
    v.setBigUint64(o + 48, BigInt(s.addralign ?? 1), true);
    v.setBigUint64(o + 56, BigInt(s.entsize ?? 0), true);
  });
  return out;
}

const SHT_SYMTAB = 2, SHT_STRTAB = 3, SHT_PROGBITS = 1;

/** A string table of `len` bytes: 'A's and one NUL at the end. */
function longString(len: number): Uint8Array {
  const s = new Uint8Array(len).fill(0x41);
  s[len - 1] = 0;
  return s;
}

/** `n` symbols, every name the same `len`-byte string: n x len bytes to scan, name by name. */
export function sharedLongSymbolNames(n: number, len: number): Uint8Array {
  const syms = new Uint8Array(n * 24); // st_name 0 everywhere, STT_NOTYPE, SHN_UNDEF
  return buildElf([
    { name: ".symtab", type: SHT_SYMTAB, data: syms, link: 2, info: 1, entsize: 24, addralign: 8 },
    { name: ".strtab", type: SHT_STRTAB, data: longString(len) },
  ]);
}

/** `n` sections, every sh_name the same `len`-byte string of .shstrtab. */
export function sharedLongSectionNames(n: number, len: number): Uint8Array {
  const sections: CraftSection[] = [];
  for (let i = 0; i < n; i++) sections.push({ name: "", type: SHT_PROGBITS, data: new Uint8Array(0), nameOffset: 0 });
  return buildElf(sections, { shstrtab: longString(len) });
}

/**
 * .gnu.version_r with one file and `n` requirements of increasing version index: a
 * version table grown one index at a time copies n^2/2 entries.
 */
export function manyVersionRequirements(n: number): Uint8Array {
  const SHT_DYNSYM = 11, SHT_GNU_VERNEED = 0x6ffffffe;
  const str = Uint8Array.from([0, 0x6c, 0x69, 0x62, 0x2e, 0x73, 0x6f, 0, 0x56, 0x31, 0]); // "", "lib.so", "V1"
  const vn = new Uint8Array(16 + n * 16);
  const v = new DataView(vn.buffer);
  v.setUint16(0, 1, true); // vn_version
  v.setUint16(2, Math.min(n, 0xffff), true); // vn_cnt
  v.setUint32(4, 1, true); // vn_file "lib.so"
  v.setUint32(8, 16, true); // vn_aux
  for (let i = 0; i < n; i++) {
    const a = 16 + i * 16;
    v.setUint16(a + 6, 2 + i, true); // vna_other: the version index
    v.setUint32(a + 8, 8, true); // vna_name "V1"
    v.setUint32(a + 12, i + 1 < n ? 16 : 0, true); // vna_next
  }
  return buildElf(
    [
      { name: ".dynsym", type: SHT_DYNSYM, data: new Uint8Array(24), link: 2, info: 1, entsize: 24, addralign: 8, flags: 2n },
      { name: ".dynstr", type: SHT_STRTAB, data: str, flags: 2n },
      { name: ".gnu.version_r", type: SHT_GNU_VERNEED, data: vn, link: 2, info: 1, flags: 2n, addralign: 8 },
    ],
    { type: 3 },
  );
}

/** The crafted cases of the fuzz test, by name (1 MB at most). */
export function craftedCases(): Array<{ name: string; bytes: Uint8Array }> {
  return [
    { name: "crafted-shared-symbol-name", bytes: sharedLongSymbolNames(20_000, 512 << 10) },
    { name: "crafted-shared-section-name", bytes: sharedLongSectionNames(8_000, 512 << 10) },
    { name: "crafted-version-chain", bytes: manyVersionRequirements(0x7ffd) },
  ];
}
