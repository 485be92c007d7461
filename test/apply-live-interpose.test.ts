// A shared library's exported variable that the executable COPY-relocated (issue 6: "a
// function in a shared library the fixture loads"): libfix.so's lib_answer() increments
// lib_calls through its GOT slot, which the dynamic linker points at the executable's
// copy; the library's own definition is dead. The patched lib_answer() must update the
// same copy, or the program's count stops.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { applyPatch, revertPatch } from "../src/apply/index.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, compileProgram, stopAll } from "./helpers/apply.js";

const core = nodeCore();
const scratch = new Scratch();
let libmain: string, pkg: ReadPackage;

beforeAll(async () => {
  const lib = buildModule(scratch, { name: "libfix.so", dir: "lib", sources: ["libfix.c"], cflags: ["-fPIC"], ldflags: ["-shared"] });
  libmain = compileProgram(scratch, "libmain.c", "lib/libmain", [], [`-L${scratch.path("lib")}`, "-lfix", `-Wl,-rpath,${scratch.path("lib")}`]);
  pkg = readPackageFile(core, await buildPatch(lib, "lib-1"));
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

describe("a library's exported variable, COPY-relocated into the executable", () => {
  it("the patched function keeps counting in the executable's copy", async () => {
    const { t } = await LiveTarget.start(libmain);
    expect(await t.ask("call 5", "call")).toEqual({ answer: "11", stable: "4", hits: "1", calls: "1" });
    await applyPatch(t.pid, pkg, { core });
    expect(await t.ask("call 5", "call")).toEqual({ answer: "1010", stable: "4", hits: "2", calls: "2" });
    await revertPatch(t.pid, "lib-1", { core });
    expect(await t.ask("call 5", "call")).toEqual({ answer: "11", stable: "4", hits: "3", calls: "3" });
  });
});
