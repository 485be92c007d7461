// Stacking (src/build/earlier.ts): `patchc build --after A.patch` builds patch B on top of
// patch A of the same build. A replaces f1 and adds a helper and a global; B is built
// from A's patched objects (--orig) and changes f1 again (A's function) and f2 (not
// A's), which calls A's helper and uses A's global. B depends on A pinned to its hash;
// f1 carries after = A; A's helper and global bind with scope patch. A non-matching
// --after (missing, another build, objects that are not A's) is refused with the reason.
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../src/cli/main.js";
import { readPackageFile } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

const FLAGS = ["-O2", "-g", "-fPIE", "-ffunction-sections", "-fdata-sections", "-fno-inline"];

const S0 = `#include <stdio.h>
int total;
int f1(int x) { total += x; return x * 2; }
int f2(int x) { return x + 40; }
int f3(int x) { return printf("%d\\n", x); }
int main(int argc, char **argv) { (void)argv; return f1(argc) + f2(argc) + f3(argc); }
`;
// Patch A: f1 changed, calls a new helper and counts in a new global.
const S1 = S0.replace("int f1(int x) { total += x; return x * 2; }", "int count_a;\n__attribute__((noinline)) int helper_a(int x) { count_a++; return x > 100 ? 100 : x; }\nint f1(int x) { total += helper_a(x); return x * 2; }");
// Patch B on top of A: f1 changed again, f2 now uses A's helper and global.
const S2 = S1.replace("return x * 2; }", "return x * 3; }").replace("int f2(int x) { return x + 40; }", "int f2(int x) { return helper_a(x) + count_a + 40; }");

function compile(src: string, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const work = scratch.path("work");
  fs.mkdirSync(work, { recursive: true });
  fs.writeFileSync(path.join(work, "prog.c"), src);
  execFileSync("gcc", [...FLAGS, "-c", "prog.c", "-o", path.join(dir, "prog.o")], { cwd: work });
  return dir;
}

async function patchc(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t), isTTY: false });
  return { code, out, err };
}

const o0 = compile(S0, scratch.path("s0"));
const o1 = compile(S1, scratch.path("s1"));
const o2 = compile(S2, scratch.path("s2"));
const target = scratch.path("target");
execFileSync("gcc", ["-pie", "-Wl,--build-id", path.join(o0, "prog.o"), "-o", target]);
const aFile = scratch.path("fix-a.patch");
const bFile = scratch.path("fix-b.patch");

describe("patchc build --after", () => {
  it("B on top of A: the dependency with A's hash, after = A on A's function, A's symbols of scope patch", async () => {
    const a = await patchc("build", "--orig", o0, "--patched", o1, "--target", target, "-o", aFile);
    expect(a.code, a.err).toBe(0);
    const b = await patchc("build", "--orig", o1, "--patched", o2, "--target", target, "-o", bFile, "--after", aFile);
    expect(b.code, b.err).toBe(0);

    const inspect = await patchc("inspect", bFile, "--json");
    expect(inspect.code).toBe(0);
    const report = JSON.parse(inspect.out);
    const aHash = readPackageFile(core, aFile).hash;
    expect(report.dependencies).toEqual([{ patchId: "fix-a", hash: aHash }]);
    expect(report.functions.map((f: { kind: string; name: string; after?: string }) => [f.kind, f.name, f.after])).toEqual([
      ["replace", "f1", "fix-a"],
      ["replace", "f2", undefined],
    ]);
    const refs = Object.fromEntries(report.references.map((r: { name: string; bind: string; scope: string; patch?: string; type: string }) => [r.name, [r.bind, r.scope, r.patch, r.type]]));
    expect(refs.helper_a).toEqual(["direct", "patch", "fix-a", "func"]);
    expect(refs.count_a).toEqual(["direct", "patch", "fix-a", "object"]);
    expect(refs.total).toEqual(["direct", "module", undefined, "object"]);
    // Nothing of A is carried again.
    expect(report.functions.some((f: { name: string }) => f.name === "helper_a")).toBe(false);
    expect(report.sections.map((s: { name: string }) => s.name).filter((n: string) => n.includes("count_a") || n.includes("helper_a"))).toEqual([]);
    // f1's expected site is still the target's own entry (apply finds A's jump over it).
    const model = readPackageFile(core, bFile).model;
    const aModel = readPackageFile(core, aFile).model;
    const f1 = model.functions.find((f) => f.name === "f1")!;
    expect(f1.original!.site).toEqual(aModel.functions.find((f) => f.name === "f1")!.original!.site);
    // And the text report says so.
    const text = await patchc("inspect", bFile);
    expect(text.out).toContain("fix-a (sha256 " + aHash.slice(0, 16) + ")");
    expect(text.out).toContain("the jump of fix-a");
  });

  it("refuses a missing --after, one of another build, and original objects that are not the earlier patch's", async () => {
    if (!fs.existsSync(aFile)) expect((await patchc("build", "--orig", o0, "--patched", o1, "--target", target, "-o", aFile)).code).toBe(0);
    const out = scratch.path("x.patch");
    const missing = scratch.path("nope.patch");
    let r = await patchc("build", "--orig", o1, "--patched", o2, "--target", target, "-o", out, "--after", missing);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`after: ${missing}: cannot read the package: ENOENT`);

    // A patch of another build (another build-id).
    const other = scratch.path("other-target");
    execFileSync("gcc", ["-pie", "-Wl,--build-id", "-Wl,-z,norelro", path.join(o0, "prog.o"), "-o", other]);
    const otherA = scratch.path("other-a.patch");
    expect((await patchc("build", "--orig", o0, "--patched", o1, "--target", other, "-o", otherA)).code).toBe(0);
    const id = (f: string) => readPackageFile(core, f).model.target.buildId;
    r = await patchc("build", "--orig", o1, "--patched", o2, "--target", target, "-o", out, "--after", otherA);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `after: ${otherA}: patch other-a is for the build with build-id ${id(otherA)} (${other}), not for the target ${target} (build-id ${id(aFile)}): a patch stacks only on a patch of the same build`,
    );

    // --orig given the running build's objects instead of A's: f1 is not A's code.
    r = await patchc("build", "--orig", o0, "--patched", o2, "--target", target, "-o", out, "--after", aFile);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/proof of identity: prog\.o: f1: .*; patch fix-a replaced it, so the original objects \(--orig\) must be the ones fix-a was built from \(its patched objects\)/);
    expect(fs.existsSync(out)).toBe(false);

    // A function A added cannot be replaced by B (format 1.0).
    const o3 = compile(S1.replace("return x > 100 ? 100 : x;", "return x > 99 ? 99 : x;"), scratch.path("s3"));
    r = await patchc("build", "--orig", o1, "--patched", o3, "--target", target, "-o", out, "--after", aFile);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      "after: prog.o: helper_a was added by patch fix-a: a later patch cannot replace a function an earlier one added (format 1.0; docs/format.md, \"Limits\"); change it in a new version of fix-a instead",
    );
  });
});
