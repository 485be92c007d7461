// Apply while threads are where apply must be careful (issue 6, "Tests"):
// - a thread busy inside the function being replaced: apply waits and succeeds once it
//   leaves (released by a file the test writes when apply reports it is waiting); one that
//   never leaves: ApplyError BUSY naming the thread after --timeout, the target unchanged
//   (maps and text compared) and still running;
// - threads blocked in read, accept, pthread_cond_wait and a raw FUTEX_WAIT during an
//   apply, a revert and an apply again: each then completes its operation with no EINTR,
//   no early wakeup and no lost data.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { ApplyError } from "../src/apply/errors.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, blockedIn, buildModule, buildPatch, expectUnchanged, snapshot, stopAll, until, type BuiltModule } from "./helpers/apply.js";
import { rejected } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
let busy: BuiltModule, blocked: BuiltModule;
let busyPkg: ReadPackage, blockedPkg: ReadPackage;

beforeAll(async () => {
  busy = buildModule(scratch, { name: "busy", sources: ["busy.c"] });
  blocked = buildModule(scratch, { name: "blocked", sources: ["blocked.c"] });
  busyPkg = readPackageFile(core, await buildPatch(busy, "busy-1"));
  blockedPkg = readPackageFile(core, await buildPatch(blocked, "blocked-1"));
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

describe("a thread busy inside the function being replaced", () => {
  it("apply waits for it and succeeds when it leaves; it finishes in the old code", async () => {
    const { t, ready } = await LiveTarget.start(busy.path);
    const flag = scratch.path("leave-now");
    expect(await t.ask(`enter ${flag}`, "entered")).toEqual({ tid: ready.tid });
    // The thread cannot leave before the flag exists, so apply's first stop finds it inside
    // busy(): the flag is written 400 ms after apply starts stopping (or when it says it waits).
    const phases: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    const release = () => {
      if (!existsSync(flag)) writeFileSync(flag, "");
    };
    let r;
    try {
      r = await applyPatch(t.pid, busyPkg, {
        core,
        timeoutMs: 30000,
        onPhase: (p) => {
          phases.push(p);
          if (p === "stop") timer ??= setTimeout(release, 400);
          if (p === "wait") release();
        },
      });
    } finally {
      clearTimeout(timer);
    }
    expect(phases, "apply's phases").toContain("stop");
    expect(existsSync(flag)).toBe(true);
    expect(r.attempts > 1 || r.waitedNs > 0, `attempts ${r.attempts}, waited ${r.waitedNs} ns`).toBe(true);
    expect(r.functions.map((f) => f.name)).toEqual(["busy"]);
    expect(await t.line("left")).toBe("r=41"); // the call that was running finished in the original
    expect(await t.ask("call", "call")).toEqual({ r: "42" });
    expect(t.alive).toBe(true);
  });

  it("one that never leaves: ApplyError BUSY naming the thread after the timeout; nothing changed, the target runs on", async () => {
    const { t, ready } = await LiveTarget.start(busy.path);
    expect(await t.ask("enter -", "entered")).toEqual({ tid: ready.tid });
    const before = snapshot(t.pid);
    const start = Date.now();
    const e = await rejected(ApplyError, applyPatch(t.pid, busyPkg, { core, timeoutMs: 1500 }));
    const elapsed = Date.now() - start;
    expect(e.code, e.message).toBe("BUSY");
    expect(e.tid).toBe(Number(ready.tid));
    expect(e.message).toContain(`process ${t.pid}`);
    expect(e.message).toContain("busy");
    expect(elapsed, "it gave up before --timeout").toBeGreaterThanOrEqual(1400);
    expectUnchanged(before);
    expect((await readStatus(t.pid, { core })).patches).toEqual([]);
    expect(t.alive).toBe(true);
    expect(await t.ask("release", "released")).toEqual({});
    expect(await t.line("left")).toBe("r=41");
    expect(await t.ask("call", "call")).toEqual({ r: "41" });
  });
});

// syscall numbers (x86-64)
const SYS = { read: 0, accept: 43, accept4: 288, futex: 202 };

describe("threads blocked in read, accept and futex during apply", () => {
  it("complete their operations afterwards with no EINTR, no early wakeup, no lost data", async () => {
    const { t, ready } = await LiveTarget.start(blocked.path);
    const tid = (k: string) => Number(ready[k]);
    const inPlace = () =>
      blockedIn(t.pid, tid("reader")) === SYS.read &&
      [SYS.accept, SYS.accept4].includes(blockedIn(t.pid, tid("acceptor"))) &&
      blockedIn(t.pid, tid("cond")) === SYS.futex &&
      blockedIn(t.pid, tid("futex")) === SYS.futex;
    await until(() => inPlace() && blockedIn(t.pid, t.pid) === SYS.read, 10000, "the threads to block");
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
    await applyPatch(t.pid, blockedPkg, { core });
    await revertPatch(t.pid, "blocked-1", { core });
    await applyPatch(t.pid, blockedPkg, { core });
    // Back where they were: a thread interrupted in a syscall restarts it when resumed,
    // and on a loaded machine it may not have run yet when apply returns ("running" in
    // /proc/PID/task/TID/syscall), so wait for it; an EINTR or early return would show in
    // the replies checked below, never as a thread back in the same call.
    await until(inPlace, 10000, "the threads to be blocked where they were");
    expect(await t.ask("call", "call")).toEqual({ r: "2" });

    const data = "after-apply-0123456789abcdefghijklmnopqrstuvwxyz";
    t.send(`feed ${data}`);
    expect(await t.line("read")).toBe(`n=${data.length} errno=0 eintr=0 data=${data}`);

    const sock = connect(Number(ready.port), "127.0.0.1");
    await new Promise<void>((res, rej) => {
      sock.once("connect", () => res());
      sock.once("error", rej);
    });
    sock.end("hello-accept");
    const acc = await t.line("accepted");
    expect(acc).toMatch(/^fd=\d+ errno=0 eintr=0 data=hello-accept$/);
    sock.destroy();

    t.send("signal");
    expect(await t.line("cond")).toBe("rc=0 pred=1 wakeups=1");
    t.send("wake");
    expect(await t.line("futex")).toBe("r=0 errno=0 eintr=0 word=1");
    expect(t.alive).toBe(true);
    expect(t.stderr).toBe("");
  });
});
