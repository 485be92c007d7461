// Refusals of apply on real processes (issue 6, "Tests"): each compares the target's
// /proc/PID/maps and every byte of its executable mappings before and after, and checks
// the target still runs the original code.
// - a package for another binary (WRONG_BUILD);
// - a truncated package (the reader refuses it);
// - a dead pid (NO_PROCESS);
// - a site whose bytes differ: the running binary is a rebuild with a change in the
//   patched function and the same build-id (SITE_MISMATCH);
// - the same package twice (ALREADY_APPLIED), a revert of what is not applied (NOT_APPLIED).
// (The same through the command line: apply-live-cli.test.ts.)
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { ApplyError } from "../src/apply/errors.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, compileProgram, expectUnchanged, readMemory, runtimeAddress, snapshot, stopAll, type BuiltModule } from "./helpers/apply.js";
import { rejected } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
const BUILD_ID = "0123456789abcdef0123456789abcdef01234567";

let simple: BuiltModule, pair: BuiltModule, variant: string;
let simpleFile: string, pairPkg: ReadPackage, simplePkg: ReadPackage;

beforeAll(async () => {
  simple = buildModule(scratch, { name: "simple", sources: ["simple.c"], ldflags: [`-Wl,--build-id=0x${BUILD_ID}`] });
  // the same program rebuilt with a change in answer() and the same build-id
  variant = compileProgram(scratch, "simple.c", "variant/simple", ["-DVARIANT", "-pthread", `-Wl,--build-id=0x${BUILD_ID}`]);
  pair = buildModule(scratch, { name: "pair", sources: ["pair.c"] });
  simpleFile = await buildPatch(simple, "simple-1");
  simplePkg = readPackageFile(core, simpleFile);
  pairPkg = readPackageFile(core, await buildPatch(pair, "pair-1"));
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

const refusal = (p: Promise<unknown>): Promise<ApplyError> => rejected(ApplyError, p);

/** A running `simple` (or another build of it) answering 1, with its snapshot. */
async function start(path = simple.path) {
  const { t } = await LiveTarget.start(path);
  const r = await t.ask("call", "call");
  return { t, before: snapshot(t.pid), r: r.r };
}

describe("refusals leave the target as it was", () => {
  it("a package for another binary: WRONG_BUILD, naming the process and the build-id", async () => {
    const { t, before } = await start();
    const e = await refusal(applyPatch(t.pid, pairPkg, { core }));
    expect(e.code, e.message).toBe("WRONG_BUILD");
    expect(e.message).toContain(`process ${t.pid}`);
    expect(e.message).toContain(pairPkg.model.target.buildId);
    expectUnchanged(before);
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
  });

  it("a truncated package: the reader refuses it, naming it", async () => {
    const { t, before } = await start();
    const bytes = readFileSync(simpleFile);
    const cut = scratch.path("truncated.patch");
    writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
    expect(() => readPackageFile(core, cut)).toThrow(/truncated\.patch/);
    expectUnchanged(before);
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
  });

  it("a dead pid: NO_PROCESS from apply, revert and status", async () => {
    const { t } = await start();
    const pid = t.pid;
    await t.stop();
    for (const p of [applyPatch(pid, simplePkg, { core }), revertPatch(pid, "all", { core }), readStatus(pid, { core })]) {
      const e = await refusal(p);
      expect(e.code, e.message).toBe("NO_PROCESS");
      expect(e.message).toContain(`process ${pid}`);
    }
  });

  it("a site whose bytes differ (a rebuild with the same build-id): SITE_MISMATCH naming the function", async () => {
    // preconditions: same build-id, answer() at the same address, other bytes at its entry
    const ids = [simple.path, variant].map((f) => /Build ID: ([0-9a-f]+)/.exec(execFileSync("readelf", ["-n", f], { encoding: "utf8" }))![1]);
    expect(ids).toEqual([BUILD_ID, BUILD_ID]);
    const { t, before, r } = await start(variant);
    expect(r).toBe("7");
    const site = runtimeAddress(t.pid, variant, "answer");
    const o = simplePkg.model.functions.find((f) => f.name === "answer")!.original!;
    const nmAnswer = (f: string) => /^([0-9a-f]+) T answer$/m.exec(execFileSync("nm", [f], { encoding: "utf8" }))![1];
    expect(nmAnswer(variant)).toBe(nmAnswer(simple.path));
    expect(BigInt(`0x${nmAnswer(variant)}`)).toBe(o.addr);
    expect(readMemory(t.pid, site, 5).equals(Buffer.from(o.site.subarray(0, 5)))).toBe(false);
    const e = await refusal(applyPatch(t.pid, simplePkg, { core }));
    expect(e.code, e.message).toBe("SITE_MISMATCH");
    expect(e.message).toContain(`process ${t.pid}, function answer`);
    expectUnchanged(before);
    expect(await t.ask("call", "call")).toEqual({ r: "7" });
  });

  it("the same package twice: ALREADY_APPLIED; a revert of what is not applied: NOT_APPLIED", async () => {
    const { t, before } = await start();
    const e0 = await refusal(revertPatch(t.pid, "simple-1", { core }));
    expect(e0.code, e0.message).toBe("NOT_APPLIED");
    expect(e0.message).toContain(`process ${t.pid}`);
    expectUnchanged(before);
    await applyPatch(t.pid, simplePkg, { core });
    expect(await t.ask("call", "call")).toEqual({ r: "2" });
    const applied = snapshot(t.pid);
    const e = await refusal(applyPatch(t.pid, simplePkg, { core }));
    expect(e.code, e.message).toBe("ALREADY_APPLIED");
    expect(e.message).toContain(`process ${t.pid}`);
    expectUnchanged(applied);
    const e2 = await refusal(revertPatch(t.pid, "other-1", { core }));
    expect(e2.code, e2.message).toBe("NOT_APPLIED");
    expectUnchanged(applied);
    await revertPatch(t.pid, "simple-1", { core });
    expectUnchanged(before);
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
  });
});
