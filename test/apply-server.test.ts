// A network server under continuous load, patched and unpatched 100 times while it
// serves (issue 6, the last test). The server (test/fixtures/server/server.c) has an
// accept thread and worker threads with their own epoll sets; the body of every
// response comes from render_reply (reply.c), which the patch replaces, so each
// response names the version that made it. The package is made by the real `patchc
// build` from the two builds' objects. A load generator (load.c) keeps keep-alive
// connections and connections opened per request busy, and counts every request
// that fails (refused, reset, cut short, garbled, late) and which version answered.
//
// The claim: zero failed requests over the 100 cycles, both versions seen by the
// load, no EINTR in the server's blocked threads, the server serving afterwards,
// nothing of the patch left (status empty, the same executable mappings as before).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { Scratch } from "./helpers/gcc.js";
import { alive, buildServerFixture, compileLoad, executableMappings, httpGet, type Load, startFixtureServer, startLoad, stopStarted } from "./fixtures/server/harness.js";

const core = nodeCore();
const scratch = new Scratch();
const CYCLES = 100;
const PATH = "/hello";
const V1 = `server version 1: ${PATH}\n`;
const V2 = `server version 2: ${PATH}\n`;

let server: string; // the running build
let loadBin: string;
let packageFile: string;
let pkg: ReadPackage;
const started: number[] = [];
const loads: Load[] = [];

beforeAll(async () => {
  ({ server, packageFile } = await buildServerFixture(scratch));
  pkg = readPackageFile(core, packageFile);
  loadBin = compileLoad(scratch.dir);
}, 120_000);

afterEach(() => stopStarted(started, loads));
afterAll(() => scratch.remove());

const startServer = (workers: number) => startFixtureServer(server, workers, started);

describe("the fixture server and its load generator", () => {
  it("the package replaces render_reply, built by patchc build from the two builds", () => {
    expect(pkg.model.functions.map((f) => `${f.kind} ${f.name}`)).toEqual(["replace render_reply"]);
    expect(pkg.model.patchId).toBe("fix");
  });

  it("the server counts the EINTRs its blocked threads see (here: a stop and continue)", async () => {
    const { pid, port } = await startServer(2);
    expect(await httpGet(port, "/_eintr")).toEqual({ status: 200, body: "eintr 0\n" });
    // Idle workers wait in epoll_wait, which a stop signal interrupts (signal(7)).
    process.kill(pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 100));
    process.kill(pid, "SIGCONT");
    expect((await httpGet(port, "/_eintr")).body).toMatch(/^eintr [1-9]\d*\n$/);
  });

  it("the load generator counts wrong bodies, refused connections and a stopped server as failures", async () => {
    const { pid, port } = await startServer(2);
    // Only version 2 is expected: every version-1 answer is garbled.
    let load = await startLoad(loadBin, { port, path: PATH, versions: { v2: V2 }, keepAlive: 2, fresh: 1 });
    loads.push(load);
    await new Promise((r) => setTimeout(r, 200));
    let r = await load.stop();
    expect(r.requests).toBeGreaterThan(10);
    expect(r.garbled).toBe(r.requests);
    expect(r.versions).toEqual({ v2: 0 });
    expect(r.firstFailure).toMatch(/^garbled on connection \d+ at \d+ ms: a body that is no version's$/);

    // A server that stops answering for longer than the timeout.
    load = await startLoad(loadBin, { port, path: PATH, versions: { v1: V1 }, keepAlive: 2, fresh: 1, timeoutMs: 300 });
    loads.push(load);
    await new Promise((r) => setTimeout(r, 100));
    process.kill(pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 600));
    process.kill(pid, "SIGCONT");
    await new Promise((r) => setTimeout(r, 100));
    r = await load.stop();
    expect(r.timeout).toBeGreaterThanOrEqual(3);
    expect(r.versions.v1).toBeGreaterThan(0);
    expect(r.requests).toBe(r.versions.v1 + r.failures);

    // A server that dies: reset or cut short, then refused.
    load = await startLoad(loadBin, { port, path: PATH, versions: { v1: V1 }, keepAlive: 2, fresh: 1 });
    loads.push(load);
    await new Promise((r) => setTimeout(r, 100));
    process.kill(pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 200));
    r = await load.stop();
    expect(r.connect).toBeGreaterThan(0);
    expect(r.requests).toBe(r.versions.v1 + r.failures);
  });
});

describe("apply and revert under continuous load", () => {
  it(`${CYCLES} times, with zero failed requests and both versions serving`, async () => {
    const { pid, port } = await startServer(4);
    expect(await httpGet(port, PATH)).toEqual({ status: 200, body: V1 });
    const before = executableMappings(pid);
    const load = await startLoad(loadBin, { port, path: PATH, versions: { v1: V1, v2: V2 }, keepAlive: 8, fresh: 4, intervalUs: 1000 });
    loads.push(load);
    await new Promise((r) => setTimeout(r, 100));

    const pauses: number[] = [];
    const revertPauses: number[] = [];
    const applyMs: number[] = [];
    const revertMs: number[] = [];
    let seenNew = 0; // cycles in which the load itself got version 2
    let scanned = 0; // applies whose stop the tracer's scan proved safe
    let last = await load.snapshot();
    for (let i = 0; i < CYCLES; i++) {
      const t0 = performance.now();
      const a = await applyPatch(pid, pkg, { core, timeoutMs: 5000 });
      applyMs.push(performance.now() - t0);
      expect(a.functions.map((f) => f.name)).toEqual(["render_reply"]);
      pauses.push(a.pauseNs);
      scanned += a.provenBy === "scan" ? 1 : 0;
      expect(await httpGet(port, PATH)).toEqual({ status: 200, body: V2 });
      await new Promise((r) => setTimeout(r, 10));
      const mid = await load.snapshot();
      if (mid.versions.v2 > last.versions.v2) seenNew++;
      const t1 = performance.now();
      const rv = await revertPatch(pid, pkg.model.patchId, { core, timeoutMs: 5000 });
      revertMs.push(performance.now() - t1);
      expect(rv.reverted.map((x) => x.patchId)).toEqual([pkg.model.patchId]);
      revertPauses.push(rv.pauseNs);
      expect(await httpGet(port, PATH)).toEqual({ status: 200, body: V1 });
      await new Promise((r) => setTimeout(r, 10));
      last = await load.snapshot();
      expect(last.failures, last.firstFailure).toBe(0);
    }
    await new Promise((r) => setTimeout(r, 100));
    const r = await load.stop();
    const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
    const ms = (ns: number) => (ns / 1e6).toFixed(2);
    process.stderr.write(
      `apply-server: ${CYCLES} cycles, ${r.requests} requests (${r.connections} connections) in ${r.elapsedMs} ms: ${JSON.stringify(r.versions)}, failures ${r.failures}, ` +
        `max latency ${(r.maxLatencyUs / 1000).toFixed(2)} ms; apply pause median ${ms(sorted(pauses)[CYCLES >> 1])} ms max ${ms(sorted(pauses)[CYCLES - 1])} ms, ` +
        `revert pause median ${ms(sorted(revertPauses)[CYCLES >> 1])} ms max ${ms(sorted(revertPauses)[CYCLES - 1])} ms, applyPatch median ${sorted(applyMs)[CYCLES >> 1].toFixed(1)} ms, revertPatch median ${sorted(revertMs)[CYCLES >> 1].toFixed(1)} ms; ` +
        `load saw version 2 in ${seenNew}/${CYCLES} cycles; applies proven safe by the tracer's scan ${scanned}/${CYCLES}\n`,
    );
    expect(r.failures, r.firstFailure).toBe(0);
    expect(r.requests).toBe(r.versions.v1 + r.versions.v2);
    expect(r.versions.v1).toBeGreaterThan(0);
    expect(r.versions.v2).toBeGreaterThan(0);
    expect(r.requests).toBeGreaterThan(CYCLES * 10);

    // Still serving, the old version, nothing of the patch left.
    expect(alive(pid)).toBe(true);
    // Threads blocked in accept4, epoll_wait, read and write through 200 stops: no EINTR.
    expect(await httpGet(port, "/_eintr")).toEqual({ status: 200, body: "eintr 0\n" });
    expect(await httpGet(port, PATH)).toEqual({ status: 200, body: V1 });
    expect((await readStatus(pid, { core })).patches).toEqual([]);
    expect(executableMappings(pid)).toEqual(before);
  }, 300_000);
});
