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
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../src/cli/main.js";
import { nodeCore } from "../src/node/core-file.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { Scratch } from "./helpers/gcc.js";
import { alive, compileLoad, executableMappings, httpGet, killPids, removePerfMaps, spawnQuiet, startLoad, type Load, SERVER_FIXTURES } from "./fixtures/server/harness.js";

const core = nodeCore();
const scratch = new Scratch();
const CYCLES = 100;
const FLAGS = ["-O2", "-g", "-Wall", "-Werror", "-fPIE", "-ffunction-sections", "-fdata-sections", "-pthread"];
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
  // The two builds: same file names in old/ and new/, compiled from there (the objects
  // name their source as "reply.c"); only reply.c differs.
  for (const v of ["old", "new"]) {
    fs.mkdirSync(scratch.path(v));
    fs.copyFileSync(path.join(SERVER_FIXTURES, "server.c"), scratch.path(`${v}/server.c`));
    const reply = fs.readFileSync(path.join(SERVER_FIXTURES, "reply.c"), "utf8");
    const text = v === "old" ? reply : reply.replace('"server version 1: ', '"server version 2: ');
    expect(text).toContain(v === "old" ? "server version 1" : "server version 2");
    fs.writeFileSync(scratch.path(`${v}/reply.c`), text);
    execFileSync("gcc", [...FLAGS, "-c", "server.c", "reply.c"], { cwd: scratch.path(v), stdio: ["ignore", "pipe", "pipe"] });
  }
  server = scratch.path("server");
  execFileSync("gcc", ["-pie", "-pthread", "-Wl,--build-id", "old/server.o", "old/reply.o", "-o", server], { cwd: scratch.dir });
  for (const v of ["old", "new"]) for (const f of ["server.c", "reply.c"]) fs.rmSync(scratch.path(`${v}/${f}`));
  packageFile = scratch.path("fix.patch");
  let err = "";
  const code = await main(["build", "--orig", scratch.path("old"), "--patched", scratch.path("new"), "--target", server, "-o", packageFile], {
    out: () => {},
    err: (t) => void (err += t),
    isTTY: false,
  });
  expect(code, err).toBe(0);
  pkg = readPackageFile(core, packageFile);
  loadBin = compileLoad(scratch.dir);
}, 120_000);

afterEach(() => {
  for (const l of loads.splice(0)) l.kill();
  const pids = started.splice(0);
  killPids(pids);
  removePerfMaps(pids);
});
afterAll(() => scratch.remove());

/** Starts the server on a free port with `workers` worker threads. */
async function startServer(workers: number): Promise<{ pid: number; port: number }> {
  const child = spawnQuiet(server, ["0", String(workers)]);
  started.push(child.pid!);
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("\n")) resolve(out.split("\n")[0]);
    });
    child.on("exit", (c) => reject(new Error(`server exited with ${c}`)));
  });
  const m = /^listening (\d+)$/.exec(line);
  if (!m) throw new Error(`server: ${line}`);
  return { pid: child.pid!, port: Number(m[1]) };
}

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
    let last = await load.snapshot();
    for (let i = 0; i < CYCLES; i++) {
      const t0 = performance.now();
      const a = await applyPatch(pid, pkg, { core, timeoutMs: 5000 });
      applyMs.push(performance.now() - t0);
      expect(a.functions.map((f) => f.name)).toEqual(["render_reply"]);
      pauses.push(a.pauseNs);
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
        `load saw version 2 in ${seenNew}/${CYCLES} cycles\n`,
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
