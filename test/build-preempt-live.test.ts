// Preemptible functions of a shared-library target, live (src/build/assemble.ts
// bindPreemptible): libfix.so's lib_answer() calls lib_helper() through its PLT, and an
// LD_PRELOAD object defines lib_helper() and lib_other() too, so in the process both are
// the preloaded ones. The fix also calls lib_other(), which the library never called (no
// slot: bound by lookup in the process's search order). The patched lib_answer() must
// call the same lib_helper() as the original, and the lib_other() the process binds:
//   original: lib_helper(5) = 105 (preloaded), 105 * 2 + 1           = 211
//   patched:  105 * 2 + lib_other(1000) = 1007 (preloaded)           = 1217
//   (bound at the library's own definitions it would be 8 * 2 + 997 = 1013)
// and lib_calls, COPY-relocated into the executable, keeps counting there.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { applyPatch, revertPatch } from "../src/apply/index.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { CFLAGS, LiveTarget, buildPatch, compileProgram, inspect, stopAll, type BuiltModule } from "./helpers/apply.js";

const core = nodeCore();
const scratch = new Scratch();

const LIB = `int lib_calls;
static int lib_hits;
__attribute__((noinline)) int lib_helper(int x) { return x + 3; }
__attribute__((noinline)) int lib_other(int x) { return x - 3; }
__attribute__((noinline, noclone)) int lib_answer(int x) {
  lib_calls++;
  lib_hits++;
  return lib_helper(x) * 2 + 1;
}
__attribute__((noinline)) int lib_stable(int x) { return x - 1; }
__attribute__((noinline)) int lib_hits_now(void) { return lib_hits; }
`;
const FIXED = LIB.replace("* 2 + 1;", "* 2 + lib_other(1000);");
const PRELOAD = `int lib_helper(int x) { return x + 100; }
int lib_other(int x) { return x + 7; }
`;

let exe: string, preload: string, pkg: ReadPackage, refs: Array<Record<string, unknown>>;

beforeAll(async () => {
  const dir = scratch.path("lib");
  for (const d of ["original", "patched", "src"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const cc = (text: string, out: string) => {
    fs.writeFileSync(path.join(dir, "src", "libfix.c"), text);
    execFileSync("gcc", [...CFLAGS, "-fPIC", "-c", "libfix.c", "-o", out], { cwd: path.join(dir, "src") });
  };
  cc(LIB, path.join(dir, "original", "libfix.o"));
  cc(FIXED, path.join(dir, "patched", "libfix.o"));
  const lib = path.join(dir, "libfix.so");
  execFileSync("gcc", ["-shared", "-Wl,--build-id", "-Wl,-soname,libfix.so", path.join(dir, "original", "libfix.o"), "-o", lib]);
  fs.writeFileSync(path.join(dir, "pre.c"), PRELOAD);
  preload = path.join(dir, "libpre.so");
  execFileSync("gcc", ["-O2", "-fPIC", "-shared", "pre.c", "-o", preload], { cwd: dir });
  exe = compileProgram(scratch, "libmain.c", "lib/libmain", ["-no-pie", "-fno-pie"], [`-L${dir}`, "-lfix", `-Wl,-rpath,${dir}`]);
  const m: BuiltModule = { spec: { name: "libfix.so", sources: [] }, path: lib, original: path.join(dir, "original"), patched: path.join(dir, "patched") };
  const file = await buildPatch(m, "pre-1");
  refs = (await inspect(file)).references;
  pkg = readPackageFile(core, file);
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

describe("a shared library's preemptible functions, interposed by LD_PRELOAD", () => {
  it("the package binds them through the library's PLT entry and by lookup, not at the library's definitions", () => {
    const by = (n: string) => refs.filter((r) => r.name === n).map((r) => [r.bind, r.scope]);
    expect(by("lib_helper")).toEqual([["plt", "dynamic"]]);
    expect(by("lib_other")).toEqual([["direct", "dynamic"]]);
    expect(by("lib_calls")).toEqual([["got", "dynamic"]]);
  });

  it("the patched function calls the preloaded definitions and counts in the executable's copy", async () => {
    const { t } = await LiveTarget.start(exe, [], { LD_PRELOAD: preload });
    expect(await t.ask("call 5", "call")).toEqual({ answer: "211", stable: "4", hits: "1", calls: "1" });
    await applyPatch(t.pid, pkg, { core });
    expect(await t.ask("call 5", "call")).toEqual({ answer: "1217", stable: "4", hits: "2", calls: "2" });
    await revertPatch(t.pid, "pre-1", { core });
    expect(await t.ask("call 5", "call")).toEqual({ answer: "211", stable: "4", hits: "3", calls: "3" });
  });
});
