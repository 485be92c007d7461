// `--all`'s sharer check (applyAllPooled: one SharerPass for the run, src/shim/sharers.ts):
// a target with a vfork child sharing its address space is refused exactly as a lone
// apply refuses it (SHARED_VM, the child named, the target unchanged and untraced), the
// other targets are patched, and the run took one pass over /proc rather than comparing
// every target with every process.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { applyPatch } from "../src/apply/index.js";
import { applyAllPooled } from "../src/apply/all.js";
import { ApplyError } from "../src/apply/errors.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Tracer } from "../src/shim/index.js";
import { SharerPass } from "../src/shim/sharers.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, expectUnchanged, snapshot, stopAll, type BuiltModule } from "./helpers/apply.js";
import { rejected } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
let busy: BuiltModule;
let pkg: ReadPackage;
const kill: number[] = [];

beforeAll(async () => {
  busy = buildModule(scratch, { name: "busy", sources: ["busy.c"] });
  pkg = readPackageFile(core, await buildPatch(busy, "busy-1"));
});
afterEach(async () => {
  for (const p of kill.splice(0)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
  await stopAll();
});
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

const tracerPid = (pid: number): number => Number(/^TracerPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);

describe("apply --all and address-space sharers", () => {
  it("refuses the target with a vfork child as a lone apply does, patches the others, from one pass", async () => {
    const targets = await Promise.all(Array.from({ length: 4 }, () => LiveTarget.start(busy.path).then((s) => s.t)));
    const shared = targets[1];
    const child = Number((await shared.ask("vfork", "vforked")).pid);
    kill.push(child);
    expect(child).toBeGreaterThan(0);
    const before = snapshot(shared.pid);

    // A lone apply (every process compared): the reason to match.
    const lone = await rejected(ApplyError, applyPatch(shared.pid, pkg, { core }));
    expect(lone.code, lone.message).toBe("TRACE");
    expect(lone.reason).toContain(`shares its address space with pid ${child}`);
    expect(lone.reason).toContain("vfork");

    const sharers = new SharerPass();
    try {
      const out = await applyAllPooled(
        targets.map((x) => x.pid),
        (pid, _slot, tracer) => applyPatch(pid, pkg, { core, tracer }),
        { jobs: 2, open: () => Tracer.open({ core }), sharers },
      );
      expect(out.map((o) => o.ok)).toEqual([true, false, true, true]);
      const refused = out[1];
      if (refused.ok) throw new Error("not refused");
      expect(refused.error).toEqual({ code: lone.code, subject: lone.subject, reason: lone.reason, tid: lone.tid });
      expect(refused.gone).toBe(false);
      expectUnchanged(before);
      expect(tracerPid(shared.pid)).toBe(0);
      expect(tracerPid(child)).toBe(0);
      for (const x of [targets[0], targets[2], targets[3]]) {
        expect(await x.ask("call", "call")).toEqual({ r: "42" });
        expect(tracerPid(x.pid)).toBe(0);
      }
      // one pass (more only if this loaded machine stalled a job past the pass's gap), and the
      // three patched targets checked from it or, when stalled, against every process
      expect(sharers.stats.passes).toBeGreaterThanOrEqual(1);
      expect(sharers.stats.fromPass + sharers.stats.full).toBeGreaterThanOrEqual(3);
      expect(sharers.stats.fromPass).toBeGreaterThanOrEqual(1);
    } finally {
      sharers.close();
    }
  });
});
