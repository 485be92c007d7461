// Typed wrapper over the object diff exports (docs/core-abi.md, "Object diff").
// diffObjects() reads everything out of the core and closes the diff handle: the result
// is plain data, valid after the two ElfReaders are closed.
import { Core, CoreError } from "./instance.js";
import { ElfReader } from "./elf.js";

export type FunctionKind = "function" | "clone" | "cold";
export type FunctionStatus = "unchanged" | "changed" | "line-only" | "added" | "removed";
export type Binding = "local" | "global" | "weak";

/** Why a function differs (the first difference found). */
export type DiffReason =
  | "size"
  | "bytes"
  | "relocation-count"
  | "relocation-layout"
  | "relocation-target"
  | "piece"
  | "coupled"
  | "no-line-table"
  | "line-mismatch"
  | "exception-table";

export type RefKind =
  | "private" // compiler-made read-only data (jump table, switch table, __func__): moves with the code
  | "strings" // mergeable string section: moves with the code
  | "constants" // mergeable constant section: moves with the code
  | "exception-table" // LSDA (.gcc_except_table): moves with the code
  | "data" // existing named data: stays in the running program
  | "new-data" // named data new in the patched object: goes into the package
  | "function" // a function of the object
  | "external" // an undefined symbol
  | "section" // another section, by name
  | "absolute"; // an SHN_ABS symbol

export interface DiffRef {
  kind: RefKind;
  /** Symbol name, or the section name for section references. */
  name: string;
  /** Section index in the patched object (0 for external symbols). */
  section: number;
  /** Symbol index in the patched object (0 for section references). */
  symbol: number;
  /** The paired symbol of the original object (data that stays: the running program's object), 0 if none. */
  originalSymbol: number;
  /** Name of the paired original symbol (a static local may be numbered differently there). */
  originalName?: string;
  /** For "function": index of its record in DiffResult.functions. */
  function?: number;
  /** For "data" and "new-data": index of its record in DiffResult.data. */
  data?: number;
  threadLocal: boolean;
  readOnly: boolean;
  weak: boolean;
}

export interface LineSite {
  /** Offset in the function (same in both versions). */
  offset: number;
  oldValue: number;
  newValue: number;
  oldLine: number;
  newLine: number;
}

export interface DiffFunction {
  index: number;
  name: string;
  /** The function it belongs to: a clone's or cold piece's parent (its own name for kind "function"). */
  parent: string;
  /** Record index of the parent when it is in the object. */
  parentIndex?: number;
  kind: FunctionKind;
  bind: Binding;
  status: FunctionStatus;
  reason?: DiffReason;
  /** Offset of the first difference, when known. */
  at?: number;
  originalSymbol: number;
  patchedSymbol: number;
  originalSection: number;
  patchedSection: number;
  originalSize: number;
  patchedSize: number;
  /** What it refers to (for changed, line-only and added functions). */
  refs: DiffRef[];
  /** For line-only functions: the immediates that differ, with the lines proving it. */
  lineSites: LineSite[];
}

export type DataStatus = "unchanged" | "changed" | "added" | "removed";

export interface DiffData {
  index: number;
  /** Name in the patched object (the original's for a removed object). */
  name: string;
  /** Name in the original object (a static local may be numbered differently there). */
  originalName?: string;
  status: DataStatus;
  reason?: "size" | "value" | "storage";
  bind: Binding;
  threadLocal: boolean;
  readOnly: boolean;
  zeroInit: boolean;
  common: boolean;
  originalSymbol: number;
  patchedSymbol: number;
  originalSection: number;
  patchedSection: number;
  originalSize: number;
  patchedSize: number;
}

export interface DiffRefusal {
  code: number;
  /** Which refusal (assembly/error.ts). */
  reason: "data-changed" | "new-tls" | "constructor" | "ambiguous-static" | "other";
  message: string;
  function?: number;
  data?: number;
}

export interface DiffResult {
  functions: DiffFunction[];
  data: DiffData[];
  refusals: DiffRefusal[];
  originalHasLines: boolean;
  patchedHasLines: boolean;
}

interface DiffExports {
  diff_objects(orig: number, patched: number): number;
  diff_close(h: number): number;
  diff_info(h: number, out: number): number;
  diff_functions(h: number, first: number, count: number, out: number): number;
  diff_refs(h: number, first: number, count: number, out: number): number;
  diff_data(h: number, first: number, count: number, out: number): number;
  diff_refusals(h: number, first: number, count: number, out: number): number;
  diff_line_sites(h: number, first: number, count: number, out: number): number;
  diff_units(elf: number, out: number, cap: number): number;
  diff_units_dwo(elf: number, out: number, cap: number): number;
}

/** Codes of assembly/error.ts for the diff. */
export const DiffError = {
  NOT_RELOCATABLE: 700,
  LTO: 701,
  NO_FUNCTION_SECTIONS: 702,
  NO_DATA_SECTIONS: 703,
  BAD_RELOCATION: 704,
  DATA_CHANGED: 720,
  NEW_TLS: 721,
  CONSTRUCTOR: 722,
  AMBIGUOUS_STATIC: 723,
  DWARF_BAD: 740,
  DWARF_COMPRESSED: 741,
} as const;

const KINDS: FunctionKind[] = ["function", "clone", "cold"];
const STATUS: FunctionStatus[] = ["unchanged", "changed", "line-only", "added", "removed"];
const BINDS: Binding[] = ["local", "global", "weak"];
const REASONS: Array<DiffReason | undefined> = [undefined, "size", "bytes", "relocation-count", "relocation-layout", "relocation-target", "piece", "coupled", "no-line-table", "line-mismatch", "exception-table"];
const REF_KINDS: Array<RefKind | undefined> = [undefined, "private", "strings", "constants", "exception-table", "data", "new-data", "function", "external", "section", "absolute"];
const DATA_STATUS: Array<DataStatus | undefined> = ["unchanged", "changed", undefined, "added", "removed"];
const DATA_REASONS = [undefined, "size", "value", "storage"] as const;
const REFUSALS: Record<number, DiffRefusal["reason"]> = { 720: "data-changed", 721: "new-tls", 722: "constructor", 723: "ambiguous-static" };

/**
 * Diffs two relocatable objects (the original build's and the patched build's). Throws a
 * CoreError (code 700..704, message prefixed with the patched object's name) when an
 * object is refused as a whole; refusals of parts are in the result's `refusals`.
 */
export function diffObjects(core: Core, original: ElfReader, patched: ElfReader): DiffResult {
  const x = core.exports as unknown as DiffExports;
  const h = x.diff_objects(original.handle, patched.handle);
  if (h === 0) {
    const e = core.lastError();
    const blamed = /^original object/.test(e.message) ? original.name : patched.name;
    throw new CoreError(e.code, `${blamed}: ${e.message}`);
  }
  try {
    return readDiff(core, x, h);
  } finally {
    x.diff_close(h);
  }
}

function readDiff(core: Core, x: DiffExports, h: number): DiffResult {
  const info = records(core, 32, 1, (out) => x.diff_info(h, out) === 0 ? 1 : -1, (v, o) => ({
    functions: v.getUint32(o, true),
    refs: v.getUint32(o + 4, true),
    data: v.getUint32(o + 8, true),
    refusals: v.getUint32(o + 12, true),
    sites: v.getUint32(o + 16, true),
    flags: v.getUint32(o + 20, true),
  }))[0];
  const str = (p: number, n: number) => (n === 0 ? "" : core.string(p, n));
  const data = records(core, 48, info.data, (out) => x.diff_data(h, 0, info.data, out), (v, o, i): DiffData => {
    const flags = v.getUint8(o + 10);
    const why = v.getUint8(o + 11);
    return {
      index: i,
      name: str(v.getUint32(o, true), v.getUint32(o + 4, true)),
      status: DATA_STATUS[v.getUint8(o + 8)]!,
      reason: DATA_REASONS[why],
      bind: BINDS[v.getUint8(o + 9)],
      threadLocal: (flags & 1) !== 0,
      readOnly: (flags & 2) !== 0,
      zeroInit: (flags & 4) !== 0,
      common: (flags & 8) !== 0,
      originalSymbol: v.getUint32(o + 12, true),
      patchedSymbol: v.getUint32(o + 16, true),
      originalSection: v.getUint32(o + 20, true),
      patchedSection: v.getUint32(o + 24, true),
      originalSize: v.getUint32(o + 28, true),
      patchedSize: v.getUint32(o + 32, true),
      originalName: v.getUint32(o + 44, true) ? str(v.getUint32(o + 40, true), v.getUint32(o + 44, true)) : undefined,
    };
  });
  const refs = records(core, 40, info.refs, (out) => x.diff_refs(h, 0, info.refs, out), (v, o): DiffRef => {
    const kind = REF_KINDS[v.getUint8(o)]!;
    const flags = v.getUint8(o + 1);
    const fn = v.getInt32(o + 16, true);
    const dt = v.getInt32(o + 20, true);
    const isData = kind === "data" || kind === "new-data";
    return {
      kind,
      name: str(v.getUint32(o + 24, true), v.getUint32(o + 28, true)),
      section: v.getUint32(o + 4, true),
      symbol: v.getUint32(o + 8, true),
      originalSymbol: v.getUint32(o + 12, true),
      originalName: v.getUint32(o + 36, true) ? str(v.getUint32(o + 32, true), v.getUint32(o + 36, true)) : undefined,
      function: fn >= 0 ? fn : undefined,
      data: dt >= 0 ? dt : undefined,
      threadLocal: isData && (flags & 1) !== 0,
      readOnly: isData && (flags & 2) !== 0,
      weak: (kind === "external" || kind === "absolute") && (flags & 4) !== 0,
    };
  });
  const sites = records(core, 24, info.sites, (out) => x.diff_line_sites(h, 0, info.sites, out), (v, o) => ({
    fn: v.getUint32(o, true),
    site: {
      offset: v.getUint32(o + 4, true),
      oldValue: v.getUint32(o + 8, true),
      newValue: v.getUint32(o + 12, true),
      oldLine: v.getUint32(o + 16, true),
      newLine: v.getUint32(o + 20, true),
    } as LineSite,
  }));
  const functions = records(core, 64, info.functions, (out) => x.diff_functions(h, 0, info.functions, out), (v, o, i): DiffFunction => {
    const name = str(v.getUint32(o, true), v.getUint32(o + 4, true));
    const at = v.getInt32(o + 40, true);
    const parent = v.getInt32(o + 44, true);
    const rf = v.getUint32(o + 48, true);
    const rn = v.getUint32(o + 52, true);
    const sf = v.getUint32(o + 56, true);
    const sn = v.getUint32(o + 60, true);
    return {
      index: i,
      name,
      parent: name.slice(0, v.getUint32(o + 8, true)),
      parentIndex: parent >= 0 ? parent : undefined,
      kind: KINDS[v.getUint8(o + 12)],
      bind: BINDS[v.getUint8(o + 13)],
      status: STATUS[v.getUint8(o + 14)],
      reason: REASONS[v.getUint8(o + 15)],
      at: at >= 0 ? at : undefined,
      originalSymbol: v.getUint32(o + 16, true),
      patchedSymbol: v.getUint32(o + 20, true),
      originalSection: v.getUint32(o + 24, true),
      patchedSection: v.getUint32(o + 28, true),
      originalSize: v.getUint32(o + 32, true),
      patchedSize: v.getUint32(o + 36, true),
      refs: refs.slice(rf, rf + rn),
      lineSites: sites.slice(sf, sf + sn).map((s) => s.site),
    };
  });
  const refusals = records(core, 24, info.refusals, (out) => x.diff_refusals(h, 0, info.refusals, out), (v, o): DiffRefusal => {
    const code = v.getUint32(o, true);
    const fn = v.getInt32(o + 4, true);
    const dt = v.getInt32(o + 8, true);
    return {
      code,
      reason: REFUSALS[code] ?? "other",
      message: str(v.getUint32(o + 12, true), v.getUint32(o + 16, true)),
      function: fn >= 0 ? fn : undefined,
      data: dt >= 0 ? dt : undefined,
    };
  });
  return { functions, data, refusals, originalHasLines: (info.flags & 1) !== 0, patchedHasLines: (info.flags & 2) !== 0 };
}

function records<T>(core: Core, size: number, n: number, fill: (out: number) => number, read: (v: DataView, o: number, i: number) => T): T[] {
  if (n === 0) return [];
  const out = core.exports.alloc(size * n);
  try {
    if (fill(out) < 0) throw core.lastError();
    const v = core.view;
    const r: T[] = [];
    for (let i = 0; i < n; i++) r.push(read(v, out + i * size, i));
    return r;
  } finally {
    core.exports.free(out);
  }
}

/** The names of the functions with a given status. */
export function functionsWith(d: DiffResult, ...status: FunctionStatus[]): string[] {
  return d.functions.filter((f) => status.includes(f.status)).map((f) => f.name);
}

/** A compile unit of an ELF file's DWARF (diff_units): what its first DIE says. */
export interface CompileUnit {
  /** Offset of the unit in .debug_info. */
  offset: number;
  version: number;
  /** DW_UT_* (1 compile, 2 type, 3 partial, 4 skeleton, 5 split compile, 6 split type). */
  unitType: number;
  name?: string; // DW_AT_name: the primary source file as given to the compiler
  producer?: string; // DW_AT_producer: "GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2 ..."
  compDir?: string; // DW_AT_comp_dir
  /** Split DWARF (diff_units_dwo): the .dwo a skeleton names (DW_AT_dwo_name, DW_AT_GNU_dwo_name), relative to compDir. */
  dwoName?: string;
  /** Split DWARF: the id a skeleton and its split unit share (unit header in DWARF 5, DW_AT_GNU_dwo_id in 4). */
  dwoId?: bigint;
}

/**
 * The compile units of an ELF file (object, executable, library or debug file; DWARF 2
 * to 5, relocations applied in an object). [] without .debug_info. Throws a CoreError
 * (740 malformed, 741 compressed sections) prefixed with the file's name.
 */
export function compileUnits(core: Core, elf: ElfReader): CompileUnit[] {
  const x = core.exports as unknown as DiffExports;
  const n = x.diff_units(elf.handle, 0, 0);
  if (n < 0) {
    const e = core.lastError();
    throw new CoreError(e.code, `${elf.name}: ${e.message}`);
  }
  const units = records(core, 40, n, (out) => x.diff_units(elf.handle, out, n), (v, o): CompileUnit => {
    const flags = v.getUint8(o + 11);
    const u: CompileUnit = { offset: Number(v.getBigUint64(o, true)), version: v.getUint16(o + 8, true), unitType: v.getUint8(o + 10) };
    if (flags & 1) u.name = core.string(v.getUint32(o + 12, true), v.getUint32(o + 16, true));
    if (flags & 2) u.producer = core.string(v.getUint32(o + 20, true), v.getUint32(o + 24, true));
    if (flags & 4) u.compDir = core.string(v.getUint32(o + 28, true), v.getUint32(o + 32, true));
    return u;
  });
  if (units.length) {
    records(core, 24, n, (out) => x.diff_units_dwo(elf.handle, out, n), (v, o, i) => {
      const flags = v.getUint32(o + 16, true);
      if (flags & 1) units[i].dwoName = core.string(v.getUint32(o, true), v.getUint32(o + 4, true));
      if (flags & 2) units[i].dwoId = v.getBigUint64(o + 8, true);
    });
  }
  return units;
}
