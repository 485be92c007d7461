// The flags check: objects compiled with other code-generation options than the target
// are refused before the proof of identity, with the options that differ, where the
// files record them:
//
//   - DW_AT_producer of each compile unit (.debug_info, read by the core: diff_units):
//     gcc writes its version and the options that matter for code there,
//     "GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2 -ffunction-sections ...";
//   - .GCC.command.line (-frecord-gcc-switches): the same string, one per object; in a
//     linked file the linker merged them (one per distinct set, not per unit).
//
// Where the DWARF is not plain:
//   - compressed debug sections (gcc -gz, ld --compress-debug-sections, .zdebug_*): the
//     core reads a copy with them inflated (debug-sections.ts); zstd needs Node 22.15+,
//     else the reason is a note;
//   - split DWARF (-gsplit-dwarf): the file's unit is a skeleton without DW_AT_producer;
//     it is read from the .dwo the skeleton names (DW_AT_comp_dir/DW_AT_dwo_name, else
//     beside the file), the unit of the skeleton's dwo_id; a .dwp package is not read.
//
// Compared per compile unit: the original object against the patched one (they must be
// the same build but for the fix), and the original object against the target's unit of
// the same DW_AT_name (its own .debug_info, or its debug file found by build-id; failing
// that, the target's .GCC.command.line). Replacement mode (--replace: one object of
// functions written by hand) compares its object with the target's unit of its name, else
// the units of the source files of the statics it replaces, else every unit of the target
// (one compiled alike suffices: a function may come from anywhere). Options are compared as their effect: the last
// of -O*, of -fX/-fno-X, of -mX/-mno-X, of -opt=value wins, order is otherwise ignored.
//
// Ignored: options that do not change the code a function compiles to
//   -g*  (-g, -g0..-g3, -ggdb, -gdwarf-N, -gsplit-dwarf, -gz, -gno-*, ...)
//        debug information only; gcc generates the same code with and without it
//        (what -fcompare-debug checks)
//   -f*-prefix-map=...  (debug-, file-, macro-, profile-): paths in the debug info and in
//        __FILE__; a changed __FILE__ string would show in the diff of the strings anyway
//   -frecord-gcc-switches, -grecord-gcc-switches: they only record the command line
//   -W*, -w, -pedantic*, -fdiagnostics-*: diagnostics only
// and, comparing the original objects with the target only, the options the build adds
// to the target's own flags (README, "patchc build"):
//   -ffunction-sections, -fdata-sections: where functions and data are placed, not their
//        code (the proof of identity compares the code byte by byte anyway)
//   -flive-patching=*: limits the interprocedural optimisations to what the diff follows;
//        any code it changes is refused by the proof of identity
import * as fs from "node:fs";
import * as path from "node:path";
import type { CompileUnit } from "../core/diff.js";
import { compileUnits } from "../core/diff.js";
import { CoreError, type Core } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import { inflateDebugSections } from "./debug-sections.js";
import { BuildError } from "./errors.js";

const NO_CODE_EFFECT = [/^-g/, /^-f[a-z]*-prefix-map=/, /^-frecord-gcc-switches$/, /^-W/, /^-w$/, /^-pedantic/, /^-fdiagnostics-/];
const ADDED_BY_BUILD = [/^-ffunction-sections$/, /^-fdata-sections$/, /^-flive-patching(=|$)/, /^-fno-function-sections$/, /^-fno-data-sections$/];

/** What one compile unit (or object) records of how it was compiled. */
export interface RecordedFlags {
  /** Where it was read, for messages: "DW_AT_producer" or ".GCC.command.line". */
  source: string;
  /** Split DWARF: the .dwo the unit was read from (the file's own unit is a skeleton). */
  dwo?: string;
  /** The compile unit's DW_AT_name ("" when only .GCC.command.line says). */
  unit: string;
  compDir?: string;
  /** The whole string: "GNU C17 12.2.0 -mtune=generic ...". */
  producer: string;
}

/** The flags an ELF file records: per compile unit, and the .GCC.command.line strings. */
export interface FileFlags {
  units: RecordedFlags[];
  switches: string[];
  /** Why nothing could be read, when the file's DWARF is unreadable (compressed with zstd, damaged). */
  unreadable?: string;
  /** Split-DWARF units whose .dwo could not be read: why, per unit (the .dwo's path and the reason). */
  unfollowed?: string[];
}

const isCompileUnit = (u: CompileUnit) => u.unitType === 1 || u.unitType === 4 || u.unitType === 5;

/**
 * The compile units of `elf`: its compressed debug sections inflated first
 * (debug-sections.ts). Throws a CoreError or returns the reason they cannot be read.
 */
function unitsOf(core: Core, elf: ElfReader): CompileUnit[] | string {
  const inflated = inflateDebugSections(elf, elf.name);
  if (inflated.kind === "unreadable") return inflated.reason;
  try {
    if (inflated.kind === "plain") return compileUnits(core, elf);
    const copy = new ElfReader(core, inflated.bytes, elf.name);
    try {
      return compileUnits(core, copy);
    } finally {
      copy.close();
    }
  } catch (e) {
    if (!(e instanceof CoreError)) throw e;
    return e.message;
  }
}

/**
 * A split-DWARF skeleton (no DW_AT_producer, a DW_AT_dwo_name): the unit of its .dwo, at
 * DW_AT_comp_dir/DW_AT_dwo_name (else, for an object moved since it was compiled, beside
 * `file`), the one of the skeleton's dwo_id. The unit read, or why it could not be.
 */
function followSkeleton(core: Core, u: CompileUnit, file: string): RecordedFlags | string {
  const named = path.isAbsolute(u.dwoName!) ? u.dwoName! : path.join(u.compDir ?? path.dirname(file), u.dwoName!);
  const beside = path.join(path.dirname(file), path.basename(u.dwoName!));
  const dwo = fs.existsSync(named) ? named : fs.existsSync(beside) ? beside : undefined;
  const skeleton = `${file}: split-DWARF unit at 0x${u.offset.toString(16)}`;
  if (!dwo) return `${skeleton}: its .dwo ${named} is missing (DW_AT_${u.version >= 5 ? "" : "GNU_"}dwo_name ${u.dwoName})`;
  let units: CompileUnit[] | string;
  try {
    const elf = new ElfReader(core, fs.readFileSync(dwo), dwo);
    try {
      units = unitsOf(core, elf);
    } finally {
      elf.close();
    }
  } catch (e) {
    if (!(e instanceof CoreError)) throw e;
    units = e.message;
  }
  if (typeof units === "string") return `${skeleton}: its .dwo cannot be read (${units})`;
  const full = units.filter((x) => isCompileUnit(x) && x.producer !== undefined);
  const same = u.dwoId === undefined ? full : full.filter((x) => x.dwoId === u.dwoId);
  if (!same.length) {
    const id = (x: bigint | undefined) => (x === undefined ? "none" : `0x${x.toString(16)}`);
    return full.length
      ? `${skeleton}: ${dwo} is the .dwo of another compilation (dwo_id ${id(full[0].dwoId)}, the skeleton's ${id(u.dwoId)})`
      : `${skeleton}: ${dwo} has no compile unit with a DW_AT_producer`;
  }
  const x = same[0];
  const compDir = u.compDir ?? x.compDir;
  return { source: "DW_AT_producer", dwo, unit: x.name ?? "", ...(compDir ? { compDir } : {}), producer: x.producer! };
}

/**
 * The flags `elf` records. `file` is its path (default: the reader's name): split-DWARF
 * skeletons are followed to their .dwo relative to their DW_AT_comp_dir, else beside it.
 */
export function readFlags(core: Core, elf: ElfReader, file = elf.name): FileFlags {
  const read = unitsOf(core, elf);
  const units: RecordedFlags[] = [];
  const unfollowed: string[] = [];
  for (const u of typeof read === "string" ? [] : read) {
    if (!isCompileUnit(u)) continue;
    if (u.producer !== undefined) {
      units.push({ source: "DW_AT_producer", unit: u.name ?? "", ...(u.compDir ? { compDir: u.compDir } : {}), producer: u.producer });
    } else if (u.dwoName !== undefined) {
      const r = followSkeleton(core, u, file);
      if (typeof r === "string") unfollowed.push(r);
      else units.push(r);
    }
  }
  const switches: string[] = [];
  const i = elf.sectionIndex(".GCC.command.line");
  if (i >= 0) {
    const s = elf.sections()[i];
    if (s.hasData) {
      for (const str of Buffer.from(elf.sectionData(s)).toString("utf8").split("\0")) if (str.trim()) switches.push(str.trim());
    }
  }
  return {
    units,
    switches,
    ...(typeof read === "string" ? { unreadable: read } : {}),
    ...(unfollowed.length ? { unfollowed } : {}),
  };
}

/** An object's own flags: its compile unit, else its .GCC.command.line. */
export function objectFlags(f: FileFlags): RecordedFlags | undefined {
  if (f.units.length) return f.units[0];
  if (f.switches.length) return { source: ".GCC.command.line", unit: "", producer: f.switches[0] };
  return undefined;
}

/** The compiler ("GNU C17 12.2.0") and the options of a producer string, as their effect. */
export function effectiveOptions(producer: string, ignoreAddedByBuild: boolean): { compiler: string; options: string[] } {
  const tokens = producer.trim().split(/\s+/);
  const first = tokens.findIndex((t) => t.startsWith("-"));
  const compiler = (first < 0 ? tokens : tokens.slice(0, first)).join(" ");
  const last = new Map<string, string>();
  for (const t of first < 0 ? [] : tokens.slice(first)) {
    if (NO_CODE_EFFECT.some((r) => r.test(t))) continue;
    if (ignoreAddedByBuild && ADDED_BY_BUILD.some((r) => r.test(t))) continue;
    let key = t;
    if (/^-O/.test(t)) key = "-O";
    else if (/^-[fm]no-/.test(t)) key = t.slice(0, 2) + t.slice(5).replace(/=.*$/, "");
    else if (/^-[fm]/.test(t)) key = t.replace(/=.*$/, "");
    else if (t.includes("=")) key = t.replace(/=.*$/, "=");
    last.delete(key); // keep the order of the last occurrence
    last.set(key, t);
  }
  return { compiler, options: [...last.values()] };
}

/** How two recorded flag sets differ (undefined: they do not). */
export function flagDifference(a: string, b: string, ignoreAddedByBuild: boolean): { onlyA: string[]; onlyB: string[]; compilers?: [string, string] } | undefined {
  const x = effectiveOptions(a, ignoreAddedByBuild);
  const y = effectiveOptions(b, ignoreAddedByBuild);
  const onlyA = x.options.filter((o) => !y.options.includes(o));
  const onlyB = y.options.filter((o) => !x.options.includes(o));
  const compilers: [string, string] | undefined = x.compiler !== y.compiler ? [x.compiler, y.compiler] : undefined;
  if (!onlyA.length && !onlyB.length && !compilers) return undefined;
  return { onlyA, onlyB, ...(compilers ? { compilers } : {}) };
}

function describeDifference(d: NonNullable<ReturnType<typeof flagDifference>>, a: string, b: string): string {
  const parts: string[] = [];
  if (d.compilers) parts.push(`compiler "${d.compilers[0]}" in ${a}, "${d.compilers[1]}" in ${b}`);
  if (d.onlyA.length || d.onlyB.length) parts.push(`only in ${a}: ${d.onlyA.join(" ") || "(none)"}; only in ${b}: ${d.onlyB.join(" ") || "(none)"}`);
  return parts.join("; ");
}

/** "DW_AT_producer of the object", "... (from its .dwo /b/fix.dwo)". */
function where(f: RecordedFlags, whose: string): string {
  return `${f.source} of ${whose}${f.dwo ? ` (from its .dwo ${f.dwo})` : ""}`;
}

const unitName = (f: RecordedFlags) => (f.unit ? `compile unit ${f.unit}` : "its compile unit");
const baseName = (unit: string) => unit.replace(/.*\//, "");

/** The target's units of a name: the same DW_AT_name, else the same file name (and compilation directory, when several have it). */
function unitsNamed(target: FileFlags, name: string, compDir: string | undefined): RecordedFlags[] {
  let same = target.units.filter((u) => u.unit === name);
  if (!same.length && name) same = target.units.filter((u) => baseName(u.unit) === baseName(name));
  if (same.length > 1 && compDir) {
    const dir = same.filter((u) => u.compDir === compDir);
    if (dir.length) same = dir;
  }
  return same;
}

/**
 * Where an object's code is compared in the target (replacement mode): the source
 * files of the target's functions it replaces, when it is not one of the target's units.
 */
export interface CompareWith {
  /** The source files (STT_FILE names) of the replaced functions that are statics. */
  files: string[];
  /** No unit of the object's name nor of those files: compare with every unit of the target (one alike suffices). */
  anyUnit: boolean;
}

/**
 * Checks one pair of objects (original, patched) and the target. Throws a BuildError
 * naming the object, the compile unit and the options that differ; returns a note when a
 * comparison could not be made (nothing recorded), else undefined.
 */
export function checkFlags(object: string, original: FileFlags, patched: FileFlags, target: FileFlags, targetName: string): string[] {
  const o = objectFlags(original);
  const p = objectFlags(patched);
  if (o && p) {
    const d = flagDifference(o.producer, p.producer, false);
    if (d) {
      throw new BuildError("flags", `${object}: ${unitName(o)}: the original and the patched object were compiled with different flags (${o.source}): ${describeDifference(d, "the original", "the patched")}`);
    }
  }
  return checkAgainstTarget(object, original, target, targetName);
}

/** Why an object's flags cannot be compared: it records none, or they cannot be read. */
function unrecorded(f: FileFlags): string {
  if (f.unreadable) return `its debug information cannot be read (${f.unreadable})`;
  if (f.unfollowed?.length) return `its compile unit is a split-DWARF skeleton whose flags are in a .dwo that cannot be read (${f.unfollowed.join("; ")})`;
  return "it records no compile flags (no DW_AT_producer: built without -g; no .GCC.command.line: without -frecord-gcc-switches)";
}

/**
 * Checks an object's flags (its compile unit, else its .GCC.command.line) against the
 * target's unit of the same name (diff mode; in replacement mode, `compare` says where
 * else to look). Throws a BuildError naming the options that differ; returns notes when
 * no comparison could be made.
 */
export function checkAgainstTarget(object: string, flags: FileFlags, target: FileFlags, targetName: string, compare?: CompareWith): string[] {
  const o = objectFlags(flags);
  if (!o) return [`${object}: flags not compared with the target's: ${unrecorded(flags)}`];
  let against: RecordedFlags[] = unitsNamed(target, o.unit, o.compDir);
  let any = false;
  if (!against.length && compare) {
    for (const f of compare.files) against.push(...unitsNamed(target, f, undefined).filter((u) => !against.includes(u)));
    if (!against.length && compare.anyUnit) {
      against = target.units;
      any = true;
    }
  }
  if (!against.length && !target.units.length && target.switches.length) {
    against = target.switches.map((s) => ({ source: ".GCC.command.line", unit: "", producer: s }));
  }
  if (!against.length) {
    const unfollowed = target.unfollowed?.length ? `; ${target.unfollowed.length} split-DWARF unit(s) not read: ${target.unfollowed.join("; ")}` : "";
    const why = target.unreadable
      ? `its debug information cannot be read (${target.unreadable})`
      : target.units.length
        ? `it has no compile unit ${o.unit || "of that name"}${compare?.files.length ? ` nor ${compare.files.join(", ")}` : ""}${unfollowed}`
        : target.unfollowed?.length
          ? `its compile units are split-DWARF skeletons whose .dwo cannot be read (${target.unfollowed.join("; ")})`
          : "it records no compile flags (no DW_AT_producer, no .GCC.command.line)";
    return [`${object}: ${unitName(o)}: flags not compared with the target's: ${why}`];
  }
  const diffs = against.map((t) => ({ t, d: flagDifference(o.producer, t.producer, true) }));
  if (diffs.some((x) => !x.d)) return [];
  // The nearest unit names the difference: the same compiler first, then the fewest options apart.
  const cost = (d: NonNullable<ReturnType<typeof flagDifference>>) => (d.compilers ? 1000 : 0) + d.onlyA.length + d.onlyB.length;
  const { t, d } = any ? diffs.reduce((a, b) => (cost(b.d!) < cost(a.d!) ? b : a)) : diffs[0];
  const unitOf = t.unit && t.unit !== o.unit ? `, compile unit ${t.unit}` : "";
  const whom = any ? `every compile unit of the target's (${where(o, "the object")}; the nearest: ${where(t, targetName)}${unitOf})` : `the target's (${where(o, "the object")}, ${where(t, targetName)}${unitOf})`;
  return fail(object, o, whom, d!);
}

function fail(object: string, o: RecordedFlags, whom: string, d: NonNullable<ReturnType<typeof flagDifference>>): never {
  throw new BuildError("flags", `${object}: ${unitName(o)}: compiled with flags different from ${whom}: ${describeDifference(d, "the object", "the target")}`);
}
