// The reader: package bytes -> PatchPackage, validating everything (docs/format.md).
// The ELF structure (headers, section table, symbols, relocations) is read and checked by
// the Wasm core's ELF reader (src/core/elf.ts); the metadata sections are decoded here.
// Any defect gives a PackageError naming the file and the reason; no input makes it
// crash or hang (every offset is checked against the section it points into).
//
// Order of checks: ELF structure; the .patchc.meta magic and version (they say how to
// read the rest); the seal's content hash (so a damaged file is reported as damaged);
// then the structure of every section and record, and validateModel() on the result.
import { readFileSync } from "node:fs";
import { CoreError, type Core } from "../core/instance.js";
import { ElfReader, SymbolTableKind, type ElfSection, type ElfSymbol } from "../core/elf.js";
import * as D from "./defs.js";
import { ModelError, PackageError } from "./errors.js";
import { validateModel, type LocalIdentity, type PackageSymbol, type PatchFunction, type PatchPackage, type Piece, type Reference, type Section } from "./model.js";
import { contentHash, decodeSeal, toHex, type Seal } from "./seal.js";

export interface ReadPackage {
  file: string;
  format: { major: number; minor: number };
  model: PatchPackage;
  /** sha256 of the canonical contents, lowercase hex (verified against the seal). */
  hash: string;
  seal: Seal;
  /** Size of the package file in bytes. */
  fileSize: number;
}

class Fail extends Error {}

function fail(reason: string): never {
  throw new Fail(reason);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function describeSection(s: ElfSection): string {
  return `section ${s.index} (${s.name || "unnamed"})`;
}

function safeNumber(what: string, v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} 0x${v.toString(16)} is too large`);
  return Number(v);
}

/** A metadata section of fixed-size records, read with bounds already proven. */
class RecordTable {
  readonly count: number;
  readonly entsize: number;
  private readonly view: DataView;

  constructor(
    readonly name: string,
    data: Uint8Array,
    sec: ElfSection,
    recordSize: number,
    expected: number,
  ) {
    if (sec.type !== D.SHT_PROGBITS) fail(`${name}: section type ${sec.type} is not SHT_PROGBITS`);
    this.entsize = Number(sec.entsize);
    if (sec.entsize < BigInt(recordSize) || sec.entsize > 4096n) fail(`${name}: record size (sh_entsize) ${sec.entsize} is not ${recordSize}`);
    if (data.length % this.entsize !== 0) fail(`${name}: ${data.length} bytes is not a whole number of ${this.entsize}-byte records`);
    this.count = data.length / this.entsize;
    if (this.count !== expected) fail(`${name}: ${this.count} records, but the header says ${expected}`);
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  u8(i: number, off: number): number {
    return this.view.getUint8(i * this.entsize + off);
  }
  u16(i: number, off: number): number {
    return this.view.getUint16(i * this.entsize + off, true);
  }
  u32(i: number, off: number): number {
    return this.view.getUint32(i * this.entsize + off, true);
  }
  u64(i: number, off: number): bigint {
    return this.view.getBigUint64(i * this.entsize + off, true);
  }
  bytes(i: number, off: number, len: number): Uint8Array {
    return new Uint8Array(this.view.buffer, this.view.byteOffset + i * this.entsize + off, len).slice();
  }
}

/** Decodes and validates a package. `file` names it in every error. */
export function decodePackage(core: Core, bytes: Uint8Array, file: string): ReadPackage {
  let elf: ElfReader;
  try {
    elf = new ElfReader(core, bytes, file);
  } catch (e) {
    if (e instanceof CoreError) throw new PackageError(file, `not a readable ELF file: ${e.message.startsWith(file + ": ") ? e.message.slice(file.length + 2) : e.message}`);
    throw e;
  }
  try {
    return decode(elf, bytes, file);
  } catch (e) {
    if (e instanceof Fail) throw new PackageError(file, e.message);
    if (e instanceof ModelError) throw new PackageError(file, e.message);
    if (e instanceof CoreError) throw new PackageError(file, e.message.startsWith(file + ": ") ? e.message.slice(file.length + 2) : e.message);
    throw e;
  } finally {
    elf.close();
  }
}

/** Reads and decodes a package file. */
export function readPackageFile(core: Core, path: string): ReadPackage {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new PackageError(path, `cannot read the package: ${(e as Error).message}`);
  }
  return decodePackage(core, bytes, path);
}

function decode(elf: ElfReader, bytes: Uint8Array, file: string): ReadPackage {
  const info = elf.info;
  if (info.type !== D.ET_REL) fail(`an ELF file of type ${info.type}, not a patch package (a package is ET_REL)`);
  if (info.segmentCount !== 0) fail("a patch package has no program headers");
  if (info.flags !== 0 || info.entry !== 0n) fail("ELF header: e_flags and e_entry must be 0 in a patch package");
  const sections = elf.sections();
  const data = sections.map((s) => (s.hasData ? elf.sectionData(s) : undefined));

  // The metadata sections, each exactly once.
  const byName = new Map<string, ElfSection>();
  for (const s of sections) {
    if (!(D.METADATA_SECTIONS as readonly string[]).includes(s.name) && ![".symtab", ".strtab", ".shstrtab"].includes(s.name)) continue;
    if (byName.has(s.name)) fail(`${describeSection(s)}: a second ${s.name} section`);
    byName.set(s.name, s);
  }
  const metaSec = byName.get(D.SEC_META);
  if (!metaSec) fail(`not a patch package: no ${D.SEC_META} section (an ordinary object file?)`);
  const need = (name: string): ElfSection => byName.get(name) ?? fail(`the ${name} section is missing`);
  const dataOf = (s: ElfSection): Uint8Array => data[s.index] ?? fail(`${describeSection(s)}: has no data in the file`);

  // Header: magic and version first.
  const meta = dataOf(metaSec);
  if (meta.length < 16 || String.fromCharCode(...meta.subarray(0, 8)) !== D.META_MAGIC) fail(`${D.SEC_META}: bad magic (not a patchc package header)`);
  const mv = new DataView(meta.buffer, meta.byteOffset, meta.byteLength);
  const major = mv.getUint16(8, true);
  const minor = mv.getUint16(10, true);
  if (major !== D.FORMAT_MAJOR) fail(`format version ${major}.${minor} is not readable by this patchc (it reads ${D.FORMAT_MAJOR}.x)`);
  const headerSize = mv.getUint32(12, true);
  if (headerSize < D.META_SIZE || headerSize !== meta.length) fail(`${D.SEC_META}: header size ${headerSize} is not the section's size ${meta.length} (at least ${D.META_SIZE})`);
  const features = mv.getUint32(16, true);
  if ((features & ~D.KNOWN_FEATURES) !== 0) fail(`format ${major}.${minor} requires features 0x${features.toString(16)} this patchc does not know; upgrade patchc`);

  // Seal and content hash.
  const sealSec = need(D.SEC_SEAL);
  if (sealSec.type !== D.SHT_PROGBITS) fail(`${D.SEC_SEAL}: section type ${sealSec.type} is not SHT_PROGBITS`);
  const seal = decodeSeal(dataOf(sealSec));
  if (typeof seal === "string") fail(`${D.SEC_SEAL}: ${seal}`);
  const hash = contentHash(
    sections.slice(1).map((s) => ({ name: s.name, type: s.type, flags: s.flags, addr: s.addr, link: s.link, info: s.info, align: s.align, entsize: s.entsize, size: s.size, data: data[s.index] })),
  );
  if (toHex(hash) !== toHex(seal.hash)) {
    fail(`content hash mismatch: the seal says sha256 ${toHex(seal.hash)}, the contents hash to ${toHex(hash)}; the file is damaged or was changed after it was written`);
  }

  // Strings and byte strings of the metadata.
  const strSec = need(D.SEC_STRTAB);
  if (strSec.type !== D.SHT_STRTAB) fail(`${D.SEC_STRTAB}: section type ${strSec.type} is not SHT_STRTAB`);
  const strData = dataOf(strSec);
  if (strData.length === 0 || strData[0] !== 0) fail(`${D.SEC_STRTAB}: does not start with an empty string`);
  const str = (where: string, off: number): string | undefined => {
    if (off === 0) return undefined;
    if (off >= strData.length) fail(`${where}: string offset ${off} is past the end of ${D.SEC_STRTAB} (${strData.length} bytes)`);
    const end = strData.indexOf(0, off);
    if (end < 0) fail(`${where}: the string at ${off} of ${D.SEC_STRTAB} is not NUL-terminated`);
    try {
      return utf8.decode(strData.subarray(off, end));
    } catch {
      return fail(`${where}: the string at ${off} of ${D.SEC_STRTAB} is not UTF-8`);
    }
  };
  const blobSec = need(D.SEC_BLOB);
  if (blobSec.type !== D.SHT_PROGBITS) fail(`${D.SEC_BLOB}: section type ${blobSec.type} is not SHT_PROGBITS`);
  const blob = dataOf(blobSec);
  const blobBytes = (where: string, off: number, len: number): Uint8Array => {
    if (off + len > blob.length) fail(`${where}: ${len} bytes at ${off} run past the end of ${D.SEC_BLOB} (${blob.length} bytes)`);
    return blob.slice(off, off + len);
  };
  const required = (where: string, what: string, off: number): string => str(where, off) ?? fail(`${where}: ${what} is missing`);

  // Section table: content sections, their relocations, the symbol table, the metadata.
  const symtabSec = need(".symtab");
  const strtabSec = need(".strtab");
  if (symtabSec.type !== D.SHT_SYMTAB) fail(`.symtab: section type ${symtabSec.type} is not SHT_SYMTAB`);
  if (symtabSec.link !== strtabSec.index) fail(`.symtab: sh_link ${symtabSec.link} is not the .strtab section (${strtabSec.index})`);
  const modelSection = new Map<number, number>(); // ELF index -> model index
  const sectionsOut: Section[] = [];
  const relaOf = new Map<number, ElfSection>();
  for (const s of sections) {
    if (s.index === 0) continue;
    const what = describeSection(s);
    if (byName.get(s.name) === s) {
      if ((D.METADATA_SECTIONS as readonly string[]).includes(s.name) && s.flags !== BigInt(D.SHF_EXCLUDE)) fail(`${what}: flags 0x${s.flags.toString(16)} are not SHF_EXCLUDE`);
      if (s.name === ".shstrtab" && s.type !== D.SHT_STRTAB) fail(`${what}: not a string table`);
      if (s.name === ".strtab" && s.type !== D.SHT_STRTAB) fail(`${what}: not a string table`);
      continue;
    }
    if (s.type === D.SHT_RELA) {
      if (s.link !== symtabSec.index) fail(`${what}: sh_link ${s.link} is not .symtab`);
      if (s.entsize !== BigInt(D.RELA_SIZE)) fail(`${what}: sh_entsize ${s.entsize} is not 24`);
      if (relaOf.has(s.info)) fail(`${what}: a second relocation section for section ${s.info}`);
      relaOf.set(s.info, s);
      continue;
    }
    if (s.type !== D.SHT_PROGBITS && s.type !== D.SHT_NOBITS && s.type !== D.SHT_X86_64_UNWIND) {
      fail(`${what}: section type 0x${s.type.toString(16)} has no place in a patch package`);
    }
    if (s.addr !== 0n || s.link !== 0 || s.info !== 0) fail(`${what}: sh_addr, sh_link and sh_info of a code or data section are 0 in a package`);
    if (s.flags > 0xffffffffn) fail(`${what}: flags 0x${s.flags.toString(16)} are not valid for a package section`);
    const size = safeNumber(`${what}: size`, s.size);
    modelSection.set(s.index, sectionsOut.length);
    sectionsOut.push({
      name: s.name,
      type: s.type === D.SHT_NOBITS ? "nobits" : s.type === D.SHT_X86_64_UNWIND ? "unwind" : "progbits",
      flags: Number(s.flags),
      align: safeNumber(`${what}: alignment`, s.align),
      entsize: safeNumber(`${what}: entsize`, s.entsize),
      size,
      data: s.type === D.SHT_NOBITS ? undefined : dataOf(s),
      relocations: [],
    });
  }

  // Symbols: ELF index k > 0 is model symbol k - 1.
  const elfSyms = elf.symbols(SymbolTableKind.SYMTAB);
  if (elfSyms.length === 0) fail(".symtab: empty (it starts with the null symbol)");
  const nul = elfSyms[0];
  if (nul.name !== "" || nul.value !== 0n || nul.size !== 0n || nul.type !== 0 || nul.bind !== 0 || nul.shndx !== 0 || nul.other !== 0) fail(".symtab: symbol 0 is not the null symbol");
  const firstGlobal = symtabSec.info;
  const symbols: PackageSymbol[] = elfSyms.slice(1).map((s) => symbolOf(s, firstGlobal, modelSection));
  const modelSymbol = (where: string, k: number): number => {
    if (k === 0 || k >= elfSyms.length) fail(`${where}: symbol index ${k} is not a symbol of .symtab (1..${elfSyms.length - 1})`);
    return k - 1;
  };

  // Relocations.
  for (const t of elf.relaTables()) {
    if (t.kind !== "section") continue;
    const rs = sections[t.section];
    const target = modelSection.get(rs.info);
    if (target === undefined) fail(`${describeSection(rs)}: applies to section ${rs.info}, which is not a code or data section`);
    const sec = sectionsOut[target];
    sec.relocations = elf.relas(t).map((r, j) => ({
      offset: safeNumber(`${describeSection(rs)}: relocation ${j}: offset`, r.offset),
      type: r.type,
      symbol: modelSymbol(`${describeSection(rs)}: relocation ${j}`, r.sym),
      addend: r.addend,
    }));
  }

  // Header fields.
  const header = new RecordTable(D.SEC_META, meta.subarray(0, headerSize), metaSec, headerSize, 1);
  const where = D.SEC_META;
  const etype = header.u16(0, 48);
  if (etype !== 2 && etype !== 3) fail(`${where}: target type ${etype} is not 2 (ET_EXEC) or 3 (ET_DYN)`);
  const counts = { functions: header.u32(0, 52), pieces: header.u32(0, 56), references: header.u32(0, 60), dependencies: header.u32(0, 64) };
  if (header.u16(0, 50) !== 0 || meta.subarray(68, D.META_SIZE).some((x) => x !== 0)) fail(`${where}: reserved header bytes are not zero`);

  const checkMetaLinks = (s: ElfSection): void => {
    if (s.link !== strSec.index) fail(`${s.name}: sh_link ${s.link} is not ${D.SEC_STRTAB} (${strSec.index})`);
    if (s.info !== 0) fail(`${s.name}: sh_info ${s.info} is not 0`);
  };
  checkMetaLinks(metaSec);
  const local = (w: string, t: RecordTable, i: number, off: number): LocalIdentity | undefined => {
    const f = str(w, t.u32(i, off));
    const sympos = t.u32(i, off + 4);
    if (f === undefined && sympos === 0) return undefined;
    if (f === undefined || sympos === 0) fail(`${w}: a local symbol needs both its file and its position`);
    return { file: f, sympos };
  };
  const enumOf = <T>(w: string, what: string, table: readonly (T | undefined)[], v: number): T => {
    const r = table[v];
    if (r === undefined) fail(`${w}: ${what} ${v} is not a known value`);
    return r;
  };

  // Dependencies.
  const depSec = need(D.SEC_DEPS);
  checkMetaLinks(depSec);
  const depT = new RecordTable(D.SEC_DEPS, dataOf(depSec), depSec, D.DEP_SIZE, counts.dependencies);
  const dependencies = Array.from({ length: depT.count }, (_, i) => {
    const w = `${D.SEC_DEPS} record ${i}`;
    const flags = depT.u32(i, 4);
    if (flags > 1) fail(`${w}: unknown flags 0x${flags.toString(16)}`);
    const d: PatchPackage["dependencies"][number] = { patchId: required(w, "patch id", depT.u32(i, 0)) };
    if (flags & 1) d.hash = toHex(depT.bytes(i, 8, 32));
    else if (depT.bytes(i, 8, 32).some((x) => x !== 0)) fail(`${w}: hash bytes without the hash flag`);
    return d;
  });

  // Functions and their pieces.
  const funcSec = need(D.SEC_FUNCS);
  checkMetaLinks(funcSec);
  const pieceSec = need(D.SEC_PIECES);
  checkMetaLinks(pieceSec);
  const fT = new RecordTable(D.SEC_FUNCS, dataOf(funcSec), funcSec, D.FUNC_SIZE, counts.functions);
  const pT = new RecordTable(D.SEC_PIECES, dataOf(pieceSec), pieceSec, D.PIECE_SIZE, counts.pieces);
  let nextPiece = 0;
  const functions: PatchFunction[] = [];
  for (let i = 0; i < fT.count; i++) {
    const w = `${D.SEC_FUNCS} record ${i}`;
    const name = required(w, "name", fT.u32(i, 0));
    const fw = `function ${name}`;
    const f: PatchFunction = { kind: enumOf(fw, "kind", D.FUNC_KINDS, fT.u8(i, 16)), name, symbol: modelSymbol(fw, fT.u32(i, 12)), pieces: [] };
    const l = local(fw, fT, i, 4);
    if (l) f.local = l;
    const flags = fT.u8(i, 17);
    if (flags > 1) fail(`${fw}: unknown flags 0x${flags.toString(16)}`);
    const after = str(fw, fT.u32(i, 28));
    if (after !== undefined) f.after = after;
    const site = blobBytes(`${fw}: site bytes`, fT.u32(i, 48), fT.u32(i, 52));
    if (f.kind === "replace") {
      f.original = { addr: fT.u64(i, 32), size: fT.u64(i, 40), site };
      if (flags & 1) f.original.sha256 = toHex(blobBytes(`${fw}: original sha256`, fT.u32(i, 56), 32));
    } else if (fT.u64(i, 32) !== 0n || fT.u64(i, 40) !== 0n || site.length !== 0 || flags !== 0) {
      fail(`${fw}: an added function has original address, size or site bytes`);
    }
    const fdeSize = fT.u32(i, 64);
    if (fdeSize) f.fde = { offset: fT.u32(i, 60), size: fdeSize };
    else if (fT.u32(i, 60)) fail(`${fw}: an FDE offset without a size`);
    const first = fT.u32(i, 20);
    const n = fT.u32(i, 24);
    if (first !== nextPiece || n > pT.count - first) fail(`${fw}: pieces ${first}..${first + n - 1} are not the next ${n} of ${D.SEC_PIECES} (next is ${nextPiece} of ${pT.count})`);
    for (let p = first; p < first + n; p++) f.pieces.push(pieceOf(p));
    nextPiece = first + n;
    functions.push(f);
  }
  if (nextPiece !== pT.count) fail(`${D.SEC_PIECES}: ${pT.count - nextPiece} pieces belong to no function`);
  function pieceOf(p: number): Piece {
    const w = `${D.SEC_PIECES} record ${p}`;
    const name = required(w, "name", pT.u32(p, 0));
    const pw = `piece ${name}`;
    const piece: Piece = { kind: enumOf(pw, "kind", D.PIECE_KINDS, pT.u8(p, 16)), name };
    const l = local(pw, pT, p, 4);
    if (l) piece.local = l;
    const sym = pT.u32(p, 12);
    if (sym) piece.symbol = modelSymbol(pw, sym);
    const flags = pT.u8(p, 17);
    if (flags > 1) fail(`${pw}: unknown flags 0x${flags.toString(16)}`);
    if (flags & 1) piece.original = { addr: pT.u64(p, 32), size: pT.u64(p, 40) };
    else if (pT.u64(p, 32) !== 0n || pT.u64(p, 40) !== 0n) fail(`${pw}: an original address or size without the flag`);
    const fdeSize = pT.u32(p, 24);
    if (fdeSize) piece.fde = { offset: pT.u32(p, 20), size: fdeSize };
    else if (pT.u32(p, 20)) fail(`${pw}: an FDE offset without a size`);
    return piece;
  }

  // References.
  const refSec = need(D.SEC_REFS);
  checkMetaLinks(refSec);
  const rT = new RecordTable(D.SEC_REFS, dataOf(refSec), refSec, D.REF_SIZE, counts.references);
  const references: Reference[] = [];
  for (let i = 0; i < rT.count; i++) {
    const w = `${D.SEC_REFS} record ${i}`;
    const name = required(w, "name", rT.u32(i, 4));
    const rw = `reference ${name}`;
    const r: Reference = {
      symbol: modelSymbol(rw, rT.u32(i, 0)),
      name,
      bind: enumOf(rw, "binding", D.BIND_KINDS, rT.u8(i, 16)),
      scope: enumOf(rw, "scope", D.SCOPES, rT.u8(i, 17)),
      type: enumOf(rw, "type", D.REF_TYPES, rT.u8(i, 18)),
    };
    const l = local(rw, rT, i, 8);
    if (l) r.local = l;
    const version = str(rw, rT.u32(i, 24));
    if (version !== undefined) r.version = version;
    const whereStr = str(rw, rT.u32(i, 28));
    if (whereStr !== undefined) {
      if (r.scope === "patch") r.patch = whereStr;
      else r.library = whereStr;
    }
    const flags = rT.u32(i, 20);
    if (flags & ~(D.REF_HAS_ADDR | D.REF_HAS_GOT | D.REF_HAS_PLT)) fail(`${rw}: unknown flags 0x${flags.toString(16)}`);
    const opt = (flag: number, off: number, key: "addr" | "gotSlot" | "pltEntry"): void => {
      if (flags & flag) r[key] = rT.u64(i, off);
      else if (rT.u64(i, off) !== 0n) fail(`${rw}: a value at ${off} without its flag`);
    };
    opt(D.REF_HAS_ADDR, 32, "addr");
    opt(D.REF_HAS_GOT, 40, "gotSlot");
    opt(D.REF_HAS_PLT, 48, "pltEntry");
    const model = rT.u8(i, 19);
    if (model !== 0) r.tls = { model: enumOf(rw, "TLS model", D.TLS_MODELS, model), offset: rT.u64(i, 56) };
    else if (rT.u64(i, 56) !== 0n) fail(`${rw}: a TLS offset without a TLS model`);
    references.push(r);
  }

  const model: PatchPackage = {
    patchId: required(where, "patch id", header.u32(0, 20)),
    target: {
      buildId: toHex(blobBytes(`${where}: target build-id`, header.u32(0, 40), header.u32(0, 44))),
      path: required(where, "target path hint", header.u32(0, 32)),
      type: etype === 2 ? "exec" : "dyn",
    },
    dependencies,
    sections: sectionsOut,
    symbols,
    functions,
    references,
  };
  const producer = str(where, header.u32(0, 24));
  if (producer !== undefined) model.producer = producer;
  const description = str(where, header.u32(0, 28));
  if (description !== undefined) model.description = description;
  const soname = str(where, header.u32(0, 36));
  if (soname !== undefined) model.target.soname = soname;
  validateModel(model);
  return { file, format: { major, minor }, model, hash: toHex(hash), seal, fileSize: bytes.length };
}

function symbolOf(s: ElfSymbol, firstGlobal: number, modelSection: Map<number, number>): PackageSymbol {
  const what = `.symtab symbol ${s.index} (${s.name || "unnamed"})`;
  const bind = (["local", "global", "weak"] as const)[s.bind];
  if (!bind) fail(`${what}: binding ${s.bind} is not LOCAL, GLOBAL or WEAK`);
  if ((bind === "local") !== s.index < firstGlobal) fail(`${what}: ${bind} symbol on the wrong side of the first global (sh_info ${firstGlobal})`);
  const type = ({ [D.STT_NOTYPE]: "notype", [D.STT_OBJECT]: "object", [D.STT_FUNC]: "func", [D.STT_SECTION]: "section", [D.STT_TLS]: "tls" } as const)[s.type];
  if (!type) fail(`${what}: symbol type ${s.type} has no place in a package`);
  if (s.other & ~3) fail(`${what}: st_other 0x${s.other.toString(16)} has bits other than the visibility`);
  const sym: PackageSymbol = { name: s.name, type, bind, value: safeNumber(`${what}: value`, s.value), size: safeNumber(`${what}: size`, s.size) };
  if (s.other) sym.visibility = D.STV_NAMES[s.other];
  if (s.shndx !== D.SHN_UNDEF) {
    const sec = modelSection.get(s.shndx);
    if (sec === undefined) fail(`${what}: section index ${s.shndx} is not a code or data section of the package`);
    sym.section = sec;
  }
  return sym;
}
