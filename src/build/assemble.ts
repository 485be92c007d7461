// The package assembled from the patched objects: what moves with the new code and what
// stays in the running program, and how each thing that stays is bound.
//
// Starting from the functions to replace and add (their code sections, and their .cold
// pieces), the closure over their relocations decides, for each thing referred to:
//
//   referred to                                      becomes
//   a section already carried                        a symbol of the package
//   another function of the object                   a reference to the target's copy (module,
//                                                    locals by file and position); carried and
//                                                    added when the target has none (inlined
//                                                    everywhere, or removed by the linker)
//   compiler-made read-only data (jump tables,       carried: new code never reads an old
//   .rodata.str*, .rodata.cst*, anonymous .rodata,   table or string
//   .gcc_except_table)
//   a named object (global, static, static local)    a reference to the target's object; a new
//                                                    one (the diff says "added") is carried
//   a TLS variable                                   a TLS reference (model from the relocation)
//   an undefined symbol                              the target's definition (module), else its
//                                                    import: through its PLT entry (calls), its
//                                                    GOT slot (GOT loads), or by name (dynamic)
//   a preemptible symbol of a shared-library target  never its own definition: its GOT slot,
//   (global, default visibility, exported, no        PLT entry, or by name in the process's
//   -Bsymbolic: target.ts)                           search order (bindPreemptible)
//   (--after) something the target lacks and the     a reference of scope patch to it
//   earlier patch brought (earlier.ts)
//
// The .eh_frame of the package holds the CIEs and the FDEs of the carried code, with
// their LSDA and personality relocations bound the same way.
import type { ElfRela, ElfSymbol } from "../core/elf.js";
import type { DiffResult } from "../core/diff.js";
import * as D from "../format/defs.js";
import type { BindKind, Fde, PackageSymbol, PatchFunction, Piece, Reference, Relocation, Section } from "../format/model.js";
import type { EarlierPatch } from "./earlier.js";
import { BuildError } from "./errors.js";
import { ObjectFile, SHF_EXECINSTR, SHF_TLS, SHN_ABS, SHN_COMMON, SHN_UNDEF, SHT_NOBITS, SHT_X86_64_UNWIND } from "./object-file.js";
import { STB_LOCAL, STT_FILE, STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, STT_SECTION, STT_TLS, type TargetImage, type TargetSymbol } from "./target.js";

const R_PLT32 = 4;
const GOT_TYPES = new Set([3, 9, 41, 42, 43, 26, 27, 28]); // GOT32, GOTPCREL, GOTPCRELX, REX_GOTPCRELX, CODE_4_GOTPCRELX, GOTPC32, GOT64, GOTPCREL64
const STV_HIDDEN = 2;
const R_GLOB_DAT = 6;
const R_JUMP_SLOT = 7;
const ABS_TYPES = new Set([1, 10, 11]); // 64, 32, 32S
const PCREL_DATA_TYPES = new Set([2, 13, 15, 24]); // PC32, PC16, PC8, PC64

/** A function the package brings, as the object has it. */
export interface Root {
  kind: "replace" | "add";
  /** The new code: a function symbol of the patched object. */
  symbol: ElfSymbol;
  /** replace: the target's function (its name there, found and proven by the caller). */
  replaces?: { name: string; target: TargetSymbol };
  /** Its .cold pieces: the new one (patched object) and the old one (in the target). */
  pieces: Array<{ name: string; symbol?: ElfSymbol; original?: TargetSymbol }>;
}

/** One patched object and what of it goes into the package. */
export interface Unit {
  obj: ObjectFile;
  /** The original object and the diff (diff mode): the names things have in the target. */
  original?: ObjectFile;
  diff?: DiffResult;
  roots: Root[];
  /** Replacement mode: everything the object defines is new (no pairing with the target). */
  selfContained?: boolean;
}

interface EhRecord {
  data: Uint8Array;
  relocs: Relocation[];
  cie?: number; // FDE: offset of its CIE in the output
  covers?: number; // FDE: package section of the code it describes
}

export class Assembler {
  readonly sections: Section[] = [];
  readonly symbols: PackageSymbol[] = [];
  readonly references: Reference[] = [];
  readonly functions: PatchFunction[] = [];
  readonly notes: string[] = [];
  private readonly refKeys = new Map<string, number>();
  private readonly eh: EhRecord[] = [];
  private ehSize = 0;
  private readonly fdeOf = new Map<number, Fde>(); // package section -> FDE

  constructor(
    private readonly target: TargetImage,
    /** Stacking: the earlier patch whose symbols this one may refer to. */
    readonly earlier?: EarlierPatch,
  ) {}

  /** A reference of scope patch to `name`, when the earlier patch defines it. */
  earlierReference(name: string, weak: boolean): number | undefined {
    const s = this.earlier?.symbol(name);
    if (!s) return undefined;
    return this.reference({ name, bind: "direct", scope: "patch", patch: this.earlier!.id, type: s.type === "func" ? "func" : "object" }, weak);
  }

  add(unit: Unit): void {
    new UnitAssembler(this, this.target, unit).run();
  }

  /** A package symbol for a reference, one per distinct binding. */
  reference(ref: Omit<Reference, "symbol">, weak: boolean): number {
    const key = JSON.stringify([ref.name, ref.local?.file, ref.local?.sympos, ref.bind, ref.scope, ref.tls?.model, ref.addr?.toString(), ref.version]);
    const known = this.refKeys.get(key);
    if (known !== undefined) return known;
    const index = this.symbols.length;
    this.symbols.push({ name: ref.name, type: ref.type === "tls" ? "tls" : "notype", bind: weak ? "weak" : "global", value: 0, size: 0 });
    this.references.push({ ...ref, symbol: index });
    this.refKeys.set(key, index);
    return index;
  }

  /** Adds a CIE or FDE record to the package's .eh_frame; returns its offset. */
  ehRecord(rec: EhRecord): number {
    const at = this.ehSize;
    this.eh.push(rec);
    this.ehSize += rec.data.length;
    if (rec.covers !== undefined) this.fdeOf.set(rec.covers, { offset: at, size: rec.data.length });
    return at;
  }

  fde(section: number): Fde | undefined {
    return this.fdeOf.get(section);
  }

  /** The .eh_frame section, when any record was added (CIE pointers fixed up for their new places). */
  finishEhFrame(): void {
    if (!this.eh.length) return;
    const data = new Uint8Array(this.ehSize + 4); // ends with a zero terminator
    const relocations: Relocation[] = [];
    let at = 0;
    for (const r of this.eh) {
      data.set(r.data, at);
      if (r.cie !== undefined) new DataView(data.buffer).setUint32(at + 4, at + 4 - r.cie, true);
      for (const x of r.relocs) relocations.push({ ...x, offset: x.offset + at });
      at += r.data.length;
    }
    this.sections.push({ name: ".eh_frame", type: "progbits", flags: D.SHF_ALLOC, align: 8, entsize: 0, size: data.length, data, relocations });
  }
}

class UnitAssembler {
  private readonly obj: ObjectFile;
  /** Carried object sections -> package sections. */
  private readonly carried = new Map<number, number>();
  private readonly symMap = new Map<number, number>(); // object symbol -> package symbol
  private readonly roots: Root[];
  /** Patched symbol -> the original object's symbol (the name it has in the target). */
  private readonly originalOf = new Map<number, ElfSymbol>();
  /** Patched data symbol -> its diff status. */
  private readonly dataStatus = new Map<number, string>();

  constructor(
    private readonly pkg: Assembler,
    private readonly target: TargetImage,
    private readonly unit: Unit,
  ) {
    this.obj = unit.obj;
    this.roots = [...unit.roots];
    const d = unit.diff;
    if (d && unit.original) {
      for (const f of d.functions) if (f.patchedSymbol && f.originalSymbol) this.originalOf.set(f.patchedSymbol, unit.original.symbols[f.originalSymbol]);
      for (const x of d.data) {
        if (x.patchedSymbol) this.dataStatus.set(x.patchedSymbol, x.status);
        if (x.patchedSymbol && x.originalSymbol) this.originalOf.set(x.patchedSymbol, unit.original.symbols[x.originalSymbol]);
      }
    }
  }

  private fail(reason: string): never {
    throw new BuildError("package", `${this.obj.name}: ${reason}`);
  }

  run(): void {
    // The closure: sections to carry.
    const todo: number[] = [];
    const carry = (sec: number) => {
      if (this.carried.has(sec)) return;
      this.carried.set(sec, -1);
      todo.push(sec);
    };
    for (const r of this.roots) {
      carry(r.symbol.shndx);
      for (const p of r.pieces) if (p.symbol) carry(p.symbol.shndx);
    }
    const eh = this.ehFrame();
    while (todo.length) {
      const sec = todo.pop()!;
      const relocs = [...this.obj.relocs(sec)];
      if (this.obj.isCode(sec)) {
        for (const fde of eh.filter((f) => f.covers === sec)) {
          relocs.push(...fde.rels);
          relocs.push(...(eh.find((c) => c.offset === fde.cieOffset)?.rels ?? []));
        }
      }
      for (const r of relocs) {
        const decision = this.classify(this.obj.symbols[r.sym], r);
        if (decision.carry !== undefined) {
          if (decision.addFunction && !this.roots.some((x) => x.symbol.index === decision.addFunction!.index)) {
            this.roots.push({ kind: "add", symbol: decision.addFunction, pieces: [] });
            this.pkg.notes.push(`${this.obj.name}: ${decision.addFunction.name} is added: the target has no copy of it (inlined everywhere or removed by the linker)`);
          }
          carry(decision.carry);
        }
      }
    }

    // Sections, in object order, and the symbols defined in them.
    const secs = [...this.carried.keys()].sort((a, b) => a - b);
    for (const sec of secs) {
      const s = this.obj.sections[sec];
      const flags = Number(s.flags);
      if (flags & SHF_TLS) this.fail(`${s.name} is a TLS section: a package cannot add TLS variables`);
      const index = this.pkg.sections.length;
      this.carried.set(sec, index);
      this.pkg.sections.push({
        name: s.name,
        type: s.type === SHT_NOBITS ? "nobits" : "progbits",
        flags: flags & D.CONTENT_FLAGS,
        align: Math.max(1, Number(s.align)),
        entsize: Number(s.entsize),
        size: Number(s.size),
        data: s.type === SHT_NOBITS ? undefined : new Uint8Array(this.obj.data(sec)),
        relocations: [],
      });
      this.symMap.set(this.obj.sectionSymbol(sec)?.index ?? -1 - sec, this.pkg.symbols.length);
      this.pkg.symbols.push({ name: "", type: "section", bind: "local", section: index, value: 0, size: 0 });
    }
    for (const s of this.obj.symbols) {
      if (s.index === 0 || s.type === STT_SECTION || s.type === STT_FILE || !this.carried.has(s.shndx)) continue;
      this.symMap.set(s.index, this.pkg.symbols.length);
      this.pkg.symbols.push({
        name: s.name,
        type: s.type === STT_FUNC ? "func" : s.type === STT_OBJECT ? "object" : "notype",
        bind: s.bind === STB_LOCAL ? "local" : s.bind === 2 ? "weak" : "global",
        visibility: (D.STV_NAMES[s.other & 3] ?? "default") as PackageSymbol["visibility"],
        section: this.carried.get(s.shndx)!,
        value: Number(s.value),
        size: Number(s.size),
      });
    }
    // Relocations.
    for (const sec of secs) {
      this.pkg.sections[this.carried.get(sec)!].relocations = this.obj.relocs(sec).map((r) => this.relocation(r, Number(r.offset)));
    }
    // .eh_frame records of the carried code.
    const cieAt = new Map<number, number>();
    for (const rec of eh) {
      if (rec.covers === undefined || !this.carried.has(rec.covers)) continue;
      let cie = cieAt.get(rec.cieOffset!);
      if (cie === undefined) {
        const c = eh.find((x) => x.offset === rec.cieOffset && x.covers === undefined);
        if (!c) this.fail(`.eh_frame: the FDE at 0x${rec.offset.toString(16)} has no CIE`);
        cie = this.pkg.ehRecord({ data: c.data, relocs: c.rels.map((r) => this.relocation(r, Number(r.offset) - c.offset)) });
        cieAt.set(rec.cieOffset!, cie);
      }
      this.pkg.ehRecord({ data: rec.data, relocs: rec.rels.map((r) => this.relocation(r, Number(r.offset) - rec.offset)), cie, covers: this.carried.get(rec.covers) });
    }
    // Functions.
    for (const r of this.roots) this.pkg.functions.push(this.function(r));
  }

  private function(r: Root): PatchFunction {
    const symbol = this.symMap.get(r.symbol.index)!;
    const fde = this.pkg.fde(this.carried.get(r.symbol.shndx)!);
    const pieces: Piece[] = r.pieces.map((p) => {
      const piece: Piece = { kind: "cold", name: p.original ? p.original.sym.name : p.name };
      if (p.original) {
        piece.original = { addr: p.original.sym.value, size: p.original.sym.size };
        if (p.original.local) piece.local = p.original.local;
      }
      if (p.symbol) {
        piece.symbol = this.symMap.get(p.symbol.index)!;
        const pf = this.pkg.fde(this.carried.get(p.symbol.shndx)!);
        if (pf) piece.fde = pf;
      }
      return piece;
    });
    if (r.kind === "add") return { kind: "add", name: r.symbol.name, symbol, pieces, ...(fde ? { fde } : {}) };
    const t = r.replaces!.target;
    return {
      kind: "replace",
      name: r.replaces!.name,
      ...(t.local ? { local: t.local } : {}),
      symbol,
      original: { addr: t.sym.value, size: t.sym.size, site: new Uint8Array(0) }, // site and sha256: filled by the caller from the proof
      pieces,
      ...(fde ? { fde } : {}),
    };
  }

  /** What a relocation's symbol is: carried (a section to add), or staying (bound later). */
  private classify(s: ElfSymbol, r: ElfRela): { carry?: number; addFunction?: ElfSymbol } {
    if (s.shndx === SHN_UNDEF || s.shndx === SHN_ABS || s.shndx === SHN_COMMON || s.shndx >= this.obj.sections.length) return {};
    const sec = s.shndx;
    if (this.carried.has(sec)) return {};
    if (s.type === STT_FILE) return {};
    const flags = this.obj.flags(sec);
    if (flags & SHF_TLS) return {};
    if (flags & SHF_EXECINSTR) {
      const fn = s.type === STT_FUNC ? s : this.obj.functionAt(sec, this.offsetIn(s, r));
      if (!fn) return { carry: sec };
      if (!this.unit.selfContained && !this.inTarget(fn) && this.pkg.earlier?.symbol(this.targetName(fn).name)) return {}; // the earlier patch's
      if (this.unit.selfContained || !this.inTarget(fn)) return { carry: sec, addFunction: fn };
      return {};
    }
    const object = s.type === STT_OBJECT ? s : this.obj.objectAt(sec, this.offsetIn(s, r));
    if (!object) return { carry: sec }; // compiler-made data
    if (this.unit.selfContained) return { carry: sec };
    const status = this.dataStatus.get(object.index);
    if (status === "added") return { carry: sec };
    if (!this.inTarget(object) && this.pkg.earlier?.symbol(this.targetName(object).name)) return {}; // the earlier patch's
    if (!this.inTarget(object)) {
      this.pkg.notes.push(`${this.obj.name}: ${object.name} is carried: the target has no copy of it (removed by the linker)`);
      return { carry: sec };
    }
    return {};
  }

  /** Where in its section a relocation refers (for a section symbol: the addend, plus 4 for a rip-relative field). */
  private offsetIn(s: ElfSymbol, r: ElfRela): bigint {
    if (s.type !== STT_SECTION) return s.value;
    const pcrel = [2, 4, 9, 41, 42].includes(r.type);
    const off = r.addend + (pcrel ? 4n : 0n);
    return off < 0n ? 0n : off;
  }

  private targetName(s: ElfSymbol): { name: string; local: boolean; file: string | undefined } {
    const o = this.originalOf.get(s.index);
    const sym = o ?? s;
    const file = o ? this.unit.original!.sourceFile : this.obj.sourceFile;
    // A hidden global of an object is a local of the linked file.
    const local = sym.bind === STB_LOCAL || (sym.other & 3) === STV_HIDDEN;
    return { name: sym.name, local, file: file || undefined };
  }

  private findInTarget(s: ElfSymbol): TargetSymbol | undefined {
    const n = this.targetName(s);
    return this.target.find(n.name, n.local && s.bind === STB_LOCAL, n.file);
  }

  private inTarget(s: ElfSymbol): boolean {
    return this.findInTarget(s) !== undefined;
  }

  /** A relocation of a carried section (or an .eh_frame record), its symbol mapped or bound. */
  private relocation(r: ElfRela, offset: number): Relocation {
    const s = this.obj.symbols[r.sym];
    const mapped = this.symMap.get(r.sym) ?? (s.type === STT_SECTION && this.carried.has(s.shndx) ? this.symMap.get(this.obj.sectionSymbol(s.shndx)?.index ?? -1 - s.shndx) : undefined);
    if (mapped !== undefined) return { offset, type: r.type, symbol: mapped, addend: r.addend };
    const { symbol, addend } = this.bind(s, r);
    return { offset, type: r.type, symbol, addend };
  }

  /** Binds a symbol that stays in the running program; returns the package symbol and the addend to use with it. */
  private bind(s: ElfSymbol, r: ElfRela): { symbol: number; addend: bigint } {
    const model = D.TLS_RELOC_MODELS.get(r.type);
    if (s.shndx === SHN_UNDEF) return { symbol: this.bindExternal(s, r, model), addend: r.addend };
    if (s.shndx === SHN_ABS) this.fail(`${s.name} is an absolute symbol: not supported in a package`);
    if (s.shndx === SHN_COMMON) this.fail(`${s.name} is a common symbol: compile with -fno-common`);
    // Defined in the object, staying in the target: the function or object it is.
    const sec = s.shndx;
    const code = this.obj.isCode(sec);
    const thing = s.type === STT_SECTION ? (code ? this.obj.functionAt(sec, this.offsetIn(s, r)) : this.obj.objectAt(sec, this.offsetIn(s, r))) : s;
    if (!thing) this.fail(`a relocation refers to ${this.obj.sections[sec].name}+${r.addend}, where the object names nothing`);
    const addend = s.type === STT_SECTION ? r.addend - thing.value : r.addend;
    const t = this.findInTarget(thing);
    const n = this.targetName(thing);
    if (!t && model === undefined) {
      const earlier = this.pkg.earlierReference(n.name, false);
      if (earlier !== undefined) return { symbol: earlier, addend };
    }
    if (!t) this.fail(`${n.name}${n.local ? ` (a static of ${n.file})` : ""} is not in the target ${this.target.file}`);
    if (thing.type === STT_TLS || model !== undefined) {
      if (t.sym.type !== STT_TLS) this.fail(`${n.name} is a TLS variable in the object but not in the target`);
      return { symbol: this.pkg.reference({ name: n.name, ...(t.local ? { local: t.local } : {}), bind: "tls", scope: "module", type: "tls", tls: { model: model ?? "ie", offset: t.sym.value } }, false), addend };
    }
    const type = refType(t.sym.type);
    const exported = t.local ? undefined : this.target.preemptible(t.sym);
    if (exported) return { symbol: this.bindPreemptible(n.name, t, exported, r, false), addend };
    return { symbol: this.pkg.reference({ name: n.name, ...(t.local ? { local: t.local } : {}), bind: "direct", scope: "module", type, addr: t.sym.value }, false), addend };
  }

  /**
   * A symbol the target (a shared library) defines but may not own at run time: it is
   * preemptible (target.ts, "Preemption"), so the live definition is the first in the
   * process's search order (an executable's COPY of a variable, an LD_PRELOAD function),
   * and the library's own one may be dead. The new code reaches it as the library's code
   * does, never at the library's own definition:
   *   - a call (PLT32): through the library's PLT entry for it (its JUMP_SLOT), else the
   *     value of its GLOB_DAT slot;
   *   - a GOT load (GOTPCREL*) or an absolute address (64, 32, 32S): through its GLOB_DAT
   *     slot (apply uses the slot itself for GOT forms and the address ld.so put there
   *     otherwise);
   *   - with no slot of the library for it: ld.so's lookup in the process's search order
   *     (scope dynamic, with the version the library exports it under);
   *   - a PC-relative data reference (PC32, PC64): refused. Its field is S - P, the live
   *     definition may be anywhere in the address space (the executable's copy), and ld
   *     itself refuses PC32 to a preemptible symbol in a shared object; gcc -fPIC emits
   *     GOTPCREL for it, so the patched object was compiled unlike the library.
   */
  private bindPreemptible(name: string, t: TargetSymbol, exported: ElfSymbol, r: ElfRela, weak: boolean): number {
    const slots = this.target.slots(name);
    const glob = slots.find((x) => x.type === R_GLOB_DAT);
    const jump = slots.find((x) => x.type === R_JUMP_SLOT && x.plt !== undefined);
    const ref: Omit<Reference, "symbol"> = { name, bind: "direct", scope: "dynamic", type: refType(t.sym.type) };
    if (exported.version) ref.version = exported.version;
    if (this.target.soname) ref.library = this.target.soname;
    const call = r.type === R_PLT32;
    if (call && jump) {
      ref.bind = "plt";
      ref.pltEntry = jump.plt;
      ref.gotSlot = jump.address;
    } else if (glob && (call || GOT_TYPES.has(r.type) || ABS_TYPES.has(r.type))) {
      ref.bind = "got";
      ref.gotSlot = glob.address;
      if (glob.plt !== undefined) ref.pltEntry = glob.plt;
    } else if (PCREL_DATA_TYPES.has(r.type)) {
      this.fail(
        `${name} is preemptible in the shared library ${this.target.file} (global, default visibility, exported, no -Bsymbolic): at run time its live definition may be another module's (the executable's COPY, an LD_PRELOAD object), which the library reaches through its GOT; the new code refers to it with a direct PC-relative ${D.relocName(r.type)}, which cannot go through that slot (compile the patched object with -fPIC as the library is, so gcc loads it through the GOT, or give ${name} hidden or protected visibility)`,
      );
    } else {
      this.pkg.notes.push(`${this.obj.name}: ${name} is preemptible in ${this.target.file} and the library has no GOT slot or PLT entry for it: apply binds it by name in the process's search order`);
    }
    return this.pkg.reference(ref, weak);
  }

  private bindExternal(s: ElfSymbol, r: ElfRela, model: "gd" | "ld" | "ie" | "le" | undefined): number {
    const name = s.name;
    if (name === "_GLOBAL_OFFSET_TABLE_") this.fail("refers to _GLOBAL_OFFSET_TABLE_ (large code model): not supported in a package");
    const weak = s.bind === 2;
    const t = this.target.find(name, false, undefined);
    if (t) {
      if (t.sym.type === STT_TLS) {
        return this.pkg.reference({ name, bind: "tls", scope: "module", type: "tls", tls: { model: model ?? "ie", offset: t.sym.value } }, weak);
      }
      if (model !== undefined) this.fail(`${name} is reached by a TLS relocation but is not a TLS variable of the target`);
      const exported = this.target.preemptible(t.sym);
      if (exported) return this.bindPreemptible(name, t, exported, r, weak);
      const ref: Omit<Reference, "symbol"> = { name, bind: "direct", scope: "module", type: refType(t.sym.type), addr: t.sym.value };
      return this.pkg.reference(ref, weak);
    }
    if (model === undefined) {
      const earlier = this.pkg.earlierReference(name, weak);
      if (earlier !== undefined) return earlier;
    }
    const imp = this.target.imported(name);
    if (model !== undefined || imp?.type === STT_TLS) {
      this.fail(`${name} is a TLS variable of another library: not supported in a package yet`);
    }
    const ref: Omit<Reference, "symbol"> = { name, bind: "direct", scope: "dynamic", type: imp ? refType(imp.type) : "notype" };
    if (imp?.version) ref.version = imp.version;
    if (imp?.versionFile) ref.library = imp.versionFile;
    if (imp) {
      const slots = this.target.slots(imp.version ? `${name}@${imp.version}` : name);
      const jump = slots.find((x) => x.type === 7 && x.plt !== undefined);
      const glob = slots.find((x) => x.type === 6);
      let bind: BindKind = "direct";
      if (r.type === R_PLT32 && jump) bind = "plt";
      else if (GOT_TYPES.has(r.type) && glob) bind = "got";
      else if (r.type === R_PLT32 && glob?.plt !== undefined) bind = "plt";
      if (bind === "plt") {
        const e = jump ?? glob!;
        ref.pltEntry = e.plt;
        ref.gotSlot = e.address;
      } else if (bind === "got") {
        ref.gotSlot = glob!.address;
      }
      ref.bind = bind;
    } else {
      this.pkg.notes.push(`${this.obj.name}: ${name} is not used by the target yet: apply binds it by name in the process's libraries`);
    }
    return this.pkg.reference(ref, weak);
  }

  /** The patched object's .eh_frame, as CIE and FDE records with their relocations. */
  private ehFrame(): EhIn[] {
    const idx = this.obj.sections.findIndex((s) => s.name === ".eh_frame");
    if (idx < 0) return [];
    const sec = this.obj.sections[idx];
    if (sec.type !== 1 && sec.type !== SHT_X86_64_UNWIND) return [];
    const data = this.obj.data(idx);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const relocs = this.obj.relocs(idx);
    const out: EhIn[] = [];
    for (let o = 0; o + 4 <= data.length; ) {
      const len = v.getUint32(o, true);
      if (len === 0 || len === 0xffffffff || o + 4 + len > data.length) break;
      const id = v.getUint32(o + 4, true);
      const rels = relocs.filter((r) => Number(r.offset) >= o && Number(r.offset) < o + 4 + len);
      const rec: EhIn = { data: data.subarray(o, o + 4 + len), rels, offset: o };
      if (id !== 0) {
        rec.cieOffset = o + 4 - id;
        const pc = rels.find((r) => Number(r.offset) === o + 8);
        if (pc) rec.covers = this.obj.symbols[pc.sym].shndx;
      }
      out.push(rec);
      o += 4 + len;
    }
    return out;
  }
}

/** A record of an object's .eh_frame: a CIE, or an FDE (with the section its pc_begin names). */
interface EhIn {
  data: Uint8Array;
  rels: ElfRela[];
  offset: number;
  cieOffset?: number;
  covers?: number;
}

function refType(t: number): Reference["type"] {
  return t === STT_FUNC ? "func" : t === STT_OBJECT ? "object" : t === STT_TLS ? "tls" : t === STT_GNU_IFUNC ? "ifunc" : "notype";
}
