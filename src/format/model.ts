// The patch package in memory: what `patchc build` produces and `patchc apply` consumes.
// The writer turns a PatchPackage into the ELF container (docs/format.md) and the reader
// gives it back; validateModel() states every rule both sides enforce.
//
// Indices: a Relocation's `symbol`, a Function's `symbol` and a Reference's `symbol`
// index `symbols`; a symbol's `section` indexes `sections`. The writer emits the symbols
// locals first (ELF requires it), keeping the order otherwise, and renumbers; a model
// whose locals already come first reads back identical.
//
// Offsets and sizes inside the package are numbers; addresses in the target (link-time
// virtual addresses, as in its .symtab: apply adds the load bias) are bigints.
import { ModelError } from "./errors.js";
import * as D from "./defs.js";

export interface PatchPackage {
  /** Names the patch in the target (status, revert, dependencies): [A-Za-z0-9][A-Za-z0-9._+-]{0,63}. */
  patchId: string;
  producer?: string; // e.g. "patchc 0.1.0"
  description?: string;
  target: Target;
  /** Patches that must be applied before this one, in the order given. */
  dependencies: Dependency[];
  /** Code and data of the patch, with their relocations. */
  sections: Section[];
  symbols: PackageSymbol[];
  functions: PatchFunction[];
  /** How each undefined symbol binds in the target: one per undefined symbol. */
  references: Reference[];
}

export interface Target {
  buildId: string; // lowercase hex of the GNU build-id note
  path: string; // where the build found it: a hint for people, apply matches by build-id
  soname?: string; // DT_SONAME of a shared library
  type: "exec" | "dyn"; // ET_EXEC, or ET_DYN (a PIE or a shared library)
}

export interface Dependency {
  patchId: string;
  hash?: string; // its content hash (64 hex digits), when this patch needs exactly that build of it
}

export type SectionType = "progbits" | "nobits" | "unwind"; // unwind: SHT_X86_64_UNWIND

export interface Section {
  name: string; // .text.<fn>, .rodata.*, .data.*, .bss.*, .eh_frame, .gcc_except_table.*
  type: SectionType;
  flags: number; // SHF_* of D.CONTENT_FLAGS; SHF_ALLOC always
  align: number; // a power of two
  entsize: number;
  size: number;
  data?: Uint8Array; // absent for nobits; else exactly `size` bytes
  relocations: Relocation[];
}

export interface Relocation {
  offset: number; // in the section
  type: number; // R_X86_64_*
  symbol: number; // index into symbols
  addend: bigint;
}

export type SymbolType = "notype" | "object" | "func" | "section" | "tls";
export type SymbolBind = "local" | "global" | "weak";
export type Visibility = (typeof D.STV_NAMES)[number];

export interface PackageSymbol {
  name: string; // "" for section symbols
  type: SymbolType;
  bind: SymbolBind;
  visibility?: Visibility; // default when absent
  section?: number; // index into sections; absent: undefined (bound by a Reference)
  value: number;
  size: number;
}

/** A local symbol of the target: the STT_FILE it follows, and its 1-based position among
 * the local symbols of that name in the target's .symtab. */
export interface LocalIdentity {
  file: string;
  sympos: number;
}

/** A replaced function as it is in the target, checked by apply before it patches. */
export interface Original {
  addr: bigint; // link-time address of its entry
  size: bigint;
  site: Uint8Array; // the bytes expected at the entry (at least what the jump overwrites)
  sha256?: string; // of all `size` bytes in the target file, 64 hex digits
}

/** A Frame Description Entry in the package's .eh_frame. */
export interface Fde {
  offset: number;
  size: number; // including its length field
}

export interface PatchFunction {
  kind: "replace" | "add";
  name: string; // as in the target's .symtab (mangled for C++)
  local?: LocalIdentity; // replace only: a static function
  symbol: number; // the defined STT_FUNC symbol of the new code
  original?: Original; // replace only
  /** Stacking: the patch whose jump the site holds (this one supersedes its version). */
  after?: string;
  fde?: Fde;
  pieces: Piece[];
}

/** A piece split off a function by the compiler (foo.cold, foo.part.0): the stack check
 * covers the old piece, the new code brings the new one. */
export interface Piece {
  kind: "cold" | "part";
  name: string;
  local?: LocalIdentity;
  symbol?: number; // the new piece, when the new code has one
  original?: { addr: bigint; size: bigint }; // the old piece, when the target has one
  fde?: Fde;
}

export type BindKind = "direct" | "got" | "plt" | "tls";
export type Scope = "module" | "dynamic" | "patch";
export type RefType = (typeof D.REF_TYPES)[number];
export type TlsModel = "gd" | "ld" | "ie" | "le";

/**
 * How one undefined symbol of the package binds to something definite in the running
 * process (docs/format.md, "References").
 *   bind direct: the symbol's address (module: `addr` + bias; dynamic: lookup in the
 *                process's search order, with `version`; patch: the earlier patch's symbol)
 *   bind got:    the value in the target's own GOT slot `gotSlot` (what ld.so bound)
 *   bind plt:    the target's own PLT entry `pltEntry`
 *   bind tls:    a TLS variable; `tls.offset` in its module's TLS block, `tls.model` as
 *                the code accesses it; IE may name the target's TPOFF GOT slot in `gotSlot`
 */
export interface Reference {
  symbol: number;
  name: string;
  local?: LocalIdentity; // module scope only
  bind: BindKind;
  scope: Scope;
  type: RefType;
  version?: string; // symbol version (GLIBC_2.14)
  library?: string; // dynamic: the library expected to define it (a soname), a hint
  patch?: string; // patch scope: the patch id defining it (a dependency)
  addr?: bigint; // link-time address in the target module (required for module + direct)
  gotSlot?: bigint; // link-time address of the target's GOT slot for it
  pltEntry?: bigint; // link-time address of the target's PLT entry for it
  tls?: { model: TlsModel; offset: bigint };
}

export const PATCH_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;
const MAX_SECTION_SIZE = 1 << 30;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

/** "foo", or "foo (a.c #2)" for a local. */
export function describeName(name: string, local?: LocalIdentity): string {
  return local ? `${name} (${local.file} #${local.sympos})` : name;
}

function fail(subject: string, reason: string): never {
  throw new ModelError(subject, reason);
}

function checkString(subject: string, what: string, s: string | undefined, required: boolean): void {
  if (s === undefined || s === "") {
    if (required) fail(subject, `${what} is empty`);
    return;
  }
  if (typeof s !== "string") fail(subject, `${what} is not a string`);
  if (s.includes("\0")) fail(subject, `${what} contains a NUL character`);
}

function checkU64(subject: string, what: string, v: bigint | undefined): void {
  if (v === undefined) return;
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX) fail(subject, `${what} ${String(v)} is not an unsigned 64-bit address`);
}

function checkCount(subject: string, what: string, v: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < 0 || v > max) fail(subject, `${what} ${v} is not a valid count`);
}

function checkLocal(subject: string, local: LocalIdentity | undefined): void {
  if (!local) return;
  checkString(subject, "file of the local symbol", local.file, true);
  if (!Number.isInteger(local.sympos) || local.sympos < 1 || local.sympos > 0xffffffff) {
    fail(subject, `sympos ${local.sympos} is not a 1-based position`);
  }
}

/**
 * Checks every rule of the format; throws a ModelError naming the function, reference,
 * section or symbol at fault and the reason. The writer runs it before writing and the
 * reader after decoding, so a package that reads is one apply can use.
 */
export function validateModel(m: PatchPackage): void {
  if (!PATCH_ID_RE.test(m.patchId ?? "")) fail("patch id", `"${m.patchId}" is not 1-64 characters of [A-Za-z0-9._+-] starting with a letter or digit`);
  checkString("producer", "producer", m.producer, false);
  checkString("description", "description", m.description, false);

  const t = m.target;
  if (!t) fail("target", "missing");
  if (!/^([0-9a-f]{2}){1,64}$/.test(t.buildId ?? "")) fail("target", `build-id "${t.buildId}" is not 1-64 bytes of lowercase hex`);
  checkString("target", "path hint", t.path, true);
  checkString("target", "soname", t.soname, false);
  if (t.type !== "exec" && t.type !== "dyn") fail("target", `type "${t.type}" is not exec or dyn`);

  const deps = new Set<string>();
  for (const d of m.dependencies) {
    const subject = `dependency ${d.patchId}`;
    if (!PATCH_ID_RE.test(d.patchId ?? "")) fail(subject, "not a valid patch id");
    if (d.patchId === m.patchId) fail(subject, "a patch cannot depend on itself");
    if (deps.has(d.patchId)) fail(subject, "listed twice");
    if (d.hash !== undefined && !HEX64_RE.test(d.hash)) fail(subject, `hash "${d.hash}" is not 64 lowercase hex digits`);
    deps.add(d.patchId);
  }

  // Sections and their relocations.
  let ehFrame = -1;
  m.sections.forEach((s, i) => {
    const subject = `section ${i} (${s.name})`;
    checkString(subject, "name", s.name, true);
    if (s.name.startsWith(".patchc.") || s.name.startsWith(".rela") || [".symtab", ".strtab", ".shstrtab"].includes(s.name)) {
      fail(subject, "the name is reserved for the container's own sections");
    }
    if (s.type !== "progbits" && s.type !== "nobits" && s.type !== "unwind") fail(subject, `type "${s.type}" is not progbits, nobits or unwind`);
    checkCount(subject, "flags", s.flags, 0xffffffff);
    if ((s.flags & ~D.CONTENT_FLAGS) !== 0) {
      fail(subject, `flags 0x${s.flags.toString(16)} outside WRITE|ALLOC|EXECINSTR|MERGE|STRINGS (TLS and group sections cannot be in a package)`);
    }
    if ((s.flags & D.SHF_ALLOC) === 0) fail(subject, "not SHF_ALLOC: a package holds only what apply loads");
    if ((s.flags & D.SHF_WRITE) && (s.flags & D.SHF_EXECINSTR)) fail(subject, "writable and executable: patch memory is never both");
    if (!Number.isInteger(s.align) || s.align < 1 || s.align > 1 << 16 || (s.align & (s.align - 1)) !== 0) {
      fail(subject, `alignment ${s.align} is not a power of two up to 65536`);
    }
    checkCount(subject, "entsize", s.entsize, 0xffffffff);
    checkCount(subject, "size", s.size, MAX_SECTION_SIZE);
    if (s.type === "nobits") {
      if (s.data !== undefined) fail(subject, "a nobits section has no data");
      if (s.flags & D.SHF_EXECINSTR) fail(subject, "a nobits section cannot be code");
      if (s.relocations.length) fail(subject, "a nobits section cannot have relocations");
    } else if (!(s.data instanceof Uint8Array) || s.data.length !== s.size) {
      fail(subject, `data of ${s.data?.length ?? "no"} bytes for a size of ${s.size}`);
    }
    if (s.name === ".eh_frame") {
      if (ehFrame >= 0) fail(subject, "a second .eh_frame section");
      if (s.type === "nobits") fail(subject, ".eh_frame must have data");
      ehFrame = i;
    }
    s.relocations.forEach((r, j) => {
      const what = `${subject}: relocation ${j} at 0x${Number(r.offset).toString(16)}`;
      const info = D.RELOC_TYPES.get(r.type);
      if (!info) fail(what, `type ${r.type} is not an x86-64 relocation of relocatable objects`);
      if (!Number.isInteger(r.offset) || r.offset < 0 || r.offset + info.width > s.size) {
        fail(what, `${info.name} patches ${info.width} bytes past the end of the section (${s.size} bytes)`);
      }
      if (!Number.isInteger(r.symbol) || r.symbol < 0 || r.symbol >= m.symbols.length) fail(what, `symbol ${r.symbol} is not a symbol of the package`);
      if (typeof r.addend !== "bigint" || r.addend < I64_MIN || r.addend > I64_MAX) fail(what, `addend ${String(r.addend)} is not a signed 64-bit value`);
    });
  });

  // Symbols.
  m.symbols.forEach((sym, i) => {
    const subject = `symbol ${i} (${sym.name || "section"})`;
    if (!["notype", "object", "func", "section", "tls"].includes(sym.type)) fail(subject, `type "${sym.type}" is not notype, object, func, section or tls`);
    if (!["local", "global", "weak"].includes(sym.bind)) fail(subject, `binding "${sym.bind}" is not local, global or weak`);
    if (sym.visibility !== undefined && !D.STV_NAMES.includes(sym.visibility)) fail(subject, `visibility "${sym.visibility}" is unknown`);
    checkCount(subject, "value", sym.value);
    checkCount(subject, "size", sym.size);
    if (sym.section === undefined) {
      checkString(subject, "name", sym.name, true);
      if (sym.bind === "local") fail(subject, "an undefined symbol cannot be local");
      if (sym.type === "section") fail(subject, "a section symbol must be defined");
      if (sym.value !== 0 || sym.size !== 0) fail(subject, "an undefined symbol has value and size 0");
      return;
    }
    if (!Number.isInteger(sym.section) || sym.section < 0 || sym.section >= m.sections.length) fail(subject, `section ${sym.section} is not a section of the package`);
    const sec = m.sections[sym.section];
    if (sym.type === "section") {
      if (sym.name !== "" || sym.bind !== "local" || sym.value !== 0 || sym.size !== 0) fail(subject, "a section symbol is local, unnamed, with value and size 0");
      return;
    }
    checkString(subject, "name", sym.name, true);
    if (sym.type === "tls") fail(subject, "a package cannot define TLS variables");
    if (sym.value + sym.size > sec.size) fail(subject, `0x${sym.value.toString(16)} + ${sym.size} bytes run past the end of ${sec.name} (${sec.size} bytes)`);
  });

  const codeSymbol = (subject: string, what: string, index: number): PackageSymbol => {
    if (!Number.isInteger(index) || index < 0 || index >= m.symbols.length) fail(subject, `${what} ${index} is not a symbol of the package`);
    const sym = m.symbols[index];
    if (sym.section === undefined || sym.type !== "func") fail(subject, `${what} ${index} (${sym.name}) is not a function defined in the package`);
    if (!(m.sections[sym.section].flags & D.SHF_EXECINSTR)) fail(subject, `${what} ${index} (${sym.name}) is not in a code section`);
    if (sym.size === 0) fail(subject, `${what} ${index} (${sym.name}) has size 0`);
    return sym;
  };
  const checkFde = (subject: string, fde: Fde | undefined, sym: PackageSymbol | undefined): void => {
    if (!fde) return;
    if (ehFrame < 0) fail(subject, "an FDE is given but the package has no .eh_frame");
    const eh = m.sections[ehFrame];
    checkCount(subject, "FDE offset", fde.offset);
    checkCount(subject, "FDE size", fde.size);
    if (fde.size < 16 || fde.offset + fde.size > eh.size) fail(subject, `FDE at 0x${fde.offset.toString(16)} of ${fde.size} bytes is not inside .eh_frame (${eh.size} bytes)`);
    const v = new DataView(eh.data!.buffer, eh.data!.byteOffset, eh.data!.byteLength);
    if (v.getUint32(fde.offset, true) !== fde.size - 4) fail(subject, `the record at .eh_frame+0x${fde.offset.toString(16)} is ${v.getUint32(fde.offset, true) + 4} bytes, not ${fde.size}`);
    if (v.getUint32(fde.offset + 4, true) === 0) fail(subject, `the record at .eh_frame+0x${fde.offset.toString(16)} is a CIE, not an FDE`);
    const pcBegin = eh.relocations.find((r) => r.offset === fde.offset + 8);
    if (!pcBegin || !sym || m.symbols[pcBegin.symbol].section !== sym.section) {
      fail(subject, `the FDE at .eh_frame+0x${fde.offset.toString(16)} does not cover the function's code section`);
    }
  };

  // Functions.
  const replaced = new Set<string>();
  const usedSymbols = new Set<number>();
  for (const f of m.functions) {
    const subject = `function ${describeName(f.name, f.local)}`;
    checkString(subject, "name", f.name, true);
    checkLocal(subject, f.local);
    if (f.kind !== "replace" && f.kind !== "add") fail(subject, `kind "${f.kind}" is not replace or add`);
    const sym = codeSymbol(subject, "new code symbol", f.symbol);
    if (usedSymbols.has(f.symbol)) fail(subject, `symbol ${f.symbol} (${sym.name}) is the new code of another function or piece too`);
    usedSymbols.add(f.symbol);
    if (f.kind === "replace") {
      const o = f.original;
      if (!o) fail(subject, "a replaced function needs its original (address, size, expected site bytes)");
      checkU64(subject, "original address", o.addr);
      checkU64(subject, "original size", o.size);
      if (o.size === 0n) fail(subject, "original size is 0");
      if (!(o.site instanceof Uint8Array) || o.site.length === 0) fail(subject, "the expected bytes at the patch site are missing");
      if (BigInt(o.site.length) > o.size) fail(subject, `${o.site.length} expected site bytes for a function of ${o.size} bytes`);
      if (o.sha256 !== undefined && !HEX64_RE.test(o.sha256)) fail(subject, `original sha256 "${o.sha256}" is not 64 lowercase hex digits`);
      const key = describeName(f.name, f.local);
      if (replaced.has(key)) fail(subject, "replaced twice");
      replaced.add(key);
    } else {
      if (f.original) fail(subject, "an added function has no original");
      if (f.local) fail(subject, "an added function has no local identity in the target");
      if (f.after !== undefined) fail(subject, "an added function supersedes nothing");
    }
    if (f.after !== undefined && !deps.has(f.after)) fail(subject, `supersedes patch ${f.after}, which is not among the dependencies`);
    checkFde(subject, f.fde, sym);
    for (const p of f.pieces) {
      const ps = `${subject}: piece ${describeName(p.name, p.local)}`;
      checkString(ps, "name", p.name, true);
      checkLocal(ps, p.local);
      if (p.kind !== "cold" && p.kind !== "part") fail(ps, `kind "${p.kind}" is not cold or part`);
      if (p.symbol === undefined && p.original === undefined) fail(ps, "neither a new piece nor an original one");
      let psym: PackageSymbol | undefined;
      if (p.symbol !== undefined) {
        psym = codeSymbol(ps, "new code symbol", p.symbol);
        if (usedSymbols.has(p.symbol)) fail(ps, `symbol ${p.symbol} (${psym.name}) is the new code of another function or piece too`);
        usedSymbols.add(p.symbol);
      }
      if (p.original) {
        if (f.kind === "add") fail(ps, "a piece of an added function has no original");
        checkU64(ps, "original address", p.original.addr);
        checkU64(ps, "original size", p.original.size);
        if (p.original.size === 0n) fail(ps, "original size is 0");
      }
      if (p.fde && !psym) fail(ps, "an FDE without new code");
      checkFde(ps, p.fde, psym);
    }
  }

  // References: exactly one per undefined symbol.
  const bound = new Map<number, Reference>();
  for (const r of m.references) {
    const subject = `reference ${describeName(r.name, r.local)}`;
    checkString(subject, "name", r.name, true);
    checkLocal(subject, r.local);
    if (!Number.isInteger(r.symbol) || r.symbol < 0 || r.symbol >= m.symbols.length) fail(subject, `symbol ${r.symbol} is not a symbol of the package`);
    if (m.symbols[r.symbol].section !== undefined) fail(subject, `symbol ${r.symbol} (${m.symbols[r.symbol].name}) is defined in the package; only undefined symbols bind to the target`);
    if (bound.has(r.symbol)) fail(subject, `symbol ${r.symbol} is bound twice`);
    bound.set(r.symbol, r);
    if (!["direct", "got", "plt", "tls"].includes(r.bind)) fail(subject, `binding "${r.bind}" is not direct, got, plt or tls`);
    if (!["module", "dynamic", "patch"].includes(r.scope)) fail(subject, `scope "${r.scope}" is not module, dynamic or patch`);
    if (!D.REF_TYPES.includes(r.type)) fail(subject, `type "${r.type}" is not one of ${D.REF_TYPES.join(", ")}`);
    checkString(subject, "version", r.version, false);
    checkString(subject, "library", r.library, false);
    checkU64(subject, "address", r.addr);
    checkU64(subject, "GOT slot", r.gotSlot);
    checkU64(subject, "PLT entry", r.pltEntry);
    if (r.local && r.scope !== "module") fail(subject, "a local symbol is always in the target module (scope module)");
    if (r.library !== undefined && r.scope !== "dynamic") fail(subject, "a library is named only for scope dynamic");
    if (r.scope === "patch") {
      if (r.patch === undefined || !deps.has(r.patch)) fail(subject, `defined by patch ${r.patch ?? "(none)"}, which is not among the dependencies`);
      if (r.bind !== "direct") fail(subject, "a symbol of an earlier patch binds directly");
    } else if (r.patch !== undefined) {
      fail(subject, "a patch id is named only for scope patch");
    }
    if (r.scope === "module" && r.bind === "direct" && r.addr === undefined) fail(subject, "a direct reference into the target module needs its address");
    if (r.bind === "got" && r.gotSlot === undefined) fail(subject, "bound through the target's GOT but no GOT slot given");
    if (r.bind === "plt" && r.pltEntry === undefined) fail(subject, "bound through the target's PLT but no PLT entry given");
    if (r.bind === "tls") {
      if (!r.tls) fail(subject, "a TLS reference needs its model and offset");
      if (r.type !== "tls") fail(subject, `a TLS reference has type tls, not ${r.type}`);
    }
    if (r.tls) {
      if (r.bind !== "tls") fail(subject, "TLS facts are given only for bind tls");
      if (!["gd", "ld", "ie", "le"].includes(r.tls.model)) fail(subject, `TLS model "${r.tls.model}" is not gd, ld, ie or le`);
      checkU64(subject, "TLS offset", r.tls.offset);
    }
  }
  m.symbols.forEach((sym, i) => {
    if (sym.section === undefined && !bound.has(i)) fail(`symbol ${i} (${sym.name})`, "undefined and bound by no reference: apply could not resolve it");
  });

  // A TLS variable is reached only by TLS relocations, of the access model its reference says.
  m.sections.forEach((s, i) => {
    s.relocations.forEach((r, j) => {
      const ref = bound.get(r.symbol);
      const model = D.TLS_RELOC_MODELS.get(r.type);
      const what = `section ${i} (${s.name}): relocation ${j} at 0x${r.offset.toString(16)}`;
      if (model !== undefined) {
        const sym = m.symbols[r.symbol];
        if (ref && ref.bind !== "tls") fail(what, `${D.relocName(r.type)} refers to ${ref.name}, which is not bound as a TLS variable`);
        if (!ref && sym.section !== undefined && sym.type !== "section") fail(what, `${D.relocName(r.type)} refers to ${sym.name}, which the package defines: a package has no TLS variables`);
        if (ref?.tls && ref.tls.model !== model) fail(what, `${D.relocName(r.type)} is a ${model.toUpperCase()} access, but reference ${ref.name} says ${ref.tls.model.toUpperCase()}`);
      } else if (ref?.bind === "tls") {
        fail(what, `${D.relocName(r.type)} refers to the TLS variable ${ref.name} as if it were an ordinary symbol`);
      }
    });
  });
}
