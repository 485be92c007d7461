// diffBuilds (src/build/build-diff.ts): the object diff over two whole builds, objects
// paired by relative path — what to replace, what to add, what changed only in __LINE__
// numbers, and refusals naming the object and the reason; and `patchc build` reporting it.
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { diffBuilds, formatDiff } from "../src/build/build-diff.js";
import { pairObjects } from "../src/build/objects.js";
import { BuildError } from "../src/build/errors.js";
import { main } from "../src/cli/main.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { thrown } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

const FLAGS = ["-O2", "-g", "-ffunction-sections", "-fdata-sections"];

/** Compiles a tree of C files ({ rel: text }) into DIR/<rel>.o, each from one build directory. */
function build(name: string, files: Record<string, string>): string {
  const src = scratch.path(`src-${name}`);
  fs.rmSync(src, { recursive: true, force: true });
  const out = scratch.path(`objs-${name}`);
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
    fs.writeFileSync(path.join(src, rel), text);
  }
  // The same build path for every version: compile in one place, as the source-tree path does.
  const work = scratch.path("work");
  fs.rmSync(work, { recursive: true, force: true });
  fs.cpSync(src, work, { recursive: true });
  for (const rel of Object.keys(files)) {
    const obj = path.join(out, rel.replace(/\.c$/, ".o"));
    fs.mkdirSync(path.dirname(obj), { recursive: true });
    execFileSync("gcc", [...FLAGS, "-c", rel, "-o", obj], { cwd: work, stdio: ["ignore", "pipe", "pipe"] });
  }
  return out;
}

const UTIL = `#include <stdio.h>
static int calls;
static int twice(int x) { return x * 2; }
int util_answer(int x) { calls++; return twice(x) + 1; }
int util_calls(void) { return calls; }
void util_log(const char *m) { fprintf(stderr, "%s:%d: %s\\n", __FILE__, __LINE__, m); }
`;
const MAIN = `int util_answer(int x);
int main(int argc, char **argv) { (void)argv; return util_answer(argc); }
`;

describe("diffBuilds", () => {
  it("lists the functions to replace and to add, and the objects new in the patched build", () => {
    const a = build("a", { "main.c": MAIN, "lib/util.c": UTIL });
    const b = build("b", {
      "main.c": MAIN,
      "lib/util.c": UTIL.replace("return twice(x) + 1;", "return twice(x) + helper(x);").replace("static int twice", "static __attribute__((noinline)) int helper(int x) { return x > 3; }\nstatic int twice"),
      "lib/extra.c": "int extra_value(void) { return 7; }\n",
    });
    const d = diffBuilds(core, pairObjects(a, b).pairs);
    expect(d.pairs).toBe(3);
    expect(d.replace.map((c) => `${c.object}: ${c.name}`)).toEqual(["lib/util.o: util_answer"]);
    expect(d.add.map((c) => `${c.object}: ${c.name}`).sort()).toEqual(["lib/extra.o: extra_value", "lib/util.o: helper"]);
    // The new line above it moved util_log's __LINE__: reported apart.
    expect(d.lineOnly.map((c) => `${c.name} ${c.lines}`)).toEqual(["util_log 6->7"]);
    // main.o is the same file in both builds: not diffed, but counted.
    expect(d.results.map((r) => r.pair.name).sort()).toEqual(["lib/extra.o", "lib/util.o"]);
    expect(d.functions).toBeGreaterThanOrEqual(6);
    expect(formatDiff(d)).toMatch(/^diff of 3 object pairs \(\d+ functions\): 1 to replace, 2 to add, 1 changed only in __LINE__ numbers\n {2}replace util_answer \(lib\/util\.o: /);
  });

  it("reports a function changed only in its __LINE__ numbers apart", () => {
    const a = build("c", { "lib/util.c": UTIL });
    const b = build("d", { "lib/util.c": UTIL.replace("#include <stdio.h>\n", "#include <stdio.h>\n/* moved down */\n") });
    const d = diffBuilds(core, pairObjects(a, b).pairs);
    expect(d.replace).toEqual([]);
    expect(d.lineOnly.map((c) => c.name)).toEqual(["util_log"]);
    expect(d.lineOnly[0].lines).toEqual(["6->7"]);
    expect(formatDiff(d)).toContain("__LINE__ only, not included: util_log (lib/util.o: lines 6->7)");
  });

  it("refuses a changed data layout, naming the object and the variable", () => {
    const a = build("e", { "lib/util.c": UTIL });
    const b = build("f", { "lib/util.c": UTIL.replace("static int calls;", "static long calls;") });
    const e = thrown(BuildError, () => diffBuilds(core, pairObjects(a, b).pairs));
    expect(e.message).toMatch(/^diff: refused:\n {2}lib\/util\.o: calls: .*size/);
  });
});

describe("patchc build --source: the diff, reported", () => {
  it("says when the builds differ in no function", async () => {
    const tree = scratch.path("calc");
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, "main.c"), MAIN);
    fs.writeFileSync(path.join(tree, "util.c"), UTIL);
    fs.writeFileSync(path.join(tree, "Makefile"), "calc: main.o util.o\n\t$(CC) $(LDFLAGS) -o $@ main.o util.o\n");
    const fix = scratch.write("comment.diff", "--- a/main.c\n+++ b/main.c\n@@ -1,2 +1,3 @@\n+/* a comment */\n int util_answer(int x);\n int main(int argc, char **argv) { (void)argv; return util_answer(argc); }\n");
    let err = "";
    const code = await main(["build", "--source", tree, "--diff", fix, "--build-cmd", "make -s", "--binary", "calc", "--scratch", scratch.path("scratch"), "-o", scratch.path("x.patch")], {
      out: () => {},
      err: (t) => void (err += t),
      isTTY: false,
    });
    expect(code).toBe(1);
    expect(err).toMatch(/patchc build: built twice in .*\/scratch\/calc \(original: [\d.]+ s, patched: [\d.]+ s\): 2 objects, 1 differ: main\.o\n/); // its line table moved

    expect(err).toContain("patchc build: diff of 2 object pairs");
    expect(err).toMatch(/patchc: diff: the two builds differ in no function: nothing to patch\n$/);
    expect(fs.existsSync(scratch.path("x.patch"))).toBe(false);
    expect(fs.existsSync(scratch.path("scratch"))).toBe(false);
  });
});
