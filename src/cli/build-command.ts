// `patchc build`: a patch package from objects, offline. Three forms (README, "patchc build"):
//
//   patchc build --orig A --patched B --target BINARY -o FILE
//       A, B: directories of objects matched by relative path, or two object files
//   patchc build --replace OLD=NEW [--replace ...] --target BINARY -o FILE NEW.o
//       the target's function OLD becomes NEW of NEW.o
//   patchc build --source DIR --diff PATCH --build-cmd CMD (--binary REL | --target BINARY) -o FILE
//       builds DIR twice, without and with PATCH, in one scratch directory with the same
//       flags (--debian: dpkg-buildflags), then as the first form
//
// planBuild() turns the parsed command line into a plan (pure, tested without running
// anything); run() carries it out.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Command } from "./command.js";
import { EXIT_OK } from "./exit-codes.js";
import { UsageError, type ParsedArgs } from "./options.js";
import { nodeCore } from "../node/core-file.js";
import { PATCH_ID_RE } from "../format/model.js";
import { writePackageFile } from "../format/writer.js";
import { decodePackage } from "../format/reader.js";
import { readSigningKey, signatureStatus } from "../format/verify.js";
import { formatReport, reportPackage } from "../format/describe.js";
import { pairObjects, type ObjectPair } from "../build/objects.js";
import { makePackage, type Replacement } from "../build/make-package.js";
import { diffBuilds, formatDiff, type BuildDiff } from "../build/build-diff.js";
import { BuildError } from "../build/errors.js";
import { buildSourceTree, type SourceBuildResult } from "../build/source-tree.js";

declare const __PATCHC_VERSION__: string | undefined;

interface Common {
  target?: string;
  output: string;
  patchId: string;
  description?: string;
  sign?: string;
  /** Stacking: the earlier patch this one goes on top of. */
  after?: string;
}

export type BuildPlan =
  | (Common & { mode: "objects"; target: string; original: string; patched: string })
  | (Common & { mode: "replace"; target: string; object: string; replacements: Replacement[] })
  | (Common & {
      mode: "source";
      source: string;
      diff: string;
      buildCommand: string;
      debian: boolean;
      binary?: string;
      strip: number;
      cflags: string[];
      scratch?: string;
      keep?: string;
      cache?: string;
      verbose: boolean;
    });

const SOURCE_ONLY = ["source", "diff", "build-cmd", "debian", "binary", "strip", "cflags", "scratch", "keep", "cache", "verbose"] as const;

export function planBuild(args: ParsedArgs): BuildPlan {
  const o = args.options;
  const str = (name: string): string | undefined => {
    const v = o[name];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") throw new UsageError(`option --${name} needs a non-empty value`);
    return v;
  };
  const modes = [o.orig !== undefined || o.patched !== undefined ? "--orig/--patched" : "", o.replace !== undefined ? "--replace" : "", o.source !== undefined ? "--source" : ""].filter(Boolean);
  if (modes.length === 0) {
    throw new UsageError("`patchc build` needs one of: --orig A --patched B; --replace OLD=NEW ... NEW.o; --source DIR --diff PATCH --build-cmd CMD (see `patchc build --help`)");
  }
  if (modes.length > 1) throw new UsageError(`\`patchc build\`: ${modes.join(" and ")} are different forms: give one`);
  const output = str("output");
  if (output === undefined) throw new UsageError("`patchc build` needs -o FILE (the package to write)");
  const base = path.basename(output).replace(/\.[^.]*$/, "");
  const patchId = str("id") ?? base;
  if (!PATCH_ID_RE.test(patchId)) {
    throw new UsageError(
      o.id === undefined
        ? `the patch id would be "${patchId}" (the name of ${output}), which is not 1-64 characters of [A-Za-z0-9._+-]: give --id`
        : `--id ${patchId}: not 1-64 characters of [A-Za-z0-9._+-] starting with a letter or digit`,
    );
  }
  const common = { output, patchId, description: str("description"), sign: str("sign"), target: str("target"), after: str("after") };
  const mode = modes[0];
  if (mode !== "--source") {
    const misplaced = SOURCE_ONLY.filter((n) => o[n] !== undefined);
    if (misplaced.length) throw new UsageError(`--${misplaced[0]} belongs to the --source form, not to ${mode}`);
  }
  const needTarget = () => {
    if (common.target === undefined) throw new UsageError(`\`patchc build ${mode}\` needs --target BINARY (the binary the running process was started from)`);
  };
  if (mode === "--orig/--patched") {
    const original = str("orig");
    const patched = str("patched");
    if (original === undefined || patched === undefined) throw new UsageError("--orig and --patched go together: the original build's objects and the patched build's");
    if (args.args.length) throw new UsageError(`\`patchc build --orig --patched\` takes no object argument (${args.args[0]}): NEW.o goes with --replace`);
    needTarget();
    return { mode: "objects", ...common, target: common.target!, original, patched };
  }
  if (mode === "--replace") {
    if (args.args.length !== 1) throw new UsageError("`patchc build --replace OLD=NEW ...` needs one object, NEW.o, holding the new functions");
    const replacements = (o.replace as string[]).map((r): Replacement => {
      const m = /^([^=]+)=([^=]+)$/.exec(r);
      if (!m) throw new UsageError(`--replace ${r}: give OLD=NEW (the target's function and the one in ${args.args[0]} replacing it)`);
      return { old: m[1], new: m[2] };
    });
    const olds = new Set<string>();
    for (const r of replacements) {
      if (olds.has(r.old)) throw new UsageError(`--replace: ${r.old} is replaced twice`);
      olds.add(r.old);
    }
    needTarget();
    return { mode: "replace", ...common, target: common.target!, object: args.args[0], replacements };
  }
  // --source
  if (args.args.length) throw new UsageError(`\`patchc build --source\` takes no object argument (${args.args[0]})`);
  const source = str("source")!;
  const diff = str("diff");
  const buildCommand = str("build-cmd");
  if (diff === undefined) throw new UsageError("`patchc build --source` needs --diff PATCH (a unified diff to apply to the tree)");
  if (buildCommand === undefined) throw new UsageError("`patchc build --source` needs --build-cmd CMD (run by sh in the top of the tree)");
  const binary = str("binary");
  if (binary === undefined && common.target === undefined) {
    throw new UsageError("`patchc build --source` needs --binary REL (the binary the build links, relative to the tree: the target) or --target BINARY");
  }
  if (binary !== undefined && (path.isAbsolute(binary) || binary.split("/").includes(".."))) throw new UsageError(`--binary ${binary}: give a path relative to the top of the tree`);
  const strip = o.strip === undefined ? 1 : (o.strip as number);
  if (!Number.isInteger(strip) || strip < 0) throw new UsageError(`--strip ${strip}: not a count of leading path components`);
  const cflags = ((o.cflags as string[] | undefined) ?? []).flatMap((f) => f.split(/\s+/)).filter(Boolean);
  return {
    mode: "source",
    ...common,
    source,
    diff,
    buildCommand,
    debian: o.debian === true,
    binary,
    strip,
    cflags,
    scratch: str("scratch"),
    keep: str("keep"),
    cache: str("cache"),
    verbose: o.verbose === true,
  };
}

export const buildCommand: Command = {
  spec: {
    name: "build",
    summary: "make a patch package from two builds (objects, or a source tree and a diff)",
    usage: "(--orig A --patched B | --replace OLD=NEW... NEW.o | --source DIR --diff PATCH --build-cmd CMD) -o FILE",
    minArgs: 0,
    maxArgs: 1,
    options: [
      { name: "output", short: "o", kind: "string", value: "FILE", help: "the package to write (atomically)" },
      { name: "target", kind: "string", value: "BINARY", help: "the binary the running process was started from (or a copy)" },
      { name: "orig", kind: "string", value: "A", help: "the original build's objects: a directory (matched by relative path) or an object" },
      { name: "patched", kind: "string", value: "B", help: "the patched build's objects, as --orig" },
      { name: "replace", kind: "list", value: "OLD=NEW", help: "replace the target's function OLD with NEW from NEW.o (repeatable)" },
      { name: "source", kind: "string", value: "DIR", help: "a clean source tree to build twice, without and with --diff" },
      { name: "diff", kind: "string", value: "PATCH", help: "the fix: a unified diff (patch -p1 from the top of the tree)" },
      { name: "build-cmd", kind: "string", value: "CMD", help: "the build command, run by sh at the top of the tree with CFLAGS etc. set" },
      { name: "debian", kind: "boolean", help: "flags from dpkg-buildflags (a Debian source package)" },
      { name: "binary", kind: "string", value: "REL", help: "the binary the build links, relative to the tree: the target" },
      { name: "strip", kind: "number", value: "N", help: "patch -pN for --diff (default 1)" },
      { name: "cflags", kind: "list", value: "FLAGS", help: "more compiler flags, e.g. -flive-patching=inline-clone (repeatable)" },
      { name: "scratch", kind: "string", value: "DIR", help: "where both builds run (default $TMPDIR/patchc-build-<tree name>)" },
      { name: "keep", kind: "string", value: "DIR", help: "keep the objects and binaries of both builds in DIR (absent or empty)" },
      { name: "cache", kind: "string", value: "DIR", help: "cache the original build in DIR, keyed by the tree's content" },
      { name: "verbose", short: "v", kind: "boolean", help: "show the builds' output" },
      { name: "after", kind: "string", value: "EARLIER", help: "stack on the earlier patch EARLIER (a package of the same build; --orig: the objects it was built from)" },
      { name: "id", kind: "string", value: "ID", help: "the patch id (default: the name of -o without its extension)" },
      { name: "description", kind: "string", value: "TEXT", help: "a line saying what the patch fixes" },
      { name: "sign", kind: "string", value: "KEY", help: "sign the package with this ed25519 private key (PEM)" },
    ],
  },
  async run(args, io) {
    const plan = planBuild(args);
    const core = nodeCore();
    const json = args.options.json === true;
    const say = (line: string) => {
      if (!json) io.err(`patchc build: ${line}\n`);
    };
    const signKey = plan.sign === undefined ? undefined : readSigningKey(plan.sign);
    const producer = `patchc ${typeof __PATCHC_VERSION__ === "string" ? __PATCHC_VERSION__ : "dev"}`;
    const common = { patchId: plan.patchId, description: plan.description, producer };

    let pairs: ObjectPair[] | undefined;
    let target = plan.target;
    let built: SourceBuildResult | undefined;
    let diff: BuildDiff | undefined;
    let temp: string | undefined;
    try {
      if (plan.mode === "source") {
        const output = plan.keep ?? (temp = fs.mkdtempSync(path.join(os.tmpdir(), "patchc-objects-")));
        built = await buildSourceTree({
          source: plan.source,
          diff: plan.diff,
          buildCommand: plan.buildCommand,
          output,
          binary: plan.binary,
          debian: plan.debian,
          extraCflags: plan.cflags,
          strip: plan.strip,
          scratch: plan.scratch,
          cache: plan.cache,
          verbose: plan.verbose,
          log: json ? (plan.verbose ? (l) => io.err(`${l}\n`) : undefined) : say,
        });
        target ??= built.target;
        const paired = pairObjects(built.original, built.patched);
        pairs = paired.pairs;
        say(summary(built, pairs));
      } else if (plan.mode === "objects") {
        const paired = pairObjects(plan.original, plan.patched);
        pairs = paired.pairs;
        if (paired.removed.length) say(`only in --orig, ignored: ${paired.removed.join(", ")}`);
      }
      if (pairs) {
        diff = diffBuilds(core, pairs);
        say(formatDiff(diff));
        if (diff.replace.length + diff.add.length === 0) {
          throw new BuildError(
            "diff",
            `the two builds differ in no function: nothing to patch${diff.lineOnly.length ? ` (${diff.lineOnly.length} changed only in __LINE__ numbers: ${diff.lineOnly.map((c) => c.name).join(", ")})` : ""}`,
          );
        }
      }
      const result = makePackage(core, {
        ...common,
        target: target!,
        // A binary in the temporary output is gone after the run: name it in the tree instead.
        targetHint: plan.mode === "source" && plan.target === undefined && temp !== undefined ? path.join(path.resolve(plan.source), plan.binary!) : undefined,
        pairs,
        diff,
        replace: plan.mode === "replace" ? { object: plan.object, functions: plan.replacements } : undefined,
        after: plan.after,
      });
      const bytes = writePackageFile(plan.output, result.package, { signKey });
      const written = decodePackage(core, bytes, plan.output);
      const report = reportPackage(written, signatureStatus(written));
      if (json) {
        io.out(JSON.stringify({ package: report, notes: result.notes, build: built && buildReport(built, pairs!) }, null, 2) + "\n");
      } else {
        for (const n of result.notes) io.out(`note: ${n}\n`);
        io.out(formatReport(report));
      }
      return EXIT_OK;
    } finally {
      if (temp) fs.rmSync(temp, { recursive: true, force: true });
    }
  },
};

/** Objects whose bytes differ between the two builds (a quick look before the diff). */
function differing(pairs: ObjectPair[]): string[] {
  return pairs.filter((p) => !p.original || !fs.readFileSync(p.original).equals(fs.readFileSync(p.patched))).map((p) => p.name);
}

function summary(b: SourceBuildResult, pairs: ObjectPair[]): string {
  const d = differing(pairs);
  const t = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return (
    `built twice in ${b.buildDir} (original: ${b.cached ? "from the cache" : t(b.millis.original)}, patched: ${t(b.millis.patched)}): ` +
    `${pairs.length} objects, ${d.length} differ${d.length ? `: ${d.slice(0, 10).join(", ")}${d.length > 10 ? ", ..." : ""}` : ""}` +
    (b.removed.length ? `; only in the original build, ignored: ${b.removed.join(", ")}` : "")
  );
}

function buildReport(b: SourceBuildResult, pairs: ObjectPair[]) {
  return {
    buildDir: b.buildDir,
    flags: b.flags,
    cached: b.cached,
    millis: b.millis,
    objects: pairs.length,
    added: b.added,
    removed: b.removed,
    differ: differing(pairs),
    target: b.target,
  };
}
