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
// Compared per compile unit: the original object against the patched one (they must be
// the same build but for the fix), and the original object against the target's unit of
// the same DW_AT_name (its own .debug_info, or its debug file found by build-id; failing
// that, the target's .GCC.command.line). Options are compared as their effect: the last
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
import type { CompileUnit } from "../core/diff.js";
import { compileUnits } from "../core/diff.js";
import { CoreError, type Core } from "../core/instance.js";
import type { ElfReader } from "../core/elf.js";
import { BuildError } from "./errors.js";

const NO_CODE_EFFECT = [/^-g/, /^-f[a-z]*-prefix-map=/, /^-frecord-gcc-switches$/, /^-W/, /^-w$/, /^-pedantic/, /^-fdiagnostics-/];
const ADDED_BY_BUILD = [/^-ffunction-sections$/, /^-fdata-sections$/, /^-flive-patching(=|$)/, /^-fno-function-sections$/, /^-fno-data-sections$/];

/** What one compile unit (or object) records of how it was compiled. */
export interface RecordedFlags {
  /** Where it was read, for messages: "DW_AT_producer" or ".GCC.command.line". */
  source: string;
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
  /** Why nothing could be read, when the file's DWARF is unreadable (compressed, damaged). */
  unreadable?: string;
}

export function readFlags(core: Core, elf: ElfReader): FileFlags {
  let units: CompileUnit[] = [];
  let unreadable: string | undefined;
  try {
    units = compileUnits(core, elf);
  } catch (e) {
    if (!(e instanceof CoreError)) throw e;
    unreadable = e.message;
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
    units: units.filter((u) => u.producer !== undefined && (u.unitType === 1 || u.unitType === 4 || u.unitType === 5)).map((u) => ({ source: "DW_AT_producer", unit: u.name ?? "", ...(u.compDir ? { compDir: u.compDir } : {}), producer: u.producer! })),
    switches,
    ...(unreadable ? { unreadable } : {}),
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

/** The target's unit for an object's unit: the same DW_AT_name (and compilation directory, when several have the name). */
function targetUnit(target: FileFlags, unit: RecordedFlags): RecordedFlags[] {
  let same = target.units.filter((u) => u.unit === unit.unit);
  if (!same.length && unit.unit) {
    const base = unit.unit.replace(/.*\//, "");
    same = target.units.filter((u) => u.unit.replace(/.*\//, "") === base);
  }
  if (same.length > 1 && unit.compDir) {
    const dir = same.filter((u) => u.compDir === unit.compDir);
    if (dir.length) same = dir;
  }
  return same;
}

/**
 * Checks one pair of objects (original, patched) and the target. Throws a BuildError
 * naming the object, the compile unit and the options that differ; returns a note when a
 * comparison could not be made (nothing recorded), else undefined.
 */
export function checkFlags(object: string, original: FileFlags, patched: FileFlags, target: FileFlags, targetName: string): string[] {
  const notes: string[] = [];
  const o = objectFlags(original);
  const p = objectFlags(patched);
  const unitName = (f: RecordedFlags) => (f.unit ? `compile unit ${f.unit}` : "its compile unit");
  if (o && p) {
    const d = flagDifference(o.producer, p.producer, false);
    if (d) {
      throw new BuildError("flags", `${object}: ${unitName(o)}: the original and the patched object were compiled with different flags (${o.source}): ${describeDifference(d, "the original", "the patched")}`);
    }
  }
  if (!o) {
    const why = original.unreadable ? `its debug information cannot be read (${original.unreadable})` : "it records no compile flags (no DW_AT_producer: built without -g; no .GCC.command.line: without -frecord-gcc-switches)";
    notes.push(`${object}: flags not compared with the target's: ${why}`);
    return notes;
  }
  let against: RecordedFlags[] = targetUnit(target, o);
  if (!against.length && !target.units.length && target.switches.length) {
    against = target.switches.map((s) => ({ source: ".GCC.command.line", unit: "", producer: s }));
  }
  if (!against.length) {
    const why = target.unreadable
      ? `its debug information cannot be read (${target.unreadable})`
      : target.units.length
        ? `it has no compile unit ${o.unit || "of that name"}`
        : "it records no compile flags (no DW_AT_producer, no .GCC.command.line)";
    notes.push(`${object}: ${unitName(o)}: flags not compared with the target's: ${why}`);
    return notes;
  }
  const diffs = against.map((t) => ({ t, d: flagDifference(o.producer, t.producer, true) }));
  if (diffs.some((x) => !x.d)) return notes;
  const { t, d } = diffs[0];
  throw new BuildError(
    "flags",
    `${object}: ${unitName(o)}: compiled with flags different from the target's (${o.source} of the object, ${t.source} of ${targetName}): ${describeDifference(d!, "the object", "the target")}`,
  );
}
