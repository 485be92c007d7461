// The target of a package, as the build sees it: the binary the running process was
// started from (an executable, PIE or not, or a shared library). Everything the build
// needs from it is here: its build-id (apply finds the module by it), its symbols (from
// its .symtab, or from its separate debug file found by build-id), its GOT and PLT slots
// (.rela.dyn, .rela.plt), its TLS segment, and the bytes of its code.
//
// Facts this file depends on:
// - A stripped binary keeps its full symbol table in a separate debug file, found by the
//   GNU build-id at /usr/lib/debug/.build-id/<first byte>/<rest>.debug (gdb's rule,
//   https://sourceware.org/gdb/current/onlinedocs/gdb.html/Separate-Debug-Files.html);
//   its symbol values are the binary's addresses.
// - A local (static) symbol of a linked .symtab follows the STT_FILE symbol of the
//   object it came from; two statics of one name are told apart by file and position
//   (docs/format.md, "Locals").
// - x86-64 TLS is variant II: the thread pointer points past the executable's TLS
//   block, so a variable of the executable is at tpoff = st_value - round_up(PT_TLS
//   p_memsz, p_align) (Drepper, "ELF Handling For Thread-Local Storage", 3.4.6).
// - An executable is ET_EXEC, or a PIE: ET_DYN with DF_1_PIE in DT_FLAGS_1 (ld since
//   binutils 2.35), or older, with a PT_INTERP and no DT_SONAME. The linker relaxes TLS
//   accesses only in executables (identity.ts).
// - Preemption (interposition), gABI "Symbol Resolution" / psABI x86-64 3.5.5 and ld(1):
//   a global or weak symbol of default visibility that a shared library defines and
//   exports in its .dynsym can be preempted at run time: ld.so binds every reference to
//   it, the library's own included, to the first definition in the process's search order
//   (the executable first, whose COPY relocation moves an exported variable into the
//   executable; then LD_PRELOAD objects; then the libraries in load order). So the
//   library's own code reaches such a symbol through its GOT (R_X86_64_GLOB_DAT slot,
//   gcc -fPIC emits GOTPCREL(X) for it and ld keeps the slot) or its PLT (JUMP_SLOT), and
//   its own definition may be dead. Not preemptible: hidden or protected visibility, a
//   local, a symbol a version script left unexported, every symbol of a library linked
//   with -Bsymbolic (DT_SYMBOLIC / DF_SYMBOLIC in DT_FLAGS), and the symbols of an
//   executable (it comes first in the search order: its definitions are final).
//   -Bsymbolic-functions leaves no mark in the file: its functions show as preemptible
//   ones the library never calls through a slot (bound by lookup, see assemble.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { ElfReader, SymbolTableKind, type ElfSection, type ElfSymbol } from "../core/elf.js";
import type { Core } from "../core/instance.js";
import { SymbolIndex, SymbolTable, type IndexedSymbol, type Slot } from "../core/symbols.js";
import type { LocalIdentity } from "../format/model.js";
import { BuildError } from "./errors.js";
import { readFlags, type FileFlags } from "./flags.js";

const ET_EXEC = 2;
const ET_DYN = 3;
const PT_TLS = 7;
const PT_INTERP = 3;
const DT_SONAME = 14n;
const DT_FLAGS_1 = 0x6ffffffbn;
const DF_1_PIE = 0x08000000n;
const DT_SYMBOLIC = 16n;
const DT_FLAGS = 30n;
const DF_SYMBOLIC = 0x2n;
const STV_DEFAULT = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;
export const STT_TLS = 6;
export const STT_GNU_IFUNC = 10;
export const STB_LOCAL = 0;
const SHN_UNDEF = 0;

/** A symbol of the target found for a reference. */
export interface TargetSymbol {
  sym: IndexedSymbol;
  /** For a local: its identity (file and position). */
  local?: LocalIdentity;
}

export class TargetImage {
  readonly elf: ElfReader;
  readonly bytes: Uint8Array;
  readonly buildId: string;
  readonly type: "exec" | "dyn";
  readonly soname?: string;
  /** An executable (PIE or not), not a shared library: TLS accesses may be relaxed to LE. */
  readonly executable: boolean;
  /** A shared library linked with -Bsymbolic (DT_SYMBOLIC, DF_SYMBOLIC): its references to its own symbols are final. */
  readonly symbolic: boolean;
  /** Where the symbols came from: the binary, or its debug file. */
  readonly symbolSource: string;
  private readonly symElf: ElfReader;
  readonly index: SymbolIndex;
  private readonly dynIndex?: SymbolIndex;
  readonly sections: ElfSection[];
  private readonly dynsym: ElfSymbol[];
  private slotCache = new Map<string, Slot[]>();
  private readonly tlsBlock?: bigint;

  constructor(
    readonly core: Core,
    readonly file: string,
    readonly debugRoot: string = "/usr/lib/debug",
  ) {
    try {
      this.bytes = fs.readFileSync(file);
    } catch (e) {
      throw new BuildError("target", `cannot read ${file}: ${(e as Error).message}`);
    }
    this.elf = new ElfReader(core, this.bytes, file);
    const closeAll: Array<{ close(): void }> = [this.elf];
    try {
      if (this.elf.info.type !== ET_EXEC && this.elf.info.type !== ET_DYN) {
        throw new BuildError("target", `${file} is not an executable or a shared library (ELF type ${this.elf.info.type})`);
      }
      this.type = this.elf.info.type === ET_EXEC ? "exec" : "dyn";
      if (!this.elf.info.buildId) {
        throw new BuildError("target", `${file} has no GNU build-id note: apply finds the module by it (link with -Wl,--build-id)`);
      }
      this.buildId = this.elf.info.buildId;
      this.soname = this.elf.info.hasDynamic ? this.elf.soname() : undefined;
      this.sections = this.elf.sections();
      const dyn = this.elf.info.hasDynamic ? this.elf.dynamic() : [];
      const flags1 = dyn.find((d) => d.tag === DT_FLAGS_1)?.val ?? 0n;
      this.executable =
        this.type === "exec" || (flags1 & DF_1_PIE) !== 0n || (this.elf.segments().some((s) => s.type === PT_INTERP) && !dyn.some((d) => d.tag === DT_SONAME));
      const dtFlags = dyn.find((d) => d.tag === DT_FLAGS)?.val ?? 0n;
      this.symbolic = dyn.some((d) => d.tag === DT_SYMBOLIC) || (dtFlags & DF_SYMBOLIC) !== 0n;
      if (this.elf.info.hasSymtab) {
        this.symElf = this.elf;
        this.symbolSource = file;
      } else {
        const debug = path.join(debugRoot, ".build-id", this.buildId.slice(0, 2), `${this.buildId.slice(2)}.debug`);
        if (!fs.existsSync(debug)) {
          throw new BuildError(
            "target",
            `${file} has no .symtab (it is stripped) and its debug file ${debug} is not installed: the build needs the target's symbols (install its -dbgsym package, or give the unstripped binary)`,
          );
        }
        this.symElf = new ElfReader(core, fs.readFileSync(debug), debug);
        closeAll.push(this.symElf);
        if (!this.symElf.info.hasSymtab) throw new BuildError("target", `the debug file ${debug} of ${file} has no .symtab`);
        if (this.symElf.info.buildId !== this.buildId) throw new BuildError("target", `the debug file ${debug} has build-id ${this.symElf.info.buildId}, not ${this.buildId}`);
        this.symbolSource = debug;
      }
      this.index = new SymbolIndex(core, this.symElf, SymbolTable.SYMTAB);
      closeAll.push(this.index);
      this.dynsym = this.elf.info.hasDynsym ? this.elf.symbols(SymbolTableKind.DYNSYM) : [];
      if (this.elf.info.hasDynsym) {
        this.dynIndex = new SymbolIndex(core, this.elf, SymbolTable.DYNSYM);
        closeAll.push(this.dynIndex);
      }
      const tls = this.elf.segments().find((s) => s.type === PT_TLS);
      if (tls) {
        const align = tls.align > 0n ? tls.align : 1n;
        this.tlsBlock = ((tls.memsz + align - 1n) / align) * align;
      }
    } catch (e) {
      for (const c of closeAll.reverse()) c.close();
      throw e;
    }
  }

  close(): void {
    this.dynIndex?.close();
    this.index.close();
    if (this.symElf !== this.elf) this.symElf.close();
    this.elf.close();
  }

  /** `n` bytes of the file at link-time address `addr`, or undefined outside its loaded contents. */
  bytesAt(addr: bigint, n: number): Uint8Array | undefined {
    const off = this.elf.addrToOffset(addr, BigInt(Math.max(n, 1)));
    if (off < 0 || off + n > this.bytes.length) return undefined;
    return this.bytes.subarray(off, off + n);
  }

  /**
   * The identity of a local symbol of the target. None when it follows no named STT_FILE:
   * ld (binutils 2.35+) emits the globals it made local (hidden visibility) after an
   * STT_FILE with an empty name; such a symbol is found by name and checked at its address.
   */
  private identity(s: IndexedSymbol): LocalIdentity | undefined {
    if (s.bind !== STB_LOCAL) return undefined;
    const file = s.file >= 0 ? this.index.get(s.file).name : "";
    if (file === "") return undefined;
    return { file, sympos: s.sympos };
  }

  /**
   * The target's definition of a symbol of an object: a global by name (a version suffix in
   * the target's .symtab, "stderr@GLIBC_2.2.5" for a copy, counts as the name); a local by
   * its name and the source file of the object it came from (`file`, the object's
   * STT_FILE). Hidden globals of the objects are locals of the linked file: looked up as
   * locals too. Undefined when the target does not define it.
   */
  find(name: string, local: boolean, file: string | undefined): TargetSymbol | undefined {
    const defined = (id: number | undefined) => {
      if (id === undefined) return undefined;
      const s = this.index.get(id);
      return s.defined && s.shndx !== SHN_UNDEF && s.type !== STT_SECTION && s.type !== STT_FILE ? s : undefined;
    };
    if (!local) {
      for (const id of this.index.findAll(name)) {
        const s = defined(id);
        if (s && s.bind !== STB_LOCAL) return { sym: s };
      }
    }
    if (file) {
      const s = defined(this.index.findLocal(name, { file }));
      if (s) return { sym: s, local: this.identity(s) };
    }
    // A local whose file the target does not record, or a hidden global: unique by name.
    const locals = this.index
      .findAll(name)
      .map(defined)
      .filter((s): s is IndexedSymbol => s !== undefined && s.bind === STB_LOCAL);
    if (locals.length === 1 && (!local || !file)) return { sym: locals[0], local: this.identity(locals[0]) };
    return undefined;
  }

  /**
   * The target's exported definition of `sym` (its .dynsym entry, with its version) when
   * `sym` is preemptible at run time (see the facts at the top): the target is a shared
   * library not linked with -Bsymbolic, and `sym` is a global or weak symbol of default
   * visibility that it exports. Undefined when its own definition is final.
   */
  preemptible(sym: IndexedSymbol): ElfSymbol | undefined {
    if (this.executable || this.symbolic) return undefined;
    if (sym.bind === STB_LOCAL || (sym.other & 3) !== STV_DEFAULT) return undefined;
    return this.dynsym.find(
      (d) => d.name === sym.baseName && d.index !== 0 && d.shndx !== SHN_UNDEF && d.bind !== STB_LOCAL && (d.other & 3) === STV_DEFAULT && d.value === sym.value,
    );
  }

  /** The target's import of a symbol (.dynsym, undefined), with its version. */
  imported(name: string): ElfSymbol | undefined {
    return this.dynsym.find((s) => s.name === name && s.shndx === SHN_UNDEF && s.index !== 0);
  }

  /** The target's GOT/PLT slots for a dynamic symbol. */
  slots(name: string): Slot[] {
    if (!this.dynIndex) return [];
    let r = this.slotCache.get(name);
    if (!r) {
      r = this.dynIndex.slotsOf(name);
      this.slotCache.set(name, r);
    }
    return r;
  }

  private allSlots?: Slot[];

  /** The target's dynamic relocation of `type` at `address` (a GOT slot), if any. */
  slotAt(address: bigint, type: number): Slot | undefined {
    if (!this.dynIndex) return undefined;
    this.allSlots ??= this.dynIndex.slots();
    return this.allSlots.find((s) => s.address === address && s.type === type);
  }

  private flagCache?: { flags: FileFlags; from: string };

  /**
   * The compile flags the target records (flags.ts): its compile units from its own
   * .debug_info, else from its debug file (the one its symbols came from, or the one
   * found by build-id), and its .GCC.command.line; `from` names the file read.
   */
  recordedFlags(): { flags: FileFlags; from: string } {
    if (this.flagCache) return this.flagCache;
    let flags = readFlags(this.core, this.elf);
    let from = this.file;
    if (!flags.units.length && !flags.unreadable) {
      const fromDebug = (elf: ElfReader, name: string) => {
        const g = readFlags(this.core, elf);
        if (g.units.length || g.unreadable) {
          flags = { ...g, switches: flags.switches.length ? flags.switches : g.switches };
          from = name;
        }
      };
      if (this.symElf !== this.elf) {
        fromDebug(this.symElf, this.symbolSource);
      } else {
        const debug = path.join(this.debugRoot, ".build-id", this.buildId.slice(0, 2), `${this.buildId.slice(2)}.debug`);
        if (fs.existsSync(debug)) {
          const elf = new ElfReader(this.core, fs.readFileSync(debug), debug);
          try {
            if (elf.info.buildId === this.buildId) fromDebug(elf, debug);
          } finally {
            elf.close();
          }
        }
      }
    }
    this.flagCache = { flags, from };
    return this.flagCache;
  }

  /** Thread-pointer offset of the target's TLS variable at `value` in its TLS segment (an executable's). */
  tpoff(value: bigint): bigint | undefined {
    return this.tlsBlock === undefined ? undefined : value - this.tlsBlock;
  }
}
