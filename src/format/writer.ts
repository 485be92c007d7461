// The writer: a PatchPackage -> the ELF container of docs/format.md (layout in defs.ts).
// encodePackage() is pure (bytes out; throws a ModelError naming what is wrong);
// writePackageFile() adds the atomic write: a temporary file in the same directory,
// fsync, rename over the destination, so a reader never sees a partial package and on
// any error nothing is left behind.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { randomBytes, type KeyObject } from "node:crypto";
import * as D from "./defs.js";
import { ModelError, PackageError } from "./errors.js";
import { validateModel, type LocalIdentity, type PatchPackage, type PackageSymbol } from "./model.js";
import { contentHash, encodeSeal, makeSeal, fromHex, type CanonicalSection } from "./seal.js";

const encoder = new TextEncoder();

/** A string table: NUL-terminated strings, offset 0 is "", each string stored once. */
class StringTable {
  private readonly parts: Uint8Array[] = [new Uint8Array(1)];
  private readonly seen = new Map<string, number>();
  private size = 1;

  add(s: string | undefined): number {
    if (s === undefined || s === "") return 0;
    const known = this.seen.get(s);
    if (known !== undefined) return known;
    const at = this.size;
    const b = encoder.encode(s);
    this.parts.push(b, new Uint8Array(1));
    this.size += b.length + 1;
    this.seen.set(s, at);
    return at;
  }

  bytes(): Uint8Array {
    return concat(this.parts);
  }
}

/** Byte strings of .patchc.blob, each stored once. */
class Blob {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  add(b: Uint8Array): number {
    const at = this.size;
    this.parts.push(b);
    this.size += b.length;
    return at;
  }

  bytes(): Uint8Array {
    return concat(this.parts);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Fixed-size little-endian records. */
class Records {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(
    count: number,
    readonly size: number,
  ) {
    this.bytes = new Uint8Array(count * size);
    this.view = new DataView(this.bytes.buffer);
  }

  u8(i: number, off: number, v: number): void {
    this.view.setUint8(i * this.size + off, v);
  }
  u16(i: number, off: number, v: number): void {
    this.view.setUint16(i * this.size + off, v, true);
  }
  u32(i: number, off: number, v: number): void {
    this.view.setUint32(i * this.size + off, v, true);
  }
  u64(i: number, off: number, v: bigint): void {
    this.view.setBigUint64(i * this.size + off, v, true);
  }
  set(i: number, off: number, b: Uint8Array): void {
    this.bytes.set(b, i * this.size + off);
  }
}

interface OutSection extends CanonicalSection {
  data?: Uint8Array;
}

const SYM_TYPES: Record<PackageSymbol["type"], number> = { notype: D.STT_NOTYPE, object: D.STT_OBJECT, func: D.STT_FUNC, section: D.STT_SECTION, tls: D.STT_TLS };
const SYM_BINDS: Record<PackageSymbol["bind"], number> = { local: D.STB_LOCAL, global: D.STB_GLOBAL, weak: D.STB_WEAK };

export interface EncodeOptions {
  /** An ed25519 private key (seal.ts signingKey()): the package is signed with it. */
  signKey?: KeyObject;
}

/** The package as bytes. Deterministic: the same model gives the same bytes. */
export function encodePackage(m: PatchPackage, opts: EncodeOptions = {}): Uint8Array {
  validateModel(m);
  const out: OutSection[] = [];
  const add = (s: Omit<OutSection, "addr"> & { addr?: bigint }): number => {
    out.push({ addr: 0n, ...s });
    return out.length; // section index (the null section is 0)
  };

  // Symbols: locals first, stable otherwise. elfSym[i] = ELF index of model symbol i.
  const order = m.symbols.map((_, i) => i).sort((a, b) => Number(m.symbols[a].bind !== "local") - Number(m.symbols[b].bind !== "local") || a - b);
  const elfSym = new Array<number>(m.symbols.length);
  order.forEach((modelIndex, k) => (elfSym[modelIndex] = k + 1));
  const firstGlobal = 1 + m.symbols.filter((s) => s.bind === "local").length;

  // Section indices are known before any data is placed: content sections, each followed
  // by its .rela section, then .symtab, .strtab, the metadata, .shstrtab.
  const elfSec = new Array<number>(m.sections.length);
  let next = 1;
  m.sections.forEach((s, i) => {
    elfSec[i] = next++;
    if (s.relocations.length) next++;
  });
  const symtabIndex = next;
  const strtabIndex = next + 1;
  const meta = Object.fromEntries(D.METADATA_SECTIONS.map((name, k) => [name, next + 2 + k])) as Record<(typeof D.METADATA_SECTIONS)[number], number>;

  for (const [i, s] of m.sections.entries()) {
    add({
      name: s.name,
      type: s.type === "nobits" ? D.SHT_NOBITS : s.type === "unwind" ? D.SHT_X86_64_UNWIND : D.SHT_PROGBITS,
      flags: BigInt(s.flags),
      link: 0,
      info: 0,
      align: BigInt(s.align),
      entsize: BigInt(s.entsize),
      size: BigInt(s.size),
      data: s.data,
    });
    if (!s.relocations.length) continue;
    const rela = new Records(s.relocations.length, D.RELA_SIZE);
    s.relocations.forEach((r, j) => {
      rela.u64(j, 0, BigInt(r.offset));
      rela.u64(j, 8, (BigInt(elfSym[r.symbol]) << 32n) | BigInt(r.type));
      rela.view.setBigInt64(j * D.RELA_SIZE + 16, r.addend, true);
    });
    add({ name: `.rela${s.name}`, type: D.SHT_RELA, flags: BigInt(D.SHF_INFO_LINK), link: symtabIndex, info: elfSec[i], align: 8n, entsize: BigInt(D.RELA_SIZE), size: BigInt(rela.bytes.length), data: rela.bytes });
  }

  const strtab = new StringTable();
  const symtab = new Records(m.symbols.length + 1, D.SYM_SIZE);
  for (const [i, s] of m.symbols.entries()) {
    const k = elfSym[i];
    symtab.u32(k, 0, strtab.add(s.name));
    symtab.u8(k, 4, (SYM_BINDS[s.bind] << 4) | SYM_TYPES[s.type]);
    symtab.u8(k, 5, D.STV_NAMES.indexOf(s.visibility ?? "default"));
    symtab.u16(k, 6, s.section === undefined ? D.SHN_UNDEF : elfSec[s.section]);
    symtab.u64(k, 8, BigInt(s.value));
    symtab.u64(k, 16, BigInt(s.size));
  }
  if (out.length + 1 !== symtabIndex) throw new Error("patchc bug: section numbering");
  add({ name: ".symtab", type: D.SHT_SYMTAB, flags: 0n, link: strtabIndex, info: firstGlobal, align: 8n, entsize: BigInt(D.SYM_SIZE), size: BigInt(symtab.bytes.length), data: symtab.bytes });
  const strBytes = strtab.bytes();
  add({ name: ".strtab", type: D.SHT_STRTAB, flags: 0n, link: 0, info: 0, align: 1n, entsize: 0n, size: BigInt(strBytes.length), data: strBytes });

  // Metadata.
  const strs = new StringTable();
  const blob = new Blob();
  const local = (rec: Records, i: number, off: number, l: LocalIdentity | undefined): void => {
    rec.u32(i, off, strs.add(l?.file));
    rec.u32(i, off + 4, l?.sympos ?? 0);
  };

  const pieces = m.functions.flatMap((f) => f.pieces);
  const funcs = new Records(m.functions.length, D.FUNC_SIZE);
  const pieceRecs = new Records(pieces.length, D.PIECE_SIZE);
  let p = 0;
  m.functions.forEach((f, i) => {
    funcs.u32(i, 0, strs.add(f.name));
    local(funcs, i, 4, f.local);
    funcs.u32(i, 12, elfSym[f.symbol]);
    funcs.u8(i, 16, D.FUNC_KINDS.indexOf(f.kind));
    funcs.u8(i, 17, f.original?.sha256 ? 1 : 0);
    funcs.u32(i, 20, p);
    funcs.u32(i, 24, f.pieces.length);
    funcs.u32(i, 28, strs.add(f.after));
    if (f.original) {
      funcs.u64(i, 32, f.original.addr);
      funcs.u64(i, 40, f.original.size);
      funcs.u32(i, 48, blob.add(f.original.site));
      funcs.u32(i, 52, f.original.site.length);
      if (f.original.sha256) funcs.u32(i, 56, blob.add(fromHex(f.original.sha256)));
    }
    if (f.fde) {
      funcs.u32(i, 60, f.fde.offset);
      funcs.u32(i, 64, f.fde.size);
    }
    for (const piece of f.pieces) {
      pieceRecs.u32(p, 0, strs.add(piece.name));
      local(pieceRecs, p, 4, piece.local);
      pieceRecs.u32(p, 12, piece.symbol === undefined ? 0 : elfSym[piece.symbol]);
      pieceRecs.u8(p, 16, D.PIECE_KINDS.indexOf(piece.kind));
      pieceRecs.u8(p, 17, piece.original ? 1 : 0);
      if (piece.fde) {
        pieceRecs.u32(p, 20, piece.fde.offset);
        pieceRecs.u32(p, 24, piece.fde.size);
      }
      if (piece.original) {
        pieceRecs.u64(p, 32, piece.original.addr);
        pieceRecs.u64(p, 40, piece.original.size);
      }
      p++;
    }
  });

  const refs = new Records(m.references.length, D.REF_SIZE);
  m.references.forEach((r, i) => {
    refs.u32(i, 0, elfSym[r.symbol]);
    refs.u32(i, 4, strs.add(r.name));
    local(refs, i, 8, r.local);
    refs.u8(i, 16, D.BIND_KINDS.indexOf(r.bind));
    refs.u8(i, 17, D.SCOPES.indexOf(r.scope));
    refs.u8(i, 18, D.REF_TYPES.indexOf(r.type));
    refs.u8(i, 19, r.tls ? D.TLS_MODELS.indexOf(r.tls.model) : 0);
    refs.u32(i, 20, (r.addr !== undefined ? D.REF_HAS_ADDR : 0) | (r.gotSlot !== undefined ? D.REF_HAS_GOT : 0) | (r.pltEntry !== undefined ? D.REF_HAS_PLT : 0));
    refs.u32(i, 24, strs.add(r.version));
    refs.u32(i, 28, strs.add(r.scope === "patch" ? r.patch : r.library));
    refs.u64(i, 32, r.addr ?? 0n);
    refs.u64(i, 40, r.gotSlot ?? 0n);
    refs.u64(i, 48, r.pltEntry ?? 0n);
    refs.u64(i, 56, r.tls?.offset ?? 0n);
  });

  const deps = new Records(m.dependencies.length, D.DEP_SIZE);
  m.dependencies.forEach((d, i) => {
    deps.u32(i, 0, strs.add(d.patchId));
    deps.u32(i, 4, d.hash ? 1 : 0);
    if (d.hash) deps.set(i, 8, fromHex(d.hash));
  });

  const header = new Records(1, D.META_SIZE);
  header.set(0, 0, encoder.encode(D.META_MAGIC));
  header.u16(0, 8, D.FORMAT_MAJOR);
  header.u16(0, 10, D.FORMAT_MINOR);
  header.u32(0, 12, D.META_SIZE);
  header.u32(0, 16, 0);
  header.u32(0, 20, strs.add(m.patchId));
  header.u32(0, 24, strs.add(m.producer));
  header.u32(0, 28, strs.add(m.description));
  header.u32(0, 32, strs.add(m.target.path));
  header.u32(0, 36, strs.add(m.target.soname));
  const buildId = fromHex(m.target.buildId);
  header.u32(0, 40, blob.add(buildId));
  header.u32(0, 44, buildId.length);
  header.u16(0, 48, m.target.type === "exec" ? 2 : 3);
  header.u32(0, 52, m.functions.length);
  header.u32(0, 56, pieces.length);
  header.u32(0, 60, m.references.length);
  header.u32(0, 64, m.dependencies.length);

  const metaSection = (name: string, rec: Records): void => {
    add({ name, type: D.SHT_PROGBITS, flags: BigInt(D.SHF_EXCLUDE), link: meta[D.SEC_STRTAB], info: 0, align: 8n, entsize: BigInt(rec.size), size: BigInt(rec.bytes.length), data: rec.bytes });
  };
  metaSection(D.SEC_META, header);
  metaSection(D.SEC_FUNCS, funcs);
  metaSection(D.SEC_PIECES, pieceRecs);
  metaSection(D.SEC_REFS, refs);
  metaSection(D.SEC_DEPS, deps);
  const strData = strs.bytes();
  add({ name: D.SEC_STRTAB, type: D.SHT_STRTAB, flags: BigInt(D.SHF_EXCLUDE), link: 0, info: 0, align: 1n, entsize: 0n, size: BigInt(strData.length), data: strData });
  const blobData = blob.bytes();
  add({ name: D.SEC_BLOB, type: D.SHT_PROGBITS, flags: BigInt(D.SHF_EXCLUDE), link: 0, info: 0, align: 1n, entsize: 0n, size: BigInt(blobData.length), data: blobData });
  const sealIndex = add({ name: D.SEC_SEAL, type: D.SHT_PROGBITS, flags: BigInt(D.SHF_EXCLUDE), link: 0, info: 0, align: 8n, entsize: 0n, size: BigInt(D.SEAL_SIZE), data: new Uint8Array(D.SEAL_SIZE) });
  if (sealIndex !== meta[D.SEC_SEAL]) throw new Error("patchc bug: metadata section numbering");

  const shstrtab = new StringTable();
  const names = out.map((s) => shstrtab.add(s.name));
  const shstrName = shstrtab.add(".shstrtab");
  const shstrBytes = shstrtab.bytes();
  add({ name: ".shstrtab", type: D.SHT_STRTAB, flags: 0n, link: 0, info: 0, align: 1n, entsize: 0n, size: BigInt(shstrBytes.length), data: shstrBytes });
  names.push(shstrName);

  out[sealIndex - 1].data = encodeSeal(makeSeal(contentHash(out), opts.signKey));
  return layout(out, names);
}

/** ELF header, section data at their alignments, the section header table. */
function layout(sections: OutSection[], names: number[]): Uint8Array {
  const offsets: number[] = [];
  let at = D.EHDR_SIZE;
  for (const s of sections) {
    const align = Number(s.align);
    if (s.type !== D.SHT_NOBITS) at = Math.ceil(at / align) * align;
    offsets.push(at);
    if (s.type !== D.SHT_NOBITS) at += Number(s.size);
  }
  const shoff = Math.ceil(at / 8) * 8;
  const shnum = sections.length + 1;
  if (shnum >= D.SHN_LORESERVE) throw new ModelError("package", `${shnum} sections: more than the ELF section table's 65279 without extended numbering`);
  const file = new Uint8Array(shoff + shnum * D.SHDR_SIZE);
  const v = new DataView(file.buffer);
  file.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0); // \x7fELF, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE
  v.setUint16(16, D.ET_REL, true);
  v.setUint16(18, D.EM_X86_64, true);
  v.setUint32(20, 1, true); // e_version
  v.setBigUint64(40, BigInt(shoff), true);
  v.setUint16(52, D.EHDR_SIZE, true);
  v.setUint16(58, D.SHDR_SIZE, true);
  v.setUint16(60, shnum, true);
  v.setUint16(62, shnum - 1, true); // .shstrtab is last
  sections.forEach((s, k) => {
    if (s.data) file.set(s.data, offsets[k]);
    const h = shoff + (k + 1) * D.SHDR_SIZE;
    v.setUint32(h, names[k], true);
    v.setUint32(h + 4, s.type, true);
    v.setBigUint64(h + 8, s.flags, true);
    v.setBigUint64(h + 16, s.addr, true);
    v.setBigUint64(h + 24, BigInt(offsets[k]), true);
    v.setBigUint64(h + 32, s.size, true);
    v.setUint32(h + 40, s.link, true);
    v.setUint32(h + 44, s.info, true);
    v.setBigUint64(h + 48, s.align, true);
    v.setBigUint64(h + 56, s.entsize, true);
  });
  return file;
}

/** The file system calls of an atomic write (a parameter so tests can make one fail). */
export interface WriteFs {
  openSync: typeof openSync;
  writeSync: (fd: number, data: Uint8Array, offset: number, length: number) => number;
  fsyncSync: typeof fsyncSync;
  closeSync: typeof closeSync;
  renameSync: typeof renameSync;
  unlinkSync: typeof unlinkSync;
}

const nodeFs: WriteFs = { openSync, writeSync: (fd, d, o, l) => writeSync(fd, d, o, l), fsyncSync, closeSync, renameSync, unlinkSync };

/**
 * Writes `data` to `path` atomically: a new file in the same directory, written and
 * fsynced, then renamed over `path`. On failure the temporary file is removed, `path`
 * keeps what it had, and the error (a PackageError) names the file and the reason.
 */
export function atomicWriteFile(path: string, data: Uint8Array, fs: WriteFs = nodeFs): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let fd = -1;
  let created = false;
  try {
    fd = fs.openSync(tmp, "wx", 0o644);
    created = true;
    for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at, data.length - at);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, path);
    created = false;
  } catch (e) {
    if (fd >= 0) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing: the first error is the one to report */
      }
    }
    if (created) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        /* gone already */
      }
    }
    throw new PackageError(path, `cannot write the package: ${(e as Error).message}`);
  }
  try {
    const dir = openSync(dirname(path), "r");
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    /* the rename is done; a directory that cannot be fsynced (some file systems) is not an error */
  }
}

/** Encodes and writes a package atomically; every error is a PackageError naming `path`. */
export function writePackageFile(path: string, m: PatchPackage, opts: EncodeOptions = {}, fs: WriteFs = nodeFs): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = encodePackage(m, opts);
  } catch (e) {
    if (e instanceof ModelError) throw new PackageError(path, e.message);
    throw e;
  }
  atomicWriteFile(path, bytes, fs);
  return bytes;
}
