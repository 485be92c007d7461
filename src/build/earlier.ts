// Stacking: `patchc build ... --after EARLIER.patch` makes a patch that goes on top of an
// earlier one applied to the same build (docs/format.md, "Stacking").
//
//   - the new package depends on the earlier one, pinned to its content hash;
//   - a function the earlier patch replaced is replaced again with `after` = its id: its
//     entry holds the earlier patch's jump, which apply expects and redirects;
//   - a symbol the earlier patch brought (a function it added, a new global) is referred
//     to with scope "patch": the running process has it only in that patch's memory;
//   - the proof of identity: the user passes the objects the earlier patch was built from
//     (its patched objects) as --orig. Where the earlier patch replaced a function, the
//     original object's function must be that patch's new code: the same unrelocated
//     bytes, and the same relocations (type, offset, addend, what they refer to). Every
//     other function is proven against the target as usual (identity.ts).
//
// Format 1.0 limit: a function the earlier patch added cannot be replaced by a later one.
import { createHash } from "node:crypto";
import type { ElfRela, ElfSymbol } from "../core/elf.js";
import type { Core } from "../core/instance.js";
import { describeName, type LocalIdentity, type PackageSymbol, type PatchFunction, type PatchPackage } from "../format/model.js";
import { readPackageFile, type ReadPackage } from "../format/reader.js";
import { relocName } from "../format/defs.js";
import { BuildError } from "./errors.js";
import type { Proven } from "./identity.js";
import type { ObjectFile } from "./object-file.js";
import { STT_SECTION, type TargetImage, type TargetSymbol } from "./target.js";

/** gcc's numeric suffixes on local names (var.3, foo.part.0): the same thing in two compilations. */
const stripSuffix = (name: string) => name.replace(/(\.\d+)+$/, "");

export class EarlierPatch {
  readonly id: string;
  readonly hash: string;
  readonly model: PatchPackage;
  private readonly replacedBy = new Map<string, PatchFunction>();
  private readonly addedNames = new Set<string>();
  /** Named functions and objects the earlier package defines, by name. */
  private readonly defined = new Map<string, PackageSymbol[]>();

  private constructor(
    readonly file: string,
    pkg: ReadPackage,
  ) {
    this.model = pkg.model;
    this.id = pkg.model.patchId;
    this.hash = pkg.hash;
    for (const f of this.model.functions) {
      if (f.kind === "replace") this.replacedBy.set(key(f.name, f.local), f);
      else this.addedNames.add(f.name);
    }
    for (const s of this.model.symbols) {
      if (s.section === undefined || (s.type !== "func" && s.type !== "object") || !s.name) continue;
      const list = this.defined.get(s.name) ?? [];
      list.push(s);
      this.defined.set(s.name, list);
    }
  }

  /** Reads `file` and checks that it is a patch of the same build as `target`. */
  static open(core: Core, file: string, target: TargetImage, patchId: string): EarlierPatch {
    let pkg: ReadPackage;
    try {
      pkg = readPackageFile(core, file);
    } catch (e) {
      throw new BuildError("after", `${(e as Error).message}`);
    }
    const t = pkg.model.target;
    if (t.buildId !== target.buildId) {
      throw new BuildError(
        "after",
        `${file}: patch ${pkg.model.patchId} is for the build with build-id ${t.buildId} (${t.path}), not for the target ${target.file} (build-id ${target.buildId}): a patch stacks only on a patch of the same build`,
      );
    }
    if (pkg.model.patchId === patchId) throw new BuildError("after", `${file}: patch ${patchId} has the id of the patch being built: give this one another --id`);
    return new EarlierPatch(file, pkg);
  }

  /** The earlier patch's version of a target function, when it replaced it. */
  replaced(name: string, local: LocalIdentity | undefined): PatchFunction | undefined {
    return this.replacedBy.get(key(name, local));
  }

  /** Refuses replacing a function the earlier patch added (format 1.0 limit). */
  checkNotAdded(object: string, name: string): void {
    if (this.addedNames.has(name)) {
      throw new BuildError(
        "after",
        `${object}: ${name} was added by patch ${this.id}: a later patch cannot replace a function an earlier one added (format 1.0; docs/format.md, "Limits"); change it in a new version of ${this.id} instead`,
      );
    }
  }

  /** The earlier patch's symbol `name` (a function it added or replaced with, a new global), when it has exactly one. */
  symbol(name: string): PackageSymbol | undefined {
    const list = this.defined.get(name);
    if (!list) return undefined;
    if (list.length > 1) throw new BuildError("after", `${this.file}: patch ${this.id} defines ${list.length} symbols named ${name}: a reference to it would be ambiguous`);
    return list[0];
  }

  /**
   * The proof of identity for a function the earlier patch replaced: `fn` of the original
   * object (the earlier patch's patched object) is that patch's new code `code` (its
   * package symbol). The site and hash are the target's own function `t`: its entry is
   * what apply finds (under the earlier jump).
   */
  prove(target: TargetImage, obj: ObjectFile, fn: ElfSymbol, code: number, t: TargetSymbol): Proven {
    const what = `${obj.name}: ${fn.name}`;
    const refuse = (reason: string): never => {
      throw new BuildError(
        "proof of identity",
        `${what}: ${reason}; patch ${this.id} replaced it, so the original objects (--orig) must be the ones ${this.id} was built from (its patched objects)`,
      );
    };
    const sym = this.model.symbols[code];
    if (sym.section === undefined) return refuse(`patch ${this.id} has no code for it`);
    const sec = this.model.sections[sym.section];
    if (BigInt(sym.size) !== fn.size) refuse(`${fn.size} bytes in the object, ${sym.size} in patch ${this.id}`);
    const n = Number(fn.size);
    const mine = obj.data(fn.shndx).subarray(Number(fn.value), Number(fn.value) + n);
    const theirs = sec.data!.subarray(sym.value, sym.value + n);
    for (let i = 0; i < n; i++) {
      if (mine[i] !== theirs[i]) refuse(`byte +0x${i.toString(16)} is 0x${hex2(mine[i])} in the object and 0x${hex2(theirs[i])} in patch ${this.id}`);
    }
    const ours = obj.relocs(fn.shndx).filter((r) => r.offset >= fn.value && r.offset < fn.value + fn.size);
    const its = sec.relocations.filter((r) => r.offset >= sym.value && r.offset < sym.value + n);
    const byOffset = new Map(its.map((r) => [r.offset - sym.value, r]));
    if (ours.length !== its.length) refuse(`${ours.length} relocations in the object, ${its.length} in patch ${this.id}`);
    for (const r of ours) {
      const off = Number(r.offset - fn.value);
      const p = byOffset.get(off);
      const mineIs = this.objectReferent(obj, r);
      if (!p) return refuse(`at +0x${off.toString(16)}: ${relocName(r.type)} to ${mineIs[0]} has no counterpart in patch ${this.id}`);
      const itsIs = this.packageReferent(p.symbol, p.addend);
      if (p.type !== r.type || !mineIs.includes(itsIs)) {
        refuse(`at +0x${off.toString(16)}: ${relocName(r.type)} to ${mineIs[0]} in the object, ${relocName(p.type)} to ${itsIs} in patch ${this.id}`);
      }
    }
    const bytes = target.bytesAt(t.sym.value, Number(t.sym.size));
    if (!bytes || t.sym.size === 0n) return refuse(`its code is not in ${target.file}`);
    return { site: new Uint8Array(bytes.subarray(0, Math.min(16, bytes.length))), sha256: createHash("sha256").update(bytes).digest("hex") };
  }

  /** What a relocation of the object refers to, as "name + addend" (for a section symbol: the section, or the thing named at that place). */
  private objectReferent(obj: ObjectFile, r: ElfRela): string[] {
    const s = obj.symbols[r.sym];
    if (s.type !== STT_SECTION) return [referent(stripSuffix(s.name), r.addend)];
    const out = [referent(obj.sections[s.shndx].name, r.addend)];
    const pcrel = [2, 4, 9, 41, 42].includes(r.type);
    const at = r.addend + (pcrel ? 4n : 0n);
    const thing = obj.isCode(s.shndx) ? obj.functionAt(s.shndx, at < 0n ? 0n : at) : obj.objectAt(s.shndx, at < 0n ? 0n : at);
    if (thing) out.push(referent(stripSuffix(thing.name), r.addend - thing.value));
    return out;
  }

  private packageReferent(index: number, addend: bigint): string {
    const s = this.model.symbols[index];
    if (s.type === "section") return referent(this.model.sections[s.section!].name, addend);
    return referent(stripSuffix(s.name), addend);
  }
}

function referent(name: string, addend: bigint): string {
  return `${name}${addend < 0n ? ` - ${-addend}` : ` + ${addend}`}`;
}

function key(name: string, local: LocalIdentity | undefined): string {
  return describeName(name, local);
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}
