// Compressed debug sections, inflated for the flags check (flags.ts). The core reads
// DWARF as it is in the file and refuses compressed sections (docs/core-abi.md,
// diff_units: 741); here a copy of the file is made whose compressed sections the
// compile units are read from are replaced by their inflated bytes, and the core reads
// that copy. Two forms exist:
//
//   SHF_COMPRESSED (0x800; ELF gABI, "Compressed Sections"; gcc -gz, ld and objcopy
//   --compress-debug-sections=zlib|zstd): the section starts with an Elf64_Chdr
//     0 ch_type u32 (1 ELFCOMPRESS_ZLIB, 2 ELFCOMPRESS_ZSTD)   4 ch_reserved u32
//     8 ch_size u64 (inflated size)                           16 ch_addralign u64
//    24 the compressed stream (zlib: RFC 1950; zstd: RFC 8878)
//
//   .zdebug_* (the older GNU form; gcc -gz=zlib-gnu, objcopy ...=zlib-gnu): no flag, the
//   name says it; the section starts with "ZLIB", then the inflated size as a big-endian
//   u64, then a zlib stream; read as the .debug_* section of the same name.
//
// Relocations of a compressed section (an object's .rela.debug_info) apply to the
// inflated bytes and keep pointing at the same section index, so the copy keeps every
// section where it was and only re-points the headers of the inflated ones:
//
//   copy = [ the file as it is ][ inflated section ]...[ new .shstrtab (.zdebug renamed) ]
//   section header: sh_offset, sh_size -> the inflated bytes; SHF_COMPRESSED cleared;
//                   sh_name -> ".debug_*" in the new .shstrtab (.zdebug_* only)
//
// Section headers: ELF64, e_shoff u64 at 0x28, e_shentsize u16 at 0x3a; Elf64_Shdr:
// 0 sh_name u32, 8 sh_flags u64, 24 sh_offset u64, 32 sh_size u64, 48 sh_addralign u64.
import { constants as bufferConstants } from "node:buffer";
import * as zlib from "node:zlib";
import type { ElfReader } from "../core/elf.js";

const SHF_COMPRESSED = 0x800n;
const ELFCOMPRESS_ZLIB = 1;
const ELFCOMPRESS_ZSTD = 2;
const CHDR_SIZE = 24;

/** The sections the core reads compile units from (assembly/diff/producer.ts), as in a file or a .dwo. */
const UNIT_SECTIONS = [".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str", ".debug_str_offsets"];
const isUnitSection = (name: string) => UNIT_SECTIONS.includes(name) || UNIT_SECTIONS.some((s) => name === `${s}.dwo`);

export type Inflated =
  /** Nothing of what the core reads is compressed: read the file as it is. */
  | { kind: "plain" }
  /** A copy of the file with those sections inflated. */
  | { kind: "inflated"; bytes: Uint8Array; sections: string[] }
  /** A section that cannot be inflated here: why, naming the section and the compression. */
  | { kind: "unreadable"; reason: string };

/** Inflates a zlib stream to at most the size its header declares (a damaged or hostile header cannot make it allocate more). */
function inflateTo(stream: Uint8Array, size: bigint): Buffer {
  if (size > BigInt(bufferConstants.MAX_LENGTH)) throw new Error(`it declares ${size} bytes`);
  return zlib.inflateSync(stream, { maxOutputLength: Math.max(1, Number(size)) });
}

/** zstd in this Node (zlib.zstdDecompressSync, Node 22.15/23.8 and later), if any. */
function zstdInflate(): ((b: Uint8Array) => Buffer) | undefined {
  const f = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;
  return typeof f === "function" ? f : undefined;
}

/**
 * The file behind `elf` with the compressed sections the compile units are read from
 * inflated. `file` names it in the reasons.
 */
export function inflateDebugSections(elf: ElfReader, file: string): Inflated {
  const sections = elf.sections();
  const todo: Array<{ index: number; name: string; data: Uint8Array }> = [];
  for (const s of sections) {
    if (!s.hasData) continue;
    const gnu = s.name.startsWith(".zdebug_");
    const name = gnu ? `.debug_${s.name.slice(".zdebug_".length)}` : s.name;
    if (!isUnitSection(name)) continue;
    if (!gnu && (s.flags & SHF_COMPRESSED) === 0n) continue;
    const raw = elf.sectionData(s);
    const what = `${file}: ${s.name}`;
    let data: Uint8Array;
    try {
      if (gnu) {
        if (raw.length < 12 || Buffer.from(raw.subarray(0, 4)).toString("latin1") !== "ZLIB") {
          return { kind: "unreadable", reason: `${what} does not start with "ZLIB" and its size (a .zdebug section)` };
        }
        const size = Buffer.from(raw).readBigUInt64BE(4);
        data = inflateTo(raw.subarray(12), size);
        if (BigInt(data.length) !== size) return { kind: "unreadable", reason: `${what} inflates to ${data.length} bytes, its header says ${size}` };
      } else {
        if (raw.length < CHDR_SIZE) return { kind: "unreadable", reason: `${what} is compressed (SHF_COMPRESSED) but shorter than its Elf64_Chdr` };
        const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        const type = v.getUint32(0, true);
        const size = v.getBigUint64(8, true);
        if (type === ELFCOMPRESS_ZLIB) {
          data = inflateTo(raw.subarray(CHDR_SIZE), size);
        } else if (type === ELFCOMPRESS_ZSTD) {
          const zstd = zstdInflate();
          if (!zstd) {
            return {
              kind: "unreadable",
              reason: `${what} is compressed with zstd (SHF_COMPRESSED, ELFCOMPRESS_ZSTD), which Node ${process.version} cannot inflate (zlib.zstdDecompressSync: Node 22.15 and later); decompress it first (objcopy --decompress-debug-sections)`,
            };
          }
          data = zstd(raw.subarray(CHDR_SIZE));
        } else {
          return { kind: "unreadable", reason: `${what} is compressed with ch_type ${type}, which is neither zlib (1) nor zstd (2)` };
        }
        if (BigInt(data.length) !== size) return { kind: "unreadable", reason: `${what} inflates to ${data.length} bytes, its Elf64_Chdr says ${size}` };
      }
    } catch (e) {
      return { kind: "unreadable", reason: `${what} cannot be inflated: ${(e as Error).message}` };
    }
    todo.push({ index: s.index, name, data });
  }
  if (!todo.length) return { kind: "plain" };

  const orig = elf.core.copyOut(elf.ptr, elf.length);
  const hv = new DataView(orig.buffer, orig.byteOffset, orig.byteLength);
  const shoff = Number(hv.getBigUint64(0x28, true));
  const shentsize = hv.getUint16(0x3a, true);
  // The new .shstrtab, when a .zdebug_* section is renamed.
  const renamed = todo.filter((t) => sections[t.index].name !== t.name);
  const e_shstrndx = hv.getUint16(0x3e, true);
  const shstrndx = e_shstrndx === 0xffff ? sections[0].link : e_shstrndx; // SHN_XINDEX: in section 0's sh_link
  let shstr: Uint8Array | undefined;
  const nameAt = new Map<number, number>();
  if (renamed.length && sections[shstrndx]) {
    const old = elf.sectionData(sections[shstrndx]);
    const parts: Uint8Array[] = [old];
    let at = old.length;
    for (const t of renamed) {
      nameAt.set(t.index, at);
      const b = Buffer.from(`${t.name}\0`, "latin1");
      parts.push(b);
      at += b.length;
    }
    shstr = Buffer.concat(parts);
  }
  const align8 = (n: number) => (n + 7) & ~7;
  let size = align8(orig.length);
  const placed = todo.map((t) => {
    const offset = size;
    size = align8(offset + t.data.length);
    return { ...t, offset };
  });
  const shstrOffset = size;
  if (shstr) size += shstr.length;
  const out = new Uint8Array(size);
  out.set(orig);
  const v = new DataView(out.buffer);
  for (const t of placed) {
    out.set(t.data, t.offset);
    const h = shoff + t.index * shentsize;
    v.setBigUint64(h + 8, v.getBigUint64(h + 8, true) & ~SHF_COMPRESSED, true);
    v.setBigUint64(h + 24, BigInt(t.offset), true);
    v.setBigUint64(h + 32, BigInt(t.data.length), true);
    if (nameAt.has(t.index)) v.setUint32(h, nameAt.get(t.index)!, true);
  }
  if (shstr) {
    out.set(shstr, shstrOffset);
    const h = shoff + shstrndx * shentsize;
    v.setBigUint64(h + 24, BigInt(shstrOffset), true);
    v.setBigUint64(h + 32, BigInt(shstr.length), true);
  }
  return { kind: "inflated", bytes: out, sections: todo.map((t) => sections[t.index].name) };
}
