// The object diff (src/core/diff.ts) over two whole builds: every pair of objects diffed,
// and what the patch must carry gathered in one place — the functions to replace, the
// functions to add, the ones changed only in __LINE__ numbers (reported apart, for the
// user to decide), and every refusal, which stops the build with the object, the
// function and the reason.
//
// A function is listed under its parent: a changed .cold piece makes its parent changed
// (the diff says so) and travels with it; clones (.isra, .constprop, .part) are
// functions of their own in the target and are listed as such. An object only the
// patched build has adds every function it defines.
import * as fs from "node:fs";
import { ElfReader, SymbolTableKind } from "../core/elf.js";
import { CoreError, type Core } from "../core/instance.js";
import { diffObjects, type DiffFunction, type DiffReason, type DiffResult, type FunctionKind } from "../core/diff.js";
import { BuildError } from "./errors.js";
import type { ObjectPair } from "./objects.js";

export interface FunctionChange {
  /** The pair's name (its relative path). */
  object: string;
  /** Name in the patched object (the original's when it differs is `originalName`). */
  name: string;
  originalName?: string;
  kind: FunctionKind;
  bind: "local" | "global" | "weak";
  status: "changed" | "added" | "line-only";
  /** Why it changed (the first difference the diff found). */
  reason?: DiffReason;
  /** Its .cold pieces, by name in the patched object. */
  pieces: string[];
  /** line-only: the lines that moved, "old->new". */
  lines?: string[];
  /** Its record in the pair's diff (DiffResult.functions), or for an object new in the patched build its symbol index there. */
  index?: number;
  symbol?: number;
}

export interface BuildDiff {
  pairs: number;
  /** Functions compared (both objects of every pair). */
  functions: number;
  replace: FunctionChange[];
  add: FunctionChange[];
  lineOnly: FunctionChange[];
  /** Per pair with a difference: the diff itself, for the package step. */
  results: Array<{ pair: ObjectPair; diff?: DiffResult }>;
}

/** Diffs every pair; throws a BuildError listing every refusal. */
export function diffBuilds(core: Core, pairs: ObjectPair[]): BuildDiff {
  const out: BuildDiff = { pairs: pairs.length, functions: 0, replace: [], add: [], lineOnly: [], results: [] };
  const refusals: string[] = [];
  for (const pair of pairs) {
    const patched = fs.readFileSync(pair.patched);
    if (!pair.original) {
      const added = newObjectFunctions(core, pair, patched);
      out.add.push(...added);
      out.functions += added.length;
      out.results.push({ pair });
      continue;
    }
    const original = fs.readFileSync(pair.original);
    if (original.equals(patched)) {
      out.functions += countFunctions(core, pair.patched, patched);
      continue;
    }
    let diff: DiffResult;
    const a = new ElfReader(core, original, pair.original);
    try {
      const b = new ElfReader(core, patched, pair.patched);
      try {
        diff = diffObjects(core, a, b);
      } finally {
        b.close();
      }
    } catch (e) {
      if (e instanceof CoreError) {
        refusals.push(e.message);
        continue;
      }
      throw e;
    } finally {
      a.close();
    }
    out.functions += diff.functions.length;
    for (const r of diff.refusals) {
      const what = r.function !== undefined ? ` ${diff.functions[r.function].name}:` : r.data !== undefined ? ` ${diff.data[r.data].name}:` : "";
      refusals.push(`${pair.name}:${what} ${r.message}`);
    }
    let differs = false;
    for (const f of diff.functions) {
      if (f.kind === "cold") continue; // travels with its parent
      const change = describe(pair, diff, f);
      if (!change) continue;
      differs = true;
      if (change.status === "changed") out.replace.push(change);
      else if (change.status === "added") out.add.push(change);
      else out.lineOnly.push(change);
    }
    if (differs || diff.data.some((d) => d.status !== "unchanged")) out.results.push({ pair, diff });
  }
  if (refusals.length) {
    throw new BuildError("diff", `refused:\n${refusals.map((r) => `  ${r}`).join("\n")}`);
  }
  return out;
}

function describe(pair: ObjectPair, diff: DiffResult, f: DiffFunction): FunctionChange | undefined {
  if (f.status === "unchanged" || f.status === "removed") return undefined;
  const pieces = diff.functions.filter((c) => c.kind === "cold" && c.parentIndex === f.index && c.status !== "removed").map((c) => c.name);
  const change: FunctionChange = {
    object: pair.name,
    name: f.name,
    kind: f.kind,
    bind: f.bind,
    status: f.status,
    reason: f.reason,
    pieces,
    index: f.index,
  };
  if (f.status === "line-only") change.lines = f.lineSites.map((s) => `${s.oldLine}->${s.newLine}`);
  return change;
}

const STT_FUNC = 2;
const SHN_UNDEF = 0;

/** Every function an object defines, as added (an object new in the patched build). */
function newObjectFunctions(core: Core, pair: ObjectPair, data: Uint8Array): FunctionChange[] {
  const e = new ElfReader(core, data, pair.patched);
  try {
    const syms = e.symbols(SymbolTableKind.SYMTAB);
    const funcs = syms.filter((s) => s.type === STT_FUNC && s.shndx !== SHN_UNDEF);
    return funcs
      .filter((s) => !/\.cold(\.\d+)?$/.test(s.name))
      .map((s) => ({
        object: pair.name,
        name: s.name,
        kind: /\.(isra|constprop|part)\.\d+/.test(s.name) ? ("clone" as const) : ("function" as const),
        bind: s.bind === 0 ? ("local" as const) : s.bind === 2 ? ("weak" as const) : ("global" as const),
        status: "added" as const,
        symbol: s.index,
        pieces: funcs.filter((c) => c.name.startsWith(`${s.name}.cold`)).map((c) => c.name),
      }));
  } finally {
    e.close();
  }
}

function countFunctions(core: Core, name: string, data: Uint8Array): number {
  const e = new ElfReader(core, data, name);
  try {
    return e.symbols(SymbolTableKind.SYMTAB).filter((s) => s.type === STT_FUNC && s.shndx !== SHN_UNDEF).length;
  } finally {
    e.close();
  }
}

/** One line per change, for people. */
export function formatDiff(d: BuildDiff): string {
  const lines = [`diff of ${d.pairs} object pairs (${d.functions} functions): ${d.replace.length} to replace, ${d.add.length} to add, ${d.lineOnly.length} changed only in __LINE__ numbers`];
  const piece = (c: FunctionChange) => (c.pieces.length ? ` with ${c.pieces.join(", ")}` : "");
  for (const c of d.replace) lines.push(`  replace ${c.name}${piece(c)} (${c.object}: ${c.reason ?? "changed"}${c.kind === "clone" ? ", a clone" : ""})`);
  for (const c of d.add) lines.push(`  add     ${c.name}${piece(c)} (${c.object})`);
  for (const c of d.lineOnly) lines.push(`  __LINE__ only, not included: ${c.name} (${c.object}: lines ${c.lines?.join(", ")})`);
  return lines.join("\n");
}
