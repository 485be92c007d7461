// An ELF relocatable object (a .o of either build) opened once for the package step:
// its sections, symbols, relocations per section, and the source file it was compiled
// from (its STT_FILE symbol, which names its statics in the linked target).
import * as fs from "node:fs";
import { ElfReader, SymbolTableKind, type ElfRela, type ElfSection, type ElfSymbol } from "../core/elf.js";
import type { Core } from "../core/instance.js";
import { STT_FILE, STT_FUNC, STT_OBJECT, STT_SECTION, STT_TLS } from "./target.js";

export const SHF_WRITE = 1;
export const SHF_ALLOC = 2;
export const SHF_EXECINSTR = 4;
export const SHF_MERGE = 0x10;
export const SHF_STRINGS = 0x20;
export const SHF_GROUP = 0x200;
export const SHF_TLS = 0x400;
export const SHT_NOBITS = 8;
export const SHT_X86_64_UNWIND = 0x70000001;
export const SHN_UNDEF = 0;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;

export class ObjectFile {
  readonly elf: ElfReader;
  readonly bytes: Uint8Array;
  readonly sections: ElfSection[];
  readonly symbols: ElfSymbol[];
  /** Relocations by the index of the section they patch. */
  readonly relocations = new Map<number, ElfRela[]>();
  /** The source file (first STT_FILE symbol), "" when none. */
  readonly sourceFile: string;

  constructor(
    core: Core,
    readonly path: string,
    /** How messages name it (its relative path in the build). */
    readonly name: string,
  ) {
    this.bytes = fs.readFileSync(path);
    this.elf = new ElfReader(core, this.bytes, path);
    try {
      this.sections = this.elf.sections();
      this.symbols = this.elf.symbols(SymbolTableKind.SYMTAB);
      for (const t of this.elf.relaTables()) {
        if (t.kind === "section" && t.target > 0) this.relocations.set(t.target, this.elf.relas(t));
      }
    } catch (e) {
      this.elf.close();
      throw e;
    }
    this.sourceFile = this.symbols.find((s) => s.type === STT_FILE)?.name ?? "";
  }

  close(): void {
    this.elf.close();
  }

  data(section: number): Uint8Array {
    const s = this.sections[section];
    if (s.type === SHT_NOBITS) return new Uint8Array(Number(s.size));
    return this.bytes.subarray(Number(s.offset), Number(s.offset) + Number(s.size));
  }

  relocs(section: number): ElfRela[] {
    return this.relocations.get(section) ?? [];
  }

  flags(section: number): number {
    return Number(this.sections[section].flags);
  }

  isCode(section: number): boolean {
    return (this.flags(section) & SHF_EXECINSTR) !== 0;
  }

  /** The function symbol at `offset` of a code section (the one starting there first). */
  functionAt(section: number, offset: bigint): ElfSymbol | undefined {
    let best: ElfSymbol | undefined;
    for (const s of this.symbols) {
      if (s.shndx !== section || s.type !== STT_FUNC) continue;
      if (s.value === offset) return s;
      if (s.value < offset && offset < s.value + s.size && (!best || s.value > best.value)) best = s;
    }
    return best;
  }

  /** The named data object of a data section at `offset` (with -fdata-sections, the section's only one). */
  objectAt(section: number, offset: bigint): ElfSymbol | undefined {
    let best: ElfSymbol | undefined;
    for (const s of this.symbols) {
      if (s.shndx !== section || (s.type !== STT_OBJECT && s.type !== STT_TLS)) continue;
      if (s.value === offset) return s;
      if (s.value <= offset && offset < s.value + s.size && (!best || s.value > best.value)) best = s;
    }
    return best;
  }

  /** Named objects (STT_OBJECT, STT_TLS) defined in a section. */
  objectsIn(section: number): ElfSymbol[] {
    return this.symbols.filter((s) => s.shndx === section && (s.type === STT_OBJECT || s.type === STT_TLS));
  }

  sectionSymbol(section: number): ElfSymbol | undefined {
    return this.symbols.find((s) => s.type === STT_SECTION && s.shndx === section);
  }
}
