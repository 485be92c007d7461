// From objects to a patch package: the step after the object diff. Both forms of
// `patchc build` that start from objects, and the source-tree form once it has built
// them, end here.
//
//   diff mode         the diff's functions (build-diff.ts): each one to replace is found
//                     in the target and proven to be the original object's code
//                     (identity.ts); the new code and what moves with it are assembled
//                     (assemble.ts), everything else is bound to the target
//   replacement mode  the given functions of one object replace the target's functions
//                     of the given names; the object is self-contained (its statics are
//                     new), its undefined symbols bind to the target
import { createHash } from "node:crypto";
import * as path from "node:path";
import type { Core } from "../core/instance.js";
import type { PatchPackage, PatchFunction } from "../format/model.js";
import { Assembler, type Root } from "./assemble.js";
import type { BuildDiff } from "./build-diff.js";
import { EarlierPatch } from "./earlier.js";
import { BuildError } from "./errors.js";
import { checkAgainstTarget, checkFlags, readFlags } from "./flags.js";
import { proveIdentity, type Proven } from "./identity.js";
import { ObjectFile } from "./object-file.js";
import type { ObjectPair } from "./objects.js";
import { STB_LOCAL, STT_FUNC, TargetImage, type TargetSymbol } from "./target.js";

/** `--replace OLD=NEW`: the target's function OLD becomes NEW of the given object. */
export interface Replacement {
  old: string;
  new: string;
}

export interface PackageRequest {
  /** The binary the running process was started from (or a copy). */
  target: string;
  /** The path recorded in the package for people (default: `target`); apply matches by build-id. */
  targetHint?: string;
  patchId: string;
  description?: string;
  producer?: string;
  /** Diff mode: the objects of both builds, and their diff (diffBuilds). */
  pairs?: ObjectPair[];
  diff?: BuildDiff;
  /** Replacement mode: one object and the functions it replaces. */
  replace?: { object: string; functions: Replacement[] };
  /** Where separate debug files are looked up by build-id (default /usr/lib/debug). */
  debugRoot?: string;
  /** Stacking: the earlier patch (a package file) this one goes on top of (earlier.ts). */
  after?: string;
}

export interface PackageResult {
  package: PatchPackage;
  /** What the user should know: functions added because the target has no copy, symbols bound by name, ... */
  notes: string[];
}

/** Names gcc gives to the clones it makes (and to the pieces it splits off). */
const CLONE_RE = /\.(isra|constprop|part|cold|lto_priv|localalias)(\.\d+)*$/;

export function makePackage(core: Core, request: PackageRequest): PackageResult {
  const target = new TargetImage(core, request.target, request.debugRoot);
  const opened: ObjectFile[] = [];
  const open = (file: string, name: string) => {
    const o = new ObjectFile(core, file, name);
    opened.push(o);
    return o;
  };
  const notes: string[] = [];
  try {
    const earlier = request.after ? EarlierPatch.open(core, request.after, target, request.patchId) : undefined;
    const asm = new Assembler(target, earlier);
    const proofs = new Map<string, Proven>(); // function key -> proof of its original
    if (request.replace) {
      notes.push(...replacementUnit(core, target, asm, open(request.replace.object, path.basename(request.replace.object)), request.replace.functions, proofs, earlier));
    } else {
      if (!request.diff) throw new BuildError("package", "no diff and no replacement: nothing to package");
      for (const { pair, diff } of request.diff.results) {
        const changes = [...request.diff.replace, ...request.diff.add].filter((c) => c.object === pair.name);
        if (!changes.length) continue;
        const obj = open(pair.patched, pair.name);
        const original = pair.original ? open(pair.original, pair.name) : undefined;
        // The compile flags, before the proof: a refusal then names the options that differ.
        if (original) {
          const t = target.recordedFlags();
          notes.push(...checkFlags(pair.name, readFlags(core, original.elf, original.path), readFlags(core, obj.elf, obj.path), t.flags, t.from));
        }
        const roots: Root[] = [];
        for (const c of changes) {
          if (!diff || !original) {
            // An object new in the patched build: every function is added.
            const sym = obj.symbols[c.symbol!];
            roots.push({ kind: "add", symbol: sym, pieces: c.pieces.map((p) => ({ name: p, symbol: obj.symbols.find((s) => s.name === p && s.type === STT_FUNC && s.shndx !== 0) })) });
            continue;
          }
          const f = diff.functions[c.index!];
          const cold = diff.functions.filter((x) => x.kind === "cold" && x.parentIndex === f.index);
          if (c.status === "added") {
            roots.push({ kind: "add", symbol: obj.symbols[f.patchedSymbol], pieces: cold.filter((x) => x.patchedSymbol).map((x) => ({ name: x.name, symbol: obj.symbols[x.patchedSymbol] })) });
            continue;
          }
          const origSym = original.symbols[f.originalSymbol];
          earlier?.checkNotAdded(pair.name, origSym.name);
          const t = findOriginal(target, original, origSym.name, origSym.bind === STB_LOCAL);
          // Stacking: a function the earlier patch replaced is proven against its code there.
          const prior = earlier?.replaced(origSym.name, t.local);
          const proof = prior ? earlier!.prove(target, original, origSym, prior.symbol, t) : proveIdentity(target, original, origSym, t.sym.value, t.sym.size);
          proofs.set(key(origSym.name, t), proof);
          const pieces: Root["pieces"] = [];
          for (const x of cold) {
            const oldPiece = x.originalSymbol ? original.symbols[x.originalSymbol] : undefined;
            let old: TargetSymbol | undefined;
            if (oldPiece) {
              old = findOriginal(target, original, oldPiece.name, oldPiece.bind === STB_LOCAL);
              const priorPiece = prior?.pieces.find((p) => p.name === oldPiece.name && p.symbol !== undefined);
              if (priorPiece) earlier!.prove(target, original, oldPiece, priorPiece.symbol!, old);
              else proveIdentity(target, original, oldPiece, old.sym.value, old.sym.size);
            }
            const fresh = x.patchedSymbol && x.status !== "removed" ? obj.symbols[x.patchedSymbol] : undefined;
            if (old || fresh) pieces.push({ name: oldPiece?.name ?? x.name, symbol: fresh, original: old });
          }
          roots.push({ kind: "replace", symbol: obj.symbols[f.patchedSymbol], replaces: { name: origSym.name, target: t }, pieces });
        }
        asm.add({ obj, original, diff, roots });
      }
    }
    asm.finishEhFrame();
    for (const f of asm.functions) {
      fillOriginal(f, proofs, target);
      if (f.kind === "replace" && earlier?.replaced(f.name, f.local)) f.after = earlier.id;
    }
    if (!asm.functions.length) throw new BuildError("package", "no function to replace or add");
    const pkg: PatchPackage = {
      patchId: request.patchId,
      ...(request.producer ? { producer: request.producer } : {}),
      ...(request.description ? { description: request.description } : {}),
      target: { buildId: target.buildId, path: request.targetHint ?? path.resolve(request.target), ...(target.soname ? { soname: target.soname } : {}), type: target.type },
      dependencies: earlier ? [{ patchId: earlier.id, hash: earlier.hash }] : [],
      sections: asm.sections,
      symbols: asm.symbols,
      functions: asm.functions,
      references: asm.references,
    };
    return { package: pkg, notes: [...notes, ...asm.notes] };
  } finally {
    for (const o of opened) o.close();
    target.close();
  }
}

function key(name: string, t: TargetSymbol): string {
  return `${name}|${t.local?.file ?? ""}|${t.local?.sympos ?? 0}`;
}

/** The target's function for an original object's function; refuses when the target has none. */
function findOriginal(target: TargetImage, original: ObjectFile, name: string, local: boolean): TargetSymbol {
  const t = target.find(name, local, original.sourceFile || undefined);
  if (!t || t.sym.type !== STT_FUNC) {
    throw new BuildError(
      "proof of identity",
      `${original.name}: ${name}${local ? ` (a static of ${original.sourceFile})` : ""}: the target ${target.file} has no such function; the original objects are not the target's build`,
    );
  }
  return t;
}

/** The site bytes and hash of a replaced function: from its proof, or (replacement mode) read from the target. */
function fillOriginal(f: PatchFunction, proofs: Map<string, Proven>, target: TargetImage): void {
  if (f.kind !== "replace" || !f.original) return;
  const proof = proofs.get(`${f.name}|${f.local?.file ?? ""}|${f.local?.sympos ?? 0}`);
  if (!proof) throw new BuildError("package", `${f.name}: no proof of identity recorded (internal)`);
  f.original.site = proof.site;
  f.original.sha256 = proof.sha256;
  void target;
}

/** Replacement mode: the object's functions as the target's; returns the notes of its flags check. */
function replacementUnit(core: Core, target: TargetImage, asm: Assembler, obj: ObjectFile, functions: Replacement[], proofs: Map<string, Proven>, earlier: EarlierPatch | undefined): string[] {
  const roots: Root[] = [];
  const files = new Set<string>(); // the source files of the replaced statics
  for (const r of functions) {
    earlier?.checkNotAdded(obj.name, r.old);
    if (CLONE_RE.test(r.old)) {
      throw new BuildError(
        "replace",
        `${r.old} is a piece or clone gcc made (.isra, .constprop, .part, .cold): its calling convention is the compiler's own, and a function compiled from source cannot stand in for it; replace the function it comes from`,
      );
    }
    const sym = obj.symbols.find((s) => s.name === r.new && s.type === STT_FUNC && s.shndx !== 0);
    if (!sym) throw new BuildError("replace", `${obj.path} defines no function ${r.new}`);
    const globals = target.find(r.old, false, undefined);
    let t = globals && globals.sym.bind !== STB_LOCAL ? globals : undefined;
    if (!t) {
      const locals = target.index
        .findAll(r.old)
        .map((id) => target.index.get(id))
        .filter((s) => s.defined && s.type === STT_FUNC && s.bind === STB_LOCAL);
      if (locals.length > 1) {
        const files = locals.map((s) => (s.file >= 0 ? target.index.get(s.file).name : "?")).join(", ");
        throw new BuildError("replace", `${r.old}: the target has ${locals.length} static functions of that name (in ${files}): ambiguous`);
      }
      t = locals.length ? target.find(r.old, true, locals[0].file >= 0 ? target.index.get(locals[0].file).name : undefined) : undefined;
    }
    if (!t || t.sym.type !== STT_FUNC) throw new BuildError("replace", `the target ${target.file} has no function ${r.old}`);
    if (t.local?.file) files.add(t.local.file);
    const bytes = target.bytesAt(t.sym.value, Number(t.sym.size));
    if (!bytes || t.sym.size === 0n) throw new BuildError("replace", `${r.old}: its code is not in ${target.file}`);
    proofs.set(key(r.old, t), { site: new Uint8Array(bytes.subarray(0, Math.min(16, bytes.length))), sha256: createHash("sha256").update(bytes).digest("hex") });
    const pieces: Root["pieces"] = [];
    const oldCold = target.find(`${r.old}.cold`, true, t.local?.file);
    const newCold = obj.symbols.find((s) => s.name === `${r.new}.cold` && s.type === STT_FUNC && s.shndx !== 0);
    if (oldCold || newCold) pieces.push({ name: `${r.old}.cold`, symbol: newCold, original: oldCold });
    roots.push({ kind: "replace", symbol: sym, replaces: { name: r.old, target: t }, pieces });
  }
  // The compile flags, as in diff mode (flags.ts): the object's compile unit against the
  // target's of its name, else of the replaced statics' files, else against every unit
  // of the target (a function written elsewhere: one unit compiled alike suffices).
  const t = target.recordedFlags();
  const notes = checkAgainstTarget(obj.name, readFlags(core, obj.elf, obj.path), t.flags, t.from, { files: [...files], anyUnit: true });
  asm.add({ obj, roots, selfContained: true });
  return notes;
}
