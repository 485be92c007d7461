// One tracer for many applies (ApplyOptions.tracer, `--all`'s TracerPool): applyPatch
// attaches the tracer it is given, leaves it detached and open on every path (a success,
// BUSY after the tracer attached and opened a transaction, WRONG_BUILD before), and the
// same tracer process then patches the next process. The targets are left untraced
// (TracerPid 0) and a refused one unchanged.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { applyPatch, readStatus } from "../src/apply/index.js";
import { applyAllPooled } from "../src/apply/all.js";
import { ApplyError } from "../src/apply/errors.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Tracer } from "../src/shim/index.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, expectUnchanged, snapshot, stopAll, type BuiltModule } from "./helpers/apply.js";
import { rejected } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
let busy: BuiltModule, blocked: BuiltModule;
let busyPkg: ReadPackage;
const tracers: Tracer[] = [];

beforeAll(async () => {
  busy = buildModule(scratch, { name: "busy", sources: ["busy.c"] });
  blocked = buildModule(scratch, { name: "blocked", sources: ["blocked.c"] });
  busyPkg = readPackageFile(core, await buildPatch(busy, "busy-1"));
});
afterEach(async () => {
  for (const t of tracers.splice(0)) await t.close();
  await stopAll();
});
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

const tracerPid = (pid: number): number => Number(/^TracerPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const refusal = (p: Promise<unknown>): Promise<ApplyError> => rejected(ApplyError, p);

describe("a tracer given to applyPatch", () => {
  it("is attached for the apply and left detached and open after a success, BUSY and WRONG_BUILD; it then patches the next process", async () => {
    const t = Tracer.open({ core });
    tracers.push(t);
    const tracer = t.pid;
    const a = (await LiveTarget.start(busy.path)).t;
    const b = (await LiveTarget.start(busy.path)).t;
    const other = (await LiveTarget.start(blocked.path)).t;

    // BUSY: the tracer attached, a transaction was opened and the region mapped, then rolled back.
    expect(await a.ask("enter -", "entered")).toHaveProperty("tid");
    const before = snapshot(a.pid);
    const busyErr = await refusal(applyPatch(a.pid, busyPkg, { core, tracer: t, timeoutMs: 600 }));
    expect(busyErr.code, busyErr.message).toBe("BUSY");
    expectUnchanged(before);
    expect(tracerPid(a.pid)).toBe(0);
    expect(alive(tracer)).toBe(true);

    // The next process, same tracer process.
    const r = await applyPatch(b.pid, busyPkg, { core, tracer: t });
    expect(r.functions.map((f) => f.name)).toEqual(["busy"]);
    expect(await b.ask("call", "call")).toEqual({ r: "42" });
    expect(tracerPid(b.pid)).toBe(0);

    // WRONG_BUILD (refused before attaching), then the first target again once it left busy().
    const wrong = await refusal(applyPatch(other.pid, busyPkg, { core, tracer: t }));
    expect(wrong.code, wrong.message).toBe("WRONG_BUILD");
    expect(tracerPid(other.pid)).toBe(0);
    expect(await a.ask("release", "released")).toEqual({});
    expect(await a.line("left")).toBe("r=41");
    await applyPatch(a.pid, busyPkg, { core, tracer: t });
    expect(await a.ask("call", "call")).toEqual({ r: "42" });
    expect(tracerPid(a.pid)).toBe(0);
    expect((await readStatus(b.pid, { core })).patches.map((p) => p.patchId)).toEqual(["busy-1"]);

    // Still the one tracer process, detached, answering.
    expect(t.pid).toBe(tracer);
    expect(await t.hello()).toMatchObject({ pid: tracer });
    const err = await t.threads().then(
      () => undefined,
      (e) => e,
    );
    expect(err?.code, "the tracer is left attached to nothing").toBe("NOT_ATTACHED");
  });
});

describe("applyAllPooled", () => {
  it("patches every process with one tracer per job, a failure costing no other, and closes them", async () => {
    const targets = await Promise.all(Array.from({ length: 5 }, () => LiveTarget.start(busy.path).then((s) => s.t)));
    const wrong = (await LiveTarget.start(blocked.path)).t;
    const opened: Tracer[] = [];
    const pids = [targets[0].pid, wrong.pid, ...targets.slice(1).map((x) => x.pid)];
    const out = await applyAllPooled(pids, (pid, _slot, tracer) => applyPatch(pid, busyPkg, { core, tracer }), {
      jobs: 2,
      open: () => {
        const t = Tracer.open({ core });
        opened.push(t);
        return t;
      },
    });
    expect(out.map((o) => o.ok)).toEqual([true, false, true, true, true, true]);
    expect(out[1]).toMatchObject({ ok: false, error: { code: "WRONG_BUILD" } });
    expect(opened.length).toBe(2);
    for (const x of targets) {
      expect(await x.ask("call", "call")).toEqual({ r: "42" });
      expect(tracerPid(x.pid)).toBe(0);
    }
    // closed: the tracer processes exit
    for (const t of opened) {
      for (let i = 0; i < 100 && alive(t.pid); i++) await new Promise((r) => setTimeout(r, 10));
      expect(alive(t.pid), `tracer ${t.pid}`).toBe(false);
    }
  });
});
