// Typed wrapper over the ELF reader exports (docs/core-abi.md, "ELF reader").
// An ElfReader owns a copy of the input in core memory and its handle; close() frees both.
import { Core } from "./instance.js";

export const enum ElfType {
  REL = 1,
  EXEC = 2,
  DYN = 3,
}

export const enum SymbolTableKind {
  SYMTAB = 0,
  DYNSYM = 1,
}

export interface ElfInfo {
  type: number;
  machine: number;
  flags: number;
  entry: bigint;
  sectionCount: number;
  segmentCount: number;
  symtabCount: number;
  dynsymCount: number;
  relaTableCount: number;
  versionCount: number;
  dynamicCount: number;
  buildId?: string; // lowercase hex
  isImage: boolean;
  hasSymtab: boolean;
  hasDynsym: boolean;
  hasDynamic: boolean;
  tlsSegment: number; // -1 when none
  firstVaddr: bigint;
  base: bigint;
}

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  link: number;
  flags: bigint;
  addr: bigint;
  offset: bigint;
  size: bigint;
  info: number;
  hasData: boolean;
  align: bigint;
  entsize: bigint;
}

export interface ElfSegment {
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

export interface ElfSymbol {
  index: number;
  name: string;
  value: bigint;
  size: bigint;
  bind: number;
  type: number;
  other: number;
  shndx: number;
  versym: number; // raw .gnu.version entry (0x8000: hidden)
  version?: string;
  versionFile?: string; // for a version requirement: the library
  hidden: boolean;
}

export interface ElfRelaTable {
  index: number;
  kind: "section" | "dyn" | "plt" | "relr";
  count: number;
  section: number;
  target: number;
  symtab: SymbolTableKind;
}

export interface ElfRela {
  offset: bigint;
  type: number;
  sym: number;
  addend: bigint;
}

export interface ElfVersion {
  index: number;
  isDef: boolean;
  isBase: boolean;
  name: string;
  file?: string;
}

export interface ElfUnwindTables {
  ehFrame?: { addr: bigint; offset: number; size: number };
  ehFrameHdr?: { addr: bigint; offset: number; size: number };
}

interface ElfExports {
  elf_open(ptr: number, len: number): number;
  elf_open_image(ptr: number, len: number, base: bigint): number;
  elf_close(h: number): number;
  elf_info(h: number, out: number): number;
  elf_sections(h: number, first: number, count: number, out: number): number;
  elf_section_by_name(h: number, name: number, len: number): number;
  elf_segments(h: number, first: number, count: number, out: number): number;
  elf_symbols(h: number, table: number, first: number, count: number, out: number): number;
  elf_rela_tables(h: number, first: number, count: number, out: number): number;
  elf_relas(h: number, table: number, first: number, count: number, out: number): number;
  elf_dynamic(h: number, first: number, count: number, out: number): number;
  elf_dynstr(h: number, offset: number, lenOut: number): number;
  elf_versions(h: number, first: number, count: number, out: number): number;
  elf_eh_frame(h: number, out: number): number;
  elf_addr_to_offset(h: number, vaddr: bigint, size: bigint): bigint;
}

function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

const RELA_KINDS = ["section", "dyn", "plt", "relr"] as const;

export class ElfReader {
  readonly handle: number;
  readonly ptr: number;
  readonly length: number;
  readonly info: ElfInfo;
  private readonly x: ElfExports;
  private closed = false;

  /**
   * Opens `data` (a file, or with `imageBase` an image as mapped at that address).
   * `name` (a path, or "pid 123 vdso") prefixes every error message.
   */
  constructor(
    readonly core: Core,
    data: Uint8Array,
    readonly name: string,
    imageBase?: bigint,
  ) {
    this.x = core.exports as unknown as ElfExports;
    this.length = data.length;
    this.ptr = core.copyIn(data);
    this.handle = imageBase === undefined ? this.x.elf_open(this.ptr, data.length) : this.x.elf_open_image(this.ptr, data.length, imageBase);
    if (this.handle === 0) {
      const err = core.lastError(name);
      core.exports.free(this.ptr);
      throw err;
    }
    this.info = this.readInfo();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.x.elf_close(this.handle);
    this.core.exports.free(this.ptr);
  }

  /** Runs fn with a scratch buffer of `size` bytes in core memory. */
  private scratch<T>(size: number, fn: (out: number) => T): T {
    const out = this.core.exports.alloc(size);
    try {
      return fn(out);
    } finally {
      this.core.exports.free(out);
    }
  }

  private check(r: number | bigint): void {
    if (r === -1 || r === -1n) throw this.core.lastError(this.name);
  }

  private str(ptr: number, len: number): string {
    return len === 0 ? "" : this.core.string(ptr, len);
  }

  private readInfo(): ElfInfo {
    return this.scratch(96, (out) => {
      if (this.x.elf_info(this.handle, out) !== 0) throw this.core.lastError(this.name);
      const v = this.core.view;
      const idLen = v.getUint32(out + 44, true);
      const idPtr = v.getUint32(out + 48, true);
      const flags = v.getUint32(out + 52, true);
      return {
        type: v.getUint16(out, true),
        machine: v.getUint16(out + 2, true),
        flags: v.getUint32(out + 4, true),
        entry: v.getBigUint64(out + 8, true),
        sectionCount: v.getUint32(out + 16, true),
        segmentCount: v.getUint32(out + 20, true),
        symtabCount: v.getUint32(out + 24, true),
        dynsymCount: v.getUint32(out + 28, true),
        relaTableCount: v.getUint32(out + 32, true),
        versionCount: v.getUint32(out + 36, true),
        dynamicCount: v.getUint32(out + 40, true),
        buildId: idLen ? toHex(this.core.copyOut(idPtr, idLen)) : undefined,
        isImage: (flags & 1) !== 0,
        hasSymtab: (flags & 2) !== 0,
        hasDynsym: (flags & 4) !== 0,
        hasDynamic: (flags & 8) !== 0,
        tlsSegment: v.getInt32(out + 72, true),
        firstVaddr: v.getBigUint64(out + 56, true),
        base: v.getBigUint64(out + 64, true),
      };
    });
  }

  sections(): ElfSection[] {
    const n = this.info.sectionCount;
    return this.scratch(72 * n, (out) => {
      this.check(this.x.elf_sections(this.handle, 0, n, out));
      const v = this.core.view;
      const r: ElfSection[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 72;
        r.push({
          index: i,
          name: this.str(v.getUint32(o, true), v.getUint32(o + 4, true)),
          type: v.getUint32(o + 8, true),
          link: v.getUint32(o + 12, true),
          flags: v.getBigUint64(o + 16, true),
          addr: v.getBigUint64(o + 24, true),
          offset: v.getBigUint64(o + 32, true),
          size: v.getBigUint64(o + 40, true),
          info: v.getUint32(o + 48, true),
          hasData: v.getUint32(o + 52, true) !== 0,
          align: v.getBigUint64(o + 56, true),
          entsize: v.getBigUint64(o + 64, true),
        });
      }
      return r;
    });
  }

  sectionIndex(name: string): number {
    const bytes = new TextEncoder().encode(name);
    return this.core.withBytes(bytes, (p, l) => this.x.elf_section_by_name(this.handle, p, l));
  }

  /** The bytes of a section with data (a copy). */
  sectionData(s: ElfSection): Uint8Array {
    if (!s.hasData) return new Uint8Array(0);
    return this.core.copyOut(this.ptr + Number(s.offset), Number(s.size));
  }

  segments(): ElfSegment[] {
    const n = this.info.segmentCount;
    return this.scratch(56 * n, (out) => {
      this.check(this.x.elf_segments(this.handle, 0, n, out));
      const v = this.core.view;
      const r: ElfSegment[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 56;
        r.push({
          type: v.getUint32(o, true),
          flags: v.getUint32(o + 4, true),
          offset: v.getBigUint64(o + 8, true),
          vaddr: v.getBigUint64(o + 16, true),
          paddr: v.getBigUint64(o + 24, true),
          filesz: v.getBigUint64(o + 32, true),
          memsz: v.getBigUint64(o + 40, true),
          align: v.getBigUint64(o + 48, true),
        });
      }
      return r;
    });
  }

  symbols(table: SymbolTableKind): ElfSymbol[] {
    const n = table === SymbolTableKind.SYMTAB ? this.info.symtabCount : this.info.dynsymCount;
    const present = table === SymbolTableKind.SYMTAB ? this.info.hasSymtab : this.info.hasDynsym;
    if (!present) return [];
    return this.scratch(48 * n, (out) => {
      this.check(this.x.elf_symbols(this.handle, table, 0, n, out));
      const v = this.core.view;
      const r: ElfSymbol[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 48;
        const info = v.getUint8(o + 24);
        const versym = v.getUint16(o + 26, true);
        const vlen = v.getUint32(o + 36, true);
        const flen = v.getUint32(o + 44, true);
        r.push({
          index: i,
          name: this.str(v.getUint32(o, true), v.getUint32(o + 4, true)),
          value: v.getBigUint64(o + 8, true),
          size: v.getBigUint64(o + 16, true),
          bind: info >> 4,
          type: info & 15,
          other: v.getUint8(o + 25),
          versym,
          shndx: v.getUint32(o + 28, true),
          version: vlen ? this.str(v.getUint32(o + 32, true), vlen) : undefined,
          versionFile: flen ? this.str(v.getUint32(o + 40, true), flen) : undefined,
          hidden: (versym & 0x8000) !== 0,
        });
      }
      return r;
    });
  }

  relaTables(): ElfRelaTable[] {
    const n = this.info.relaTableCount;
    return this.scratch(24 * n, (out) => {
      this.check(this.x.elf_rela_tables(this.handle, 0, n, out));
      const v = this.core.view;
      const r: ElfRelaTable[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 24;
        r.push({
          index: i,
          kind: RELA_KINDS[v.getUint32(o, true)],
          count: v.getUint32(o + 4, true),
          section: v.getInt32(o + 8, true),
          target: v.getInt32(o + 12, true),
          symtab: v.getUint32(o + 16, true) as SymbolTableKind,
        });
      }
      return r;
    });
  }

  relas(table: ElfRelaTable): ElfRela[] {
    const n = table.count;
    return this.scratch(24 * n, (out) => {
      this.check(this.x.elf_relas(this.handle, table.index, 0, n, out));
      const v = this.core.view;
      const r: ElfRela[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 24;
        r.push({ offset: v.getBigUint64(o, true), type: v.getUint32(o + 8, true), sym: v.getUint32(o + 12, true), addend: v.getBigInt64(o + 16, true) });
      }
      return r;
    });
  }

  dynamic(): Array<{ tag: bigint; val: bigint }> {
    const n = this.info.dynamicCount;
    return this.scratch(16 * n, (out) => {
      this.check(this.x.elf_dynamic(this.handle, 0, n, out));
      const v = this.core.view;
      const r: Array<{ tag: bigint; val: bigint }> = [];
      for (let i = 0; i < n; i++) r.push({ tag: v.getBigInt64(out + i * 16, true), val: v.getBigUint64(out + i * 16 + 8, true) });
      return r;
    });
  }

  /** A string of the dynamic string table (DT_NEEDED, DT_SONAME values). */
  dynstr(offset: number): string {
    return this.scratch(4, (lenOut) => {
      const p = this.x.elf_dynstr(this.handle, offset, lenOut);
      if (p === 0) throw this.core.lastError(this.name);
      return this.str(p, this.core.view.getUint32(lenOut, true));
    });
  }

  /** DT_NEEDED entries, in order. */
  needed(): string[] {
    return this.dynamic()
      .filter((d) => d.tag === 1n)
      .map((d) => this.dynstr(Number(d.val)));
  }

  soname(): string | undefined {
    const d = this.dynamic().find((e) => e.tag === 14n);
    return d ? this.dynstr(Number(d.val)) : undefined;
  }

  versions(): ElfVersion[] {
    const n = this.info.versionCount;
    return this.scratch(24 * n, (out) => {
      this.check(this.x.elf_versions(this.handle, 0, n, out));
      const v = this.core.view;
      const r: ElfVersion[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 24;
        const flen = v.getUint32(o + 16, true);
        r.push({
          index: v.getUint16(o, true),
          isDef: v.getUint8(o + 2) !== 0,
          isBase: v.getUint8(o + 3) !== 0,
          name: this.str(v.getUint32(o + 4, true), v.getUint32(o + 8, true)),
          file: flen ? this.str(v.getUint32(o + 12, true), flen) : undefined,
        });
      }
      return r;
    });
  }

  unwindTables(): ElfUnwindTables {
    return this.scratch(48, (out) => {
      this.x.elf_eh_frame(this.handle, out);
      const v = this.core.view;
      const r: ElfUnwindTables = {};
      const eo = v.getBigInt64(out + 8, true);
      if (eo >= 0n) r.ehFrame = { addr: v.getBigUint64(out, true), offset: Number(eo), size: Number(v.getBigUint64(out + 16, true)) };
      const ho = v.getBigInt64(out + 32, true);
      if (ho >= 0n) r.ehFrameHdr = { addr: v.getBigUint64(out + 24, true), offset: Number(ho), size: Number(v.getBigUint64(out + 40, true)) };
      return r;
    });
  }

  /** Input offset of `size` bytes at link-time address `vaddr`, or -1. */
  addrToOffset(vaddr: bigint, size = 1n): number {
    return Number(this.x.elf_addr_to_offset(this.handle, vaddr, size));
  }
}
