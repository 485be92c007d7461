// The apply engine on other kinds of targets: a non-PIE executable (the region within
// +-2 GiB of 0x400000), a function in a shared library the program loads (the package is
// for the library's build-id), and a function the compiler split into a hot part and a
// .cold piece (the old piece is in the stack check, the new one comes with the patch).
import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { parseMaps } from "../src/apply/maps.js";
import { nodeCore } from "../src/node/core-file.js";
import { run } from "./helpers/gcc.js";
import { buildPackage, compileObjects, FLAGS, linkTarget, Running, engineSuite } from "./apply-engine-helpers.js";

const core = nodeCore();
const { scratch, running } = engineSuite();

const MAIN = `#include <stdio.h>
#include <unistd.h>
int f(int x);
int main(void) {
  int last = -1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (;;) {
    int v = f(10);
    if (v != last) { printf("f %d\\n", v); last = v; }
    usleep(300);
  }
}
`;
/** f with an unlikely path calling a cold function: gcc splits it into f and f.cold. */
const LIB = (k: number) => `#include <stdio.h>
int scale = 3;
__attribute__((cold, noinline)) void complain(int x) { fprintf(stderr, "bad %d\\n", x); }
int f(int x) {
  if (__builtin_expect(x > 1000000, 0)) { complain(x); fprintf(stderr, "really %d %d\\n", x * 2, scale); return -1; }
  return x * scale + ${k};
}
`;

function start(exe: string): Running {
  const r = new Running(exe);
  running.push(r);
  return r;
}

const wx = (pid: number) => parseMaps(fs.readFileSync(`/proc/${pid}/maps`, "utf8"), "maps").filter((m) => m.write && m.exec);

describe("apply engine: kinds of targets", () => {
  it("patches a non-PIE executable, its function split with a .cold piece", async () => {
    const flags = FLAGS.filter((f) => f !== "-fPIE").concat("-fno-pie");
    const orig = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB(1) }, scratch.path("np-orig"), flags);
    const fixed = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB(2) }, scratch.path("np-fixed"), flags);
    const target = linkTarget(orig, scratch.path("np-prog"), ["-no-pie"]);
    expect(run("readelf", ["-h", target])).toMatch(/Type:\s+EXEC/);
    expect(run("nm", [target])).toMatch(/ t f\.cold$/m);
    const pkg = buildPackage(core, { original: orig, patched: fixed, target, patchId: "np-1", out: scratch.path("np-1.patch") });
    expect(pkg.model.functions.find((f) => f.name === "f")!.pieces.map((p) => [p.kind, p.name, p.original !== undefined, p.symbol !== undefined])).toEqual([["cold", "f.cold", true, true]]);

    const r = start(target);
    await r.waitLine(/^f 31$/);
    const rep = await applyPatch(r.pid, pkg, { core });
    expect(rep.module.bias).toBe(0n);
    const fAddr = BigInt("0x" + /^([0-9a-f]+) T f$/m.exec(run("nm", [target]))![1]);
    expect(rep.functions.map((f) => [f.name, f.site])).toEqual([["f", fAddr]]);
    // Within reach of the module: every rel32 from the module reaches the region and back.
    const dist = rep.region.base > fAddr ? rep.region.base + rep.region.size - fAddr : fAddr - rep.region.base;
    expect(dist < 1n << 31n).toBe(true);
    await r.waitLine(/^f 32$/);
    expect(wx(r.pid)).toEqual([]);
    const at = r.lines.length;
    await revertPatch(r.pid, "np-1", { core });
    await r.waitLine(/^f 31$/, 10000, at);
    expect((await readStatus(r.pid)).patches).toEqual([]);
  });

  it("patches a function of a shared library the program loads", async () => {
    const dir = scratch.path("so");
    fs.mkdirSync(dir, { recursive: true });
    const libFlags = FLAGS.filter((f) => f !== "-fPIE").concat("-fPIC");
    const orig = compileObjects(scratch, { "lib.c": LIB(1) }, scratch.path("so-orig"), libFlags);
    const fixed = compileObjects(scratch, { "lib.c": LIB(7) }, scratch.path("so-fixed"), libFlags);
    const lib = path.join(dir, "libfix.so");
    execFileSync("gcc", ["-shared", "-Wl,--build-id", path.join(orig, "lib.o"), "-o", lib], { stdio: ["ignore", "pipe", "pipe"] });
    const exe = scratch.gcc(MAIN, "so-prog", ["-O2", "-pie", "-fPIE"], [`-L${dir}`, "-lfix", `-Wl,-rpath,${dir}`]);
    const pkg = buildPackage(core, { original: orig, patched: fixed, target: lib, patchId: "so-1", out: scratch.path("so-1.patch") });

    const r = start(exe);
    await r.waitLine(/^f 31$/);
    const rep = await applyPatch(r.pid, pkg, { core });
    expect(rep.module.path).toBe(lib);
    await r.waitLine(/^f 37$/);
    const st = await readStatus(r.pid);
    expect(st.patches.map((p) => [p.patchId, p.module.path, p.functions.map((f) => [f.name, f.current])])).toEqual([["so-1", lib, [["f", true]]]]);
    const at = r.lines.length;
    expect((await revertPatch(r.pid, "all", { core })).reverted.map((x) => x.patchId)).toEqual(["so-1"]);
    await r.waitLine(/^f 31$/, 10000, at);
  });
});
