// The flags check (src/build/flags.ts): objects compiled with other code-generation
// options than the target (DW_AT_producer of their compile units, .GCC.command.line) are
// refused before the proof, naming the object, the unit and the options that differ;
// options that do not change code (-g levels, prefix maps) are ignored, and those the
// build adds (-ffunction-sections, -fdata-sections) are ignored against the target.
// The same check for replacement mode (--replace), for compressed debug sections (gcc
// -gz, ld --compress-debug-sections: inflated, zstd noted) and for split DWARF
// (-gsplit-dwarf: the skeleton followed to its .dwo).
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { diffBuilds } from "../src/build/build-diff.js";
import { BuildError } from "../src/build/errors.js";
import { effectiveOptions, flagDifference } from "../src/build/flags.js";
import { makePackage } from "../src/build/make-package.js";
import { main } from "../src/cli/main.js";
import { pairObjects } from "../src/build/objects.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch, run } from "./helpers/gcc.js";
import { thrown } from "./helpers/thrown.js";

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
/** Both builds' objects with `objFlags` (patched: `patchedFlags`), the target compiled from the same source with `targetFlags` (linked with `linkFlags`), in one directory (same DW_AT_name and comp_dir). */
function program(objFlags: string[], targetFlags: string[], patchedFlags = objFlags, linkFlags: string[] = []) {
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
  execFileSync("gcc", ["-pie", "-Wl,--build-id", ...linkFlags, "target.o", "-o", "target"], { cwd: dir });
  return { dir, original: path.join(dir, "original"), patched: path.join(dir, "patched"), target: path.join(dir, "target") };
}

function build(p: { original: string; patched: string; target: string }, debugRoot?: string) {
  const pairs = pairObjects(p.original, p.patched).pairs;
  return makePackage(core, { target: p.target, patchId: "f", pairs, diff: diffBuilds(core, pairs), debugRoot });
}

const refusal = (fn: () => unknown): string => thrown(BuildError, fn).message;

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

/** The sections of a file shown with the C (SHF_COMPRESSED) flag by readelf. */
function compressed(file: string): string[] {
  return run("readelf", ["-SW", file])
    .split("\n")
    .map((l) => /^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S*)/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && m[2].includes("C"))
    .map((m) => m[1]);
}

const TARGET_DIFFERS = (target: string, object = "DW_AT_producer of the object", of = `DW_AT_producer of ${target}`) =>
  `flags: fix.o: compile unit fix.c: compiled with flags different from the target's (${object}, ${of}): only in the object: -O2; only in the target: -O1`;

describe("makePackage: compressed debug sections", () => {
  it("gcc -gz objects, a target linked with --compress-debug-sections=zlib: refused exactly as uncompressed, alike accepted", () => {
    const p = program(["-O2", "-g", "-gz", ...SECTIONS], ["-O1", "-g"], undefined, ["-Wl,--compress-debug-sections=zlib"]);
    expect(compressed(path.join(p.original, "fix.o"))).toContain(".debug_info");
    expect(compressed(p.target)).toEqual(expect.arrayContaining([".debug_info", ".debug_abbrev"]));
    expect(refusal(() => build(p))).toBe(TARGET_DIFFERS(p.target));
    const same = program(["-O2", "-g", "-gz", ...SECTIONS], ["-O2", "-g"], undefined, ["-Wl,--compress-debug-sections=zlib"]);
    const r = build(same);
    expect(r.package.functions.map((f) => f.name).sort()).toEqual(["main", "step"]);
    expect(r.notes).toEqual([]);
    // The original and the patched object, both compressed, compared with each other too.
    const pair = program(["-O2", "-g", "-gz", ...SECTIONS], ["-O2", "-g"], ["-O2", "-g", "-gz", "-fno-inline", ...SECTIONS]);
    expect(refusal(() => build(pair))).toBe(
      "flags: fix.o: compile unit fix.c: the original and the patched object were compiled with different flags (DW_AT_producer): only in the original: (none); only in the patched: -fno-inline",
    );
  });

  it("the older .zdebug_* form (gcc -gz=zlib-gnu, objcopy zlib-gnu): read as well", () => {
    const p = program(["-O2", "-g", "-gz=zlib-gnu", ...SECTIONS], ["-O1", "-g"]);
    execFileSync("objcopy", ["--compress-debug-sections=zlib-gnu", p.target]);
    expect(run("readelf", ["-SW", p.target])).toMatch(/\.zdebug_info/);
    expect(run("readelf", ["-SW", path.join(p.original, "fix.o")])).toMatch(/\.zdebug_info/);
    expect(refusal(() => build(p))).toBe(TARGET_DIFFERS(p.target));
    const same = program(["-O2", "-g", "-gz=zlib-gnu", ...SECTIONS], ["-O2", "-g"]);
    execFileSync("objcopy", ["--compress-debug-sections=zlib-gnu", same.target]);
    expect(build(same).notes).toEqual([]);
  });

  it("zstd (objcopy --compress-debug-sections=zstd): inflated where Node can, else a note naming the file, the section and the compression", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g"]);
    execFileSync("objcopy", ["--compress-debug-sections=zstd", p.target]);
    expect(run("readelf", ["-tW", p.target])).toMatch(/ZSTD/);
    if (typeof (zlib as unknown as Record<string, unknown>).zstdDecompressSync === "function") {
      expect(refusal(() => build(p))).toBe(TARGET_DIFFERS(p.target));
      return;
    }
    // The flags are not compared (the note says why); the proof of identity then refuses the -O1 code.
    expect(refusal(() => build(p))).toMatch(/^proof of identity: fix\.o: (step|main): /);
    const same = program(["-O2", "-g", ...SECTIONS], ["-O2", "-g"]);
    execFileSync("objcopy", ["--compress-debug-sections=zstd", same.target]);
    expect(build(same).notes).toEqual([
      `fix.o: compile unit fix.c: flags not compared with the target's: its debug information cannot be read (${same.target}: .debug_info is compressed with zstd (SHF_COMPRESSED, ELFCOMPRESS_ZSTD), which Node ${process.version} cannot inflate (zlib.zstdDecompressSync: Node 22.15 and later); decompress it first (objcopy --decompress-debug-sections))`,
    ]);
  });

  it("a stripped target whose debug file (found by build-id) is compressed, as Debian's dbgsym files are", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g", ...SECTIONS]);
    const stripped = `${p.target}.stripped`;
    execFileSync("strip", ["--strip-debug", "-o", stripped, p.target]);
    const id = /Build ID: ([0-9a-f]+)/.exec(run("readelf", ["-n", p.target]))![1];
    const debugRoot = scratch.path(`zdebug${n}`);
    const debug = path.join(debugRoot, ".build-id", id.slice(0, 2), `${id.slice(2)}.debug`);
    fs.mkdirSync(path.dirname(debug), { recursive: true });
    execFileSync("objcopy", ["--only-keep-debug", "--compress-debug-sections=zlib", p.target, debug]);
    expect(compressed(debug)).toContain(".debug_info");
    expect(refusal(() => build({ ...p, target: stripped }, debugRoot))).toBe(TARGET_DIFFERS(stripped, undefined, `DW_AT_producer of ${debug}`));
  });

  it("a damaged compressed section: a note naming the file and the section, no crash", () => {
    const p = program(["-O2", "-g", "-gz", ...SECTIONS], ["-O2", "-g"]);
    const obj = path.join(p.original, "fix.o");
    const info = run("readelf", ["-SW", obj]).split("\n").find((l) => / \.debug_info /.test(l))!;
    const offset = parseInt(info.trim().split(/\s+/)[4], 16);
    const bytes = fs.readFileSync(obj);
    const note = (why: string) => new RegExp(`^fix\\.o: flags not compared with the target's: its debug information cannot be read \\(${obj.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: \\.debug_info ${why}\\)$`);
    // Elf64_Chdr.ch_size smaller than what the stream holds: inflating stops there.
    const small = Buffer.from(bytes);
    small.writeBigUInt64LE(16n, offset + 8);
    fs.writeFileSync(obj, small);
    expect(build(p).notes).toEqual([expect.stringMatching(note("cannot be inflated: .+"))]);
    // Larger: the inflated size is checked against it.
    small.writeBigUInt64LE(1n << 20n, offset + 8);
    fs.writeFileSync(obj, small);
    expect(build(p).notes).toEqual([expect.stringMatching(note(`inflates to \\d+ bytes, its Elf64_Chdr says ${1 << 20}`))]);
    bytes.fill(0x55, offset + 24 + 2, offset + 24 + 12); // inside the zlib stream, after its 2-byte header
    fs.writeFileSync(obj, bytes);
    expect(build(p).notes).toEqual([expect.stringMatching(note("cannot be inflated: .+"))]);
  });
});

describe("makePackage: split DWARF (-gsplit-dwarf)", () => {
  for (const dwarf of ["-gdwarf-4", "-gdwarf-5"]) {
    it(`${dwarf}: the objects' skeletons followed to their .dwo: a mismatch refused, alike accepted`, () => {
      const p = program(["-O2", "-g", dwarf, "-gsplit-dwarf", ...SECTIONS], ["-O1", "-g", dwarf]);
      const dwo = path.join(p.original, "fix.dwo");
      expect(fs.existsSync(dwo)).toBe(true);
      // The oracle: readelf shows a skeleton without DW_AT_producer in the object, the producer in the .dwo.
      const skeleton = run("readelf", ["--debug-dump=info", "--dwarf-depth=1", path.join(p.original, "fix.o")]).split("Contents of the .debug_info.dwo")[0];
      expect(skeleton).toMatch(dwarf === "-gdwarf-5" ? /DW_AT_dwo_name/ : /DW_AT_GNU_dwo_name/);
      expect(skeleton).not.toMatch(/DW_AT_producer/);
      expect(refusal(() => build(p))).toBe(TARGET_DIFFERS(p.target, `DW_AT_producer of the object (from its .dwo ${dwo})`));
      const same = program(["-O2", "-g", dwarf, "-gsplit-dwarf", ...SECTIONS], ["-O2", "-g", dwarf]);
      expect(build(same).notes).toEqual([]);
      const pair = program(["-O2", "-g", dwarf, "-gsplit-dwarf", ...SECTIONS], ["-O2", "-g"], ["-O2", "-g", dwarf, "-gsplit-dwarf", "-fno-inline", ...SECTIONS]);
      expect(refusal(() => build(pair))).toBe(
        "flags: fix.o: compile unit fix.c: the original and the patched object were compiled with different flags (DW_AT_producer): only in the original: (none); only in the patched: -fno-inline",
      );
    });
  }

  it("-gz -gsplit-dwarf: the .dwo's own sections compressed, inflated as well", () => {
    const p = program(["-O2", "-g", "-gz", "-gsplit-dwarf", ...SECTIONS], ["-O1", "-g"]);
    const dwo = path.join(p.original, "fix.dwo");
    expect(compressed(dwo)).toContain(".debug_info.dwo");
    expect(refusal(() => build(p))).toBe(TARGET_DIFFERS(p.target, `DW_AT_producer of the object (from its .dwo ${dwo})`));
  });

  it("a split-DWARF target: its skeletons followed to the .dwo its build left", () => {
    const p = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g", "-gsplit-dwarf"]);
    expect(refusal(() => build(p))).toBe(TARGET_DIFFERS(p.target, undefined, `DW_AT_producer of ${p.target} (from its .dwo ${path.join(p.dir, "target.dwo")})`));
    const same = program(["-O2", "-g", ...SECTIONS], ["-O2", "-g", "-gsplit-dwarf"]);
    expect(build(same).notes).toEqual([]);
    // Without the .dwo: not compared, the note names the path looked for.
    fs.rmSync(path.join(same.dir, "target.dwo"));
    expect(build(same).notes).toEqual([
      `fix.o: compile unit fix.c: flags not compared with the target's: its compile units are split-DWARF skeletons whose .dwo cannot be read (${same.target}: split-DWARF unit at 0x0: its .dwo ${path.join(same.dir, "target.dwo")} is missing (DW_AT_dwo_name target.dwo))`,
    ]);
  });

  it("an object's .dwo missing, or of another compilation: a note naming it; an object moved with its .dwo: found beside it", () => {
    const p = program(["-O2", "-g", "-gsplit-dwarf", ...SECTIONS], ["-O2", "-g"]);
    const dwo = path.join(p.original, "fix.dwo");
    const name = /DW_AT_dwo_name\s*:.*?: (\S+)$/m.exec(run("readelf", ["--debug-dump=info", path.join(p.original, "fix.o")]))![1];
    fs.renameSync(dwo, `${dwo}.away`);
    expect(build(p).notes).toEqual([
      `fix.o: flags not compared with the target's: its compile unit is a split-DWARF skeleton whose flags are in a .dwo that cannot be read (${path.join(p.original, "fix.o")}: split-DWARF unit at 0x0: its .dwo ${path.join(p.dir, name)} is missing (DW_AT_dwo_name ${name}))`,
    ]);
    // Another compilation's .dwo in its place (-O1: its flags would be refused if read).
    execFileSync("gcc", ["-O1", "-g", "-gsplit-dwarf", ...SECTIONS, "-c", "fix.c", "-o", "other.o"], { cwd: p.dir });
    fs.copyFileSync(path.join(p.dir, "other.dwo"), dwo);
    expect(build(p).notes).toEqual([
      expect.stringMatching(/^fix\.o: flags not compared with the target's: .*: split-DWARF unit at 0x0: \S+fix\.dwo is the \.dwo of another compilation \(dwo_id 0x[0-9a-f]+, the skeleton's 0x[0-9a-f]+\)\)$/),
    ]);
    // The build directory moved: comp_dir/dwo_name is gone, the .dwo beside the object is read.
    fs.renameSync(`${dwo}.away`, dwo);
    const moved = path.join(p.dir, "moved");
    fs.renameSync(p.original, moved);
    const t = program(["-O2", "-g", ...SECTIONS], ["-O1", "-g"]);
    expect(refusal(() => build({ original: moved, patched: p.patched, target: t.target }))).toBe(
      TARGET_DIFFERS(t.target, `DW_AT_producer of the object (from its .dwo ${path.join(moved, "fix.dwo")})`),
    );
  });
});

describe("makePackage: replacement mode (--replace) checks the object's flags too", () => {
  // A target of two files: fix.c (-O2) and other.c (-O1, a static `helper` and a global `twice`).
  const OTHER = "__attribute__((noinline)) static int helper(int x) { return x * 5; }\nint twice(int x) { return helper(x) * 2; }\n";
  const MAIN = "int twice(int);\nint main(int c, char **v) { (void)v; return twice(c); }\n";
  function target(fixFlags: string[], otherFlags: string[]) {
    const dir = scratch.path(`r${++n}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "fix.c"), MAIN);
    fs.writeFileSync(path.join(dir, "other.c"), OTHER);
    execFileSync("gcc", [...fixFlags, "-c", "fix.c"], { cwd: dir });
    execFileSync("gcc", [...otherFlags, "-c", "other.c"], { cwd: dir });
    execFileSync("gcc", ["-pie", "-Wl,--build-id", "fix.o", "other.o", "-o", "target"], { cwd: dir });
    return dir;
  }
  function hotfix(dir: string, file: string, flags: string[], text = "int helper_v2(int x) { return x * 6; }\nint twice_v2(int x) { return x * 12; }\n") {
    fs.writeFileSync(path.join(dir, file), text);
    execFileSync("gcc", [...flags, "-c", file, "-o", file.replace(/\.c$/, ".o")], { cwd: dir });
    return path.join(dir, file.replace(/\.c$/, ".o"));
  }
  const replace = (dir: string, object: string, old: string, fresh: string) =>
    makePackage(core, { target: path.join(dir, "target"), patchId: "r", replace: { object, functions: [{ old, new: fresh }] } });

  it("a static replaced: compared with the unit of its file (other.c -O1), not with any other", () => {
    const dir = target(["-O2", "-g", ...SECTIONS], ["-O1", "-g", ...SECTIONS]);
    const ok = hotfix(dir, "hotfix.c", ["-O1", "-g", ...SECTIONS]);
    const r = replace(dir, ok, "helper", "helper_v2");
    expect(r.package.functions.map((f) => f.name)).toEqual(["helper"]);
    expect(r.notes).toEqual([]);
    const wrong = hotfix(dir, "hotfix2.c", ["-O2", "-g", ...SECTIONS]); // the flags of fix.c, not of other.c
    expect(refusal(() => replace(dir, wrong, "helper", "helper_v2"))).toBe(
      `flags: hotfix2.o: compile unit hotfix2.c: compiled with flags different from the target's (DW_AT_producer of the object, DW_AT_producer of ${path.join(dir, "target")}, compile unit other.c): only in the object: -O2; only in the target: -O1`,
    );
  });

  it("a global replaced from a file of another name: refused only when no unit of the target was compiled alike", () => {
    const dir = target(["-O2", "-g", ...SECTIONS], ["-O2", "-g", ...SECTIONS]);
    expect(replace(dir, hotfix(dir, "hotfix.c", ["-O2", "-g"]), "twice", "twice_v2").notes).toEqual([]);
    expect(refusal(() => replace(dir, hotfix(dir, "hotfix3.c", ["-O1", "-g", "-fno-inline"]), "twice", "twice_v2"))).toMatch(
      new RegExp(
        `^flags: hotfix3\\.o: compile unit hotfix3\\.c: compiled with flags different from every compile unit of the target's \\(DW_AT_producer of the object; the nearest: DW_AT_producer of ${path.join(dir, "target").replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}, compile unit (fix|other)\\.c\\): only in the object: -O1 -fno-inline; only in the target: -O2$`,
      ),
    );
  });

  it("an object of the target's file name (a fixed copy of other.c): compared with that unit", () => {
    const dir = target(["-O1", "-g", ...SECTIONS], ["-O2", "-g", ...SECTIONS]);
    const sub = path.join(dir, "fixed");
    fs.mkdirSync(sub);
    const obj = hotfix(sub, "other.c", ["-O1", "-g", ...SECTIONS], OTHER.replace("x * 2", "x * 3").replace("twice", "twice_v2"));
    expect(refusal(() => replace(dir, obj, "twice", "twice_v2"))).toBe(
      `flags: other.o: compile unit other.c: compiled with flags different from the target's (DW_AT_producer of the object, DW_AT_producer of ${path.join(dir, "target")}): only in the object: -O1; only in the target: -O2`,
    );
  });

  it("nothing recorded: a note, as in diff mode; the CLI refuses a mismatch (exit 1) and reports the note", async () => {
    const dir = target(["-O2", "-g", ...SECTIONS], ["-O2", "-g", ...SECTIONS]);
    const bare = hotfix(dir, "bare.c", ["-O2", "-g0", ...SECTIONS]);
    expect(replace(dir, bare, "twice", "twice_v2").notes).toEqual([
      "bare.o: flags not compared with the target's: it records no compile flags (no DW_AT_producer: built without -g; no .GCC.command.line: without -frecord-gcc-switches)",
    ]);
    let out = "";
    let err = "";
    const io = { out: (t: string) => void (out += t), err: (t: string) => void (err += t), isTTY: false };
    const cli = (obj: string, o: string) => main(["build", "--replace", "twice=twice_v2", "--target", path.join(dir, "target"), "-o", path.join(dir, o), obj], io);
    expect(await cli(bare, "a.patch")).toBe(0);
    expect(out).toContain("note: bare.o: flags not compared with the target's: it records no compile flags");
    const wrong = hotfix(dir, "wrong.c", ["-O1", "-g", ...SECTIONS]);
    expect(await cli(wrong, "b.patch")).toBe(1);
    expect(err).toContain("flags: wrong.o: compile unit wrong.c: compiled with flags different from every compile unit of the target's");
    expect(fs.existsSync(path.join(dir, "b.patch"))).toBe(false);
  });
});
