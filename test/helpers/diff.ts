// Builds a pair of objects from two versions of one source file and diffs them.
// Both versions are compiled as `<name>` from their own directory (orig/, patched/) with
// the same flags, so __FILE__ and the debug info's paths are the same, as in two builds
// of one tree.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Scratch } from "./gcc.js";
import { nodeCore } from "../../src/node/core-file.js";
import { ElfReader } from "../../src/core/elf.js";
import { diffObjects, type DiffResult } from "../../src/core/diff.js";

export const DIFF_FLAGS = ["-O2", "-ffunction-sections", "-fdata-sections"];

export interface PairOptions {
  name?: string; // source file name, default fix.c
  flags?: string[]; // default DIFF_FLAGS
  patchedFlags?: string[]; // flags of the patched build when they differ
  compiler?: string; // gcc or g++
}

export function compilePair(s: Scratch, orig: string, patched: string, o: PairOptions = {}): { orig: string; patched: string } {
  const name = o.name ?? "fix.c";
  const flags = o.flags ?? DIFF_FLAGS;
  const out: string[] = [];
  for (const [dir, text, f] of [["orig", orig, flags], ["patched", patched, o.patchedFlags ?? flags]] as const) {
    const d = s.path(dir);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, name), text);
    const obj = name.replace(/\.[^.]*$/, ".o");
    execFileSync(o.compiler ?? "gcc", [...f, "-c", name, "-o", obj], { cwd: d, stdio: ["ignore", "pipe", "pipe"] });
    out.push(join(d, obj));
  }
  return { orig: out[0], patched: out[1] };
}

export function diffFiles(origPath: string, patchedPath: string): DiffResult {
  const core = nodeCore();
  const a = new ElfReader(core, readFileSync(origPath), origPath);
  const b = new ElfReader(core, readFileSync(patchedPath), patchedPath);
  try {
    return diffObjects(core, a, b);
  } finally {
    a.close();
    b.close();
  }
}

export function diffSources(s: Scratch, orig: string, patched: string, o: PairOptions = {}): DiffResult {
  const p = compilePair(s, orig, patched, o);
  return diffFiles(p.orig, p.patched);
}

/** Names of functions by status, sorted, for exact-set assertions. */
export function byStatus(d: DiffResult): Record<string, string[]> {
  const r: Record<string, string[]> = {};
  for (const f of d.functions) (r[f.status] ??= []).push(f.name);
  for (const k of Object.keys(r)) r[k].sort();
  return r;
}
