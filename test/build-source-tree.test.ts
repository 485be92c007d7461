// The source-tree path of `patchc build` (src/build/source-tree.ts) on a small C project
// built with make: both builds in one directory with the same flags, objects matched by
// relative path, the original binary kept, and every failure named and cleaned up.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSourceTree, type SourceBuildOptions } from "../src/build/source-tree.js";
import { BuildError } from "../src/build/errors.js";
import { ElfReader } from "../src/core/elf.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch, run } from "./helpers/gcc.js";
import { rejected } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

// A fixed time for every source file: SOURCE_DATE_EPOCH comes from it, and __DATE__ with it.
const SOURCE_TIME = new Date("2001-02-03T04:05:06Z");

const MAKEFILE = `OBJS = main.o lib/util.o lib/table.o
calc: $(OBJS)
\t$(CC) $(LDFLAGS) -o $@ $(OBJS)
%.o: %.c lib/util.h
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
`;
const UTIL_H = `int util_answer(int x);
const char *util_where(void);
int table_lookup(int i);
`;
const MAIN_C = `#include <stdio.h>
#include "lib/util.h"
static const char built[] = __DATE__ " " __TIME__;
int main(int argc, char **argv) {
  (void)argv;
  printf("%d %s %s\\n", util_answer(20 + argc), util_where(), argc > 5 ? built : "");
  return 0;
}
`;
const UTIL_C = `#include "util.h"
int util_answer(int x) { return x * 2; }
const char *util_where(void) { return __FILE__; }
`;
const TABLE_C = `#include "util.h"
static const int table[] = { 3, 1, 4, 1, 5 };
int table_lookup(int i) { return table[i % 5]; }
`;
const EXTRA_C = `int extra_value(void) { return 7; }
`;

/** Writes a tree: { relative path: text }, every file dated SOURCE_TIME. */
function writeTree(root: string, files: Record<string, string>): string {
  for (const [rel, text] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    fs.utimesSync(p, SOURCE_TIME, SOURCE_TIME);
  }
  return root;
}

/** `diff -ruN a b` of two trees, as a -p1 patch. */
function makeDiff(name: string, a: Record<string, string>, b: Record<string, string>): string {
  const dir = scratch.path(`diff-${name}`);
  writeTree(path.join(dir, "a"), a);
  writeTree(path.join(dir, "b"), b);
  const r = spawnSync("diff", ["-ruN", "a", "b"], { cwd: dir, encoding: "utf8" });
  expect(r.status).toBe(1);
  return scratch.write(`${name}.diff`, r.stdout);
}

const ORIGINAL = { Makefile: MAKEFILE, "lib/util.h": UTIL_H, "main.c": MAIN_C, "lib/util.c": UTIL_C, "lib/table.c": TABLE_C };
// The fix: util_answer triples; lib/table.o leaves the build and lib/extra.o joins it.
const PATCHED = {
  ...ORIGINAL,
  Makefile: MAKEFILE.replace("lib/table.o", "lib/extra.o"),
  "lib/util.c": UTIL_C.replace("x * 2", "x * 3"),
  "lib/extra.c": EXTRA_C,
};

let source: string;
let fix: string;
let counter = 0;

function options(extra: Partial<SourceBuildOptions> = {}): SourceBuildOptions {
  const n = ++counter;
  return {
    source,
    diff: fix,
    buildCommand: "make -s",
    output: scratch.path(`out-${n}`),
    binary: "calc",
    scratch: scratch.path(`build-${n}`),
    env: { ...process.env, CFLAGS: undefined, CXXFLAGS: undefined, CPPFLAGS: undefined, LDFLAGS: undefined, SOURCE_DATE_EPOCH: undefined, MAKEFLAGS: undefined },
    ...extra,
  };
}

const buildError = (p: Promise<unknown>): Promise<BuildError> => rejected(BuildError, p);

function bytes(p: string): Buffer {
  return fs.readFileSync(p);
}

function sectionNames(file: string): string[] {
  const r = new ElfReader(core, bytes(file), file);
  try {
    return r.sections().map((s) => s.name);
  } finally {
    r.close();
  }
}

beforeAll(() => {
  source = writeTree(scratch.path("calc"), ORIGINAL);
  fix = makeDiff("fix", ORIGINAL, PATCHED);
});

describe("buildSourceTree", () => {
  it("builds both trees in one place and matches objects by relative path", async () => {
    const o = options();
    const r = await buildSourceTree(o);
    expect(r.objects).toEqual(["lib/util.o", "main.o"]);
    expect(r.added).toEqual(["lib/extra.o"]);
    expect(r.removed).toEqual(["lib/table.o"]);
    expect(r.buildDir).toBe(path.join(o.scratch!, "calc"));
    // Only objects in both (or new) are handed on.
    expect(fs.readdirSync(path.join(r.original, "lib")).sort()).toEqual(["util.o"]);
    expect(fs.readdirSync(path.join(r.patched, "lib")).sort()).toEqual(["extra.o", "util.o"]);

    // The untouched file compiles to the same bytes, build path, __DATE__ and __TIME__
    // included; the changed one does not.
    const main0 = bytes(path.join(r.original, "main.o"));
    expect(main0.equals(bytes(path.join(r.patched, "main.o")))).toBe(true);
    expect(bytes(path.join(r.original, "lib/util.o")).equals(bytes(path.join(r.patched, "lib/util.o")))).toBe(false);
    expect(main0.includes("Feb  3 2001")).toBe(true); // __DATE__ from SOURCE_DATE_EPOCH
    expect(r.flags.SOURCE_DATE_EPOCH).toBe(String(SOURCE_TIME.getTime() / 1000));
    // Both builds ran in the same directory: the DWARF of both names it.
    for (const dir of [r.original, r.patched]) expect(bytes(path.join(dir, "lib/util.o")).includes(r.buildDir)).toBe(true);

    // One section per function and per object.
    expect(r.flags.CFLAGS).toBe("-O2 -g -ffunction-sections -fdata-sections");
    expect(sectionNames(path.join(r.patched, "lib/util.o"))).toEqual(expect.arrayContaining([".text.util_answer", ".text.util_where"]));
    expect(sectionNames(path.join(r.original, "main.o"))).toContain(".rodata.built");

    // The original build's binary is the target; the patched one is kept beside it.
    expect(r.target).toBe(path.join(o.output, "target", "calc"));
    expect(run(r.target!, []).trim()).toBe("42 lib/util.c");
    expect(run(r.patchedBinary!, []).trim()).toBe("63 lib/util.c");
    // Nothing of the scratch is left, the source is untouched.
    expect(fs.existsSync(o.scratch!)).toBe(false);
    expect(fs.readFileSync(path.join(source, "lib/util.c"), "utf8")).toBe(UTIL_C);
    expect(fs.existsSync(path.join(source, "main.o"))).toBe(false);
  });

  it("uses dpkg-buildflags with --debian, its file-prefix-map naming the build directory, and extra flags", async () => {
    const o = options({ debian: true, extraCflags: ["-flive-patching=inline-clone"], keepScratch: true });
    const r = await buildSourceTree(o);
    const want = run("dpkg-buildflags", ["--get", "CFLAGS"], { cwd: r.buildDir }).trim();
    // Kept on request, with its marker naming this (live) process.
    expect(fs.readFileSync(path.join(o.scratch!, ".patchc"), "utf8")).toBe(`${process.pid}\n`);
    fs.rmSync(o.scratch!, { recursive: true });
    expect(want).toContain(`-ffile-prefix-map=${r.buildDir}=.`);
    expect(r.flags.CFLAGS).toBe(`${want} -ffunction-sections -fdata-sections -flive-patching=inline-clone`);
    expect(r.flags.CPPFLAGS).toBe(run("dpkg-buildflags", ["--get", "CPPFLAGS"]).trim());
    expect(r.flags.LDFLAGS).toBe(run("dpkg-buildflags", ["--get", "LDFLAGS"]).trim());
    // The flags reached the compiler: gcc records them in DW_AT_producer.
    const util = bytes(path.join(r.original, "lib/util.o"));
    expect(util.includes("-flive-patching=inline-clone")).toBe(true);
    expect(util.includes("-fstack-protector-strong")).toBe(true);
    // The prefix map took the build directory out of the objects.
    expect(util.includes(r.buildDir)).toBe(false);
    expect(bytes(path.join(r.original, "main.o")).equals(bytes(path.join(r.patched, "main.o")))).toBe(true);
  });

  it("takes the original build from the cache the second time", async () => {
    const cache = scratch.path("cache");
    const a = await buildSourceTree(options({ cache }));
    expect(a.cached).toBe(false);
    expect(fs.readdirSync(cache).filter((n) => n.startsWith("original-"))).toHaveLength(1);
    const bOpts = options({ cache });
    bOpts.scratch = path.join(path.dirname(a.buildDir)); // the same build directory, or the key differs
    const b = await buildSourceTree(bOpts);
    expect(b.cached).toBe(true);
    expect(b.millis.original).toBe(0);
    expect(b.objects).toEqual(a.objects);
    for (const rel of a.objects) expect(bytes(path.join(b.original, rel)).equals(bytes(path.join(a.original, rel)))).toBe(true);
    expect(bytes(b.target!).equals(bytes(a.target!))).toBe(true);
    // Another build directory is another key: built again.
    const c = await buildSourceTree(options({ cache }));
    expect(c.cached).toBe(false);
  });

  it("names the step, the command, the status and the output of a failed original build", async () => {
    const o = options({ buildCommand: "echo compiling >&2; echo 'lib/util.c:2: error: oops' >&2; exit 3" });
    const e = await buildError(buildSourceTree(o));
    expect(e.step).toBe("build original");
    expect(e.message).toMatch(/^build original: `sh -c .*` exited with status 3 \(in .*\/calc\); its last output:\n {2}\| compiling\n {2}\| lib\/util.c:2: error: oops$/);
    expect(e.failure?.status).toBe(3);
    expect(fs.existsSync(o.scratch!)).toBe(false);
    expect(fs.readdirSync(o.output)).toEqual([]);
  });

  it("checks the diff against the tree before building anything", async () => {
    const other = makeDiff("other", { "lib/util.c": "int f(void) { return 1; }\n" }, { "lib/util.c": "int f(void) { return 2; }\n" });
    const marker = scratch.path("built-anyway");
    const o = options({ diff: other, buildCommand: `touch ${marker}; make -s` });
    const e = await buildError(buildSourceTree(o));
    expect(e.step).toBe("check diff");
    expect(e.message).toMatch(/^check diff: `patch --dry-run -p1 .*` exited with status 1/);
    expect(e.failure?.tail).toMatch(/FAILED/);
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.existsSync(o.scratch!)).toBe(false);
  });

  it("reports the compiler's error when the patched tree does not build, leaving nothing behind", async () => {
    const broken = makeDiff("broken", ORIGINAL, { ...ORIGINAL, "lib/util.c": UTIL_C.replace("x * 2;", "x * ;") });
    const o = options({ diff: broken });
    const e = await buildError(buildSourceTree(o));
    expect(e.step).toBe("build patched");
    expect(e.failure?.tail).toMatch(/util\.c:2:\d+: error: expected expression/);
    expect(fs.existsSync(o.scratch!)).toBe(false);
    expect(fs.readdirSync(o.output)).toEqual([]);
  });

  it("refuses a source tree that holds objects, and a binary the build does not make", async () => {
    const dirty = writeTree(scratch.path("dirty/calc"), ORIGINAL);
    fs.copyFileSync(path.join(scratch.dir, "out-1", "original", "main.o"), path.join(dirty, "main.o"));
    let e = await buildError(buildSourceTree(options({ source: dirty })));
    expect(e.message).toMatch(/^check source: .*calc already holds 1 object file\(s\) \(main\.o\): give a clean tree/);

    const o = options({ binary: "calculator" });
    e = await buildError(buildSourceTree(o));
    expect(e.message).toBe(`build original: the build made no binary ${path.join(o.scratch!, "calc", "calculator")}`);
    expect(fs.existsSync(o.scratch!)).toBe(false);
  });

  it("never touches a scratch directory that is not its own or is in use, and takes over a dead one", async () => {
    const foreign = options();
    fs.mkdirSync(foreign.scratch!);
    fs.writeFileSync(path.join(foreign.scratch!, "precious"), "x");
    let e = await buildError(buildSourceTree(foreign));
    expect(e.message).toMatch(/^scratch: .* exists and is not a patchc scratch directory/);
    expect(fs.readFileSync(path.join(foreign.scratch!, "precious"), "utf8")).toBe("x");

    const busy = options();
    fs.mkdirSync(busy.scratch!);
    fs.writeFileSync(path.join(busy.scratch!, ".patchc"), `${process.ppid}\n`);
    e = await buildError(buildSourceTree(busy));
    expect(e.message).toBe(`scratch: ${busy.scratch} is in use by patchc process ${process.ppid}`);
    expect(fs.existsSync(path.join(busy.scratch!, ".patchc"))).toBe(true);

    const dead = spawnSync("true");
    const stale = options();
    fs.mkdirSync(path.join(stale.scratch!, "calc"), { recursive: true });
    fs.writeFileSync(path.join(stale.scratch!, ".patchc"), `${dead.pid}\n`);
    fs.writeFileSync(path.join(stale.scratch!, "calc", "main.o"), "left over");
    const r = await buildSourceTree(stale);
    expect(r.objects).toEqual(["lib/util.o", "main.o"]);
    expect(fs.existsSync(stale.scratch!)).toBe(false);
  });

  it("refuses an output directory that is not empty, before building", async () => {
    const o = options();
    fs.mkdirSync(o.output);
    fs.writeFileSync(path.join(o.output, "keep"), "");
    const e = await buildError(buildSourceTree(o));
    expect(e.message).toBe(`options: output ${o.output} is not empty`);
    expect(fs.existsSync(o.scratch!)).toBe(false);
  });
});
