// The flags check (src/build/flags.ts): objects compiled with other code-generation
// options than the target (DW_AT_producer of their compile units, .GCC.command.line) are
// refused before the proof, naming the object, the unit and the options that differ;
// options that do not change code (-g levels, prefix maps) are ignored, and those the
// build adds (-ffunction-sections, -fdata-sections) are ignored against the target.
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { diffBuilds } from "../src/build/build-diff.js";
import { BuildError } from "../src/build/errors.js";
import { effectiveOptions, flagDifference } from "../src/build/flags.js";
import { makePackage } from "../src/build/make-package.js";
import { main } from "../src/cli/main.js";
import { pairObjects } from "../src/build/objects.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch, run } from "./helpers/gcc.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

const SRC = `int counter;
int step(int x) { counter += x; return counter * 3; }
int other(int x) { return x - 1; }
int main(int c, char **v) { (void)v; return step(c) + other(c); }
`;
const FIXED = SRC.replace("counter * 3", "counter * 4");
const SECTIONS = ["-ffunction-sections", "-fdata-sections"];

let n = 0;
/** Both builds' objects with `objFlags` (patched: `patchedFlags`), the target compiled from the same source with `targetFlags`, in one directory (same DW_AT_name and comp_dir). */
function program(objFlags: string[], targetFlags: string[], patchedFlags = objFlags) {
  const dir = scratch.path(`f${++n}`);
  fs.mkdirSync(path.join(dir, "original"), { recursive: true });
  fs.mkdirSync(path.join(dir, "patched"));
  const cc = (text: string, flags: string[], out: string) => {
    fs.writeFileSync(path.join(dir, "fix.c"), text);
    execFileSync("gcc", [...flags, "-c", "fix.c", "-o", out], { cwd: dir });
  };
  cc(SRC, targetFlags, "target.o");
  cc(SRC, objFlags, "original/fix.o");
  cc(FIXED, patchedFlags, "patched/fix.o");
  execFileSync("gcc", ["-pie", "-Wl,--build-id", "target.o", "-o", "target"], { cwd: dir });
  return { dir, original: path.join(dir, "original"), patched: path.join(dir, "patched"), target: path.join(dir, "target") };
}

function build(p: { original: string; patched: string; target: string }, debugRoot?: string) {
  const pairs = pairObjects(p.original, p.patched).pairs;
  return makePackage(core, { target: p.target, patchId: "f", pairs, diff: diffBuilds(core, pairs), debugRoot });
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BuildError);
    return (e as Error).message;
  }
  throw new Error("not refused");
}

describe("effective options", () => {
  it("the last -O, -f/-fno-, -m/-mno-, -x=value wins; code-neutral options dropped", () => {
    expect(effectiveOptions("GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2 -O1 -fno-omit-frame-pointer -fomit-frame-pointer -ffile-prefix-map=/a=/b -g3 -Wall", false)).toEqual({
      compiler: "GNU C17 12.2.0",
      options: ["-mtune=generic", "-march=x86-64", "-O1", "-fomit-frame-pointer"],
    });
    expect(flagDifference("GNU C17 12.2.0 -g -O2 -ffunction-sections", "GNU C17 12.2.0 -g2 -O2", true)).toBeUndefined();
    expect(flagDifference("GNU C17 12.2.0 -g -O2 -ffunction-sections", "GNU C17 12.2.0 -g2 -O2", false)).toEqual({ onlyA: ["-ffunction-sections"], onlyB: [] });
    expect(flagDifference("GNU C17 12.2.0 -O2", "GNU C11 12.2.0 -O2", true)).toEqual({ onlyA: [], onlyB: [], compilers: ["GNU C17 12.2.0", "GNU C11 12.2.0"] });
  });
});

describe("makePackage: compile flags", () => {
  it("objects -O2 against a target built -O1: refused, naming the unit and both sides' options", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g", ...SECTIONS]);
    expect(run("readelf", ["--debug-dump=info", p.target])).toMatch(/DW_AT_producer.*-O1/);
    expect(refusal(() => build(p))).toBe(
      `flags: fix.o: compile unit fix.c: compiled with flags different from the target's (DW_AT_producer of the object, DW_AT_producer of ${p.target}): only in the object: -O2; only in the target: -O1`,
    );
  });

  it("-g2 objects against a -g target, and a target built without the section flags the build adds: accepted", () => {
    const p = program(["-O2", "-g2", ...SECTIONS], ["-O2", "-g"]);
    const r = build(p);
    expect(r.package.functions.map((f) => f.name).sort()).toEqual(["main", "step"]); // main inlines step
    expect(r.notes).toEqual([]);
  });

  it("the original and the patched object compiled differently: refused", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O2", "-g", ...SECTIONS], ["-O2", "-g", "-fno-inline", ...SECTIONS]);
    expect(refusal(() => build(p))).toBe(
      "flags: fix.o: compile unit fix.c: the original and the patched object were compiled with different flags (DW_AT_producer): only in the original: (none); only in the patched: -fno-inline",
    );
  });

  it(".GCC.command.line (-frecord-gcc-switches) without debug info: compared too", () => {
    const p = program(["-O2", "-g0", "-frecord-gcc-switches", ...SECTIONS], ["-O1", "-g0", "-frecord-gcc-switches", ...SECTIONS]);
    expect(refusal(() => build(p))).toBe(
      `flags: fix.o: its compile unit: compiled with flags different from the target's (.GCC.command.line of the object, .GCC.command.line of ${p.target}): only in the object: -O2; only in the target: -O1`,
    );
  });

  it("nothing recorded: not an error, the build report says so", () => {
    const p = program(["-O2", "-g0", ...SECTIONS], ["-O2", "-g0", ...SECTIONS]);
    const r = build(p);
    expect(r.package.functions.map((f) => f.name).sort()).toEqual(["main", "step"]); // main inlines step
    expect(r.notes).toEqual([
      "fix.o: flags not compared with the target's: it records no compile flags (no DW_AT_producer: built without -g; no .GCC.command.line: without -frecord-gcc-switches)",
    ]);
  });

  it("patchc build: the note in the build report (text and --json), the refusal as the error (exit 1)", async () => {
    const quiet = program(["-O2", "-g0", ...SECTIONS], ["-O2", "-g0", ...SECTIONS]);
    let out = "";
    let err = "";
    const io = { out: (t: string) => void (out += t), err: (t: string) => void (err += t), isTTY: false };
    const args = (p: typeof quiet, o: string) => ["build", "--orig", p.original, "--patched", p.patched, "--target", p.target, "-o", path.join(p.dir, o)];
    expect(await main(args(quiet, "a.patch"), io)).toBe(0);
    expect(out).toContain("note: fix.o: flags not compared with the target's: it records no compile flags");
    out = "";
    expect(await main([...args(quiet, "b.patch"), "--json"], io)).toBe(0);
    expect(JSON.parse(out).notes).toEqual([
      "fix.o: flags not compared with the target's: it records no compile flags (no DW_AT_producer: built without -g; no .GCC.command.line: without -frecord-gcc-switches)",
    ]);
    const wrong = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g", ...SECTIONS]);
    err = "";
    expect(await main(args(wrong, "c.patch"), io)).toBe(1);
    expect(err).toContain("flags: fix.o: compile unit fix.c: compiled with flags different from the target's");
    expect(fs.existsSync(path.join(wrong.dir, "c.patch"))).toBe(false);
  });

  it("a target whose debug sections are compressed: not compared, and the build report says why", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g", ...SECTIONS]);
    execFileSync("objcopy", ["--compress-debug-sections=zlib", p.target]);
    expect(run("readelf", ["-SW", p.target])).toMatch(/\.debug_info\s+PROGBITS\s+\S+\s+\S+\s+\S+\s+\S+\s+C/);
    // The flags are not compared (a note says why); the proof of identity then refuses the -O1 code.
    expect(refusal(() => build(p))).toMatch(/^proof of identity: fix\.o: (step|main): /);
    const same = program(["-O2", "-g", ...SECTIONS], ["-O2", "-g", ...SECTIONS]);
    execFileSync("objcopy", ["--compress-debug-sections=zlib", same.target]);
    expect(build(same).notes).toEqual([
      `fix.o: compile unit fix.c: flags not compared with the target's: its debug information cannot be read (${same.target}: .debug_info is compressed (SHF_COMPRESSED): decompress it first (objcopy --decompress-debug-sections))`,
    ]);
  });

  it("a stripped target: its debug file, found by build-id, says how it was compiled", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g", ...SECTIONS]);
    const stripped = `${p.target}.stripped`;
    execFileSync("strip", ["--strip-debug", "-o", stripped, p.target]);
    const id = /Build ID: ([0-9a-f]+)/.exec(run("readelf", ["-n", p.target]))![1];
    const debugRoot = scratch.path(`debug${n}`);
    const debug = path.join(debugRoot, ".build-id", id.slice(0, 2), `${id.slice(2)}.debug`);
    fs.mkdirSync(path.dirname(debug), { recursive: true });
    execFileSync("objcopy", ["--only-keep-debug", p.target, debug]);
    expect(refusal(() => build({ ...p, target: stripped }, debugRoot))).toBe(
      `flags: fix.o: compile unit fix.c: compiled with flags different from the target's (DW_AT_producer of the object, DW_AT_producer of ${debug}): only in the object: -O2; only in the target: -O1`,
    );
  });
});
