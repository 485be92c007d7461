// The real program under load, patched live (issue 6, the last test): nginx 1.22.1 from
// Debian 12 (test/real-nginx.test.ts, docs/real-program.md), a master process and two
// workers, started from the original build; the package is made by the real `patchc
// build --source` from Debian's own fix of CVE-2026-42945 (one function,
// ngx_http_script_regex_end_code). The reproducer tells the versions apart over HTTP:
// GET /x%26y answers "/x%2" from the old code and "/x&y" from the fixed one.
//
// Applied to every nginx process (master and workers, one applyPatch per pid), the
// reproducer shows the fix; reverted, the old behaviour. A worker the patched master
// forks later (one replaced after it died) runs the fix too. Then 100 apply/revert cycles
// while a load generator (test/fixtures/server/load.c) sends the reproducer on
// keep-alive connections and on connections opened per request: zero failed requests,
// both versions seen by the load, nginx serving afterwards with nothing of the patch left.
//
// Slow the first time (two nginx builds); with the original build cached
// (PATCHC_TEST_CACHE, /var/cache/patchc-test), the fixed build and the cycles.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { nodeCore } from "../src/node/core-file.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { Scratch } from "./helpers/gcc.js";
import { masterWorkersConfig, NGINX_FIXED_FUNCTION, nginxFixPackage, type NginxFix } from "./helpers/nginx.js";
import { alive, childrenOf, compileLoad, connects, executableMappings, freePort, httpGet, type Load, spawnQuiet, startLoad, stopStarted } from "./fixtures/server/harness.js";

const core = nodeCore();
const scratch = new Scratch();
const CYCLES = 100;
const WORKERS = 2;
const REPRODUCER = "/x%26y";
const OLD = "/x%2";
const FIXED = "/x&y";

let fix: NginxFix;
let pkg: ReadPackage;
let loadBin: string;
const started: number[] = [];
const loads: Load[] = [];

beforeAll(async () => {
  const t0 = Date.now();
  fix = await nginxFixPackage(scratch.path("nginx"), (l) => process.stderr.write(`real-nginx-apply: ${l}\n`));
  process.stderr.write(`real-nginx-apply: package in ${((Date.now() - t0) / 1000).toFixed(1)} s (${fix.cached ? "both builds from the cache" : "built"})\n`);
  pkg = readPackageFile(core, fix.packageFile);
  loadBin = compileLoad(scratch.dir);
}, 40 * 60_000);

afterEach(() => stopStarted(started, loads));
afterAll(() => scratch.remove());

interface Nginx {
  port: number;
  master: number;
  workers: number[];
  /** master first */
  pids: number[];
}

/** nginx from the original build: a master and WORKERS workers, in the foreground. */
async function startNginx(): Promise<Nginx> {
  const port = await freePort();
  const prefix = scratch.path(`prefix-${port}`);
  fs.mkdirSync(path.join(prefix, "logs"), { recursive: true });
  fs.mkdirSync(path.join(prefix, "tmp"), { recursive: true });
  const conf = path.join(prefix, "nginx.conf");
  fs.writeFileSync(conf, masterWorkersConfig(port, prefix, WORKERS));
  execFileSync(fix.target, ["-t", "-p", prefix, "-c", conf], { stdio: "pipe" });
  const child = spawnQuiet(fix.target, ["-p", prefix, "-c", conf]);
  const master = child.pid!;
  started.push(master);
  for (let i = 0; i < 400; i++) {
    const workers = childrenOf(master);
    for (const w of workers) if (!started.includes(w)) started.push(w);
    if (workers.length === WORKERS && (await connects(port))) return { port, master, workers, pids: [master, ...workers] };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nginx did not start on ${port} with ${WORKERS} workers: ${fs.readFileSync(path.join(prefix, "logs", "error.log"), "utf8")}`);
}

/** Several requests on new connections (any worker may accept each): every answer. */
async function answers(port: number, n = 8): Promise<string[]> {
  const out = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await httpGet(port, REPRODUCER);
    out.add(`${r.status} ${r.body}`);
  }
  return [...out];
}

/** How each stop of the applies was shown safe (ApplyReport.provenBy), over the file. */
const provenBy = { scan: 0, unwind: 0 };

async function applyAll(n: Nginx): Promise<number[]> {
  const pauses: number[] = [];
  for (const pid of n.pids) {
    const a = await applyPatch(pid, pkg, { core, timeoutMs: 5000 });
    expect(a.functions.map((f) => f.name)).toEqual([NGINX_FIXED_FUNCTION]);
    pauses.push(a.pauseNs);
    provenBy[a.provenBy]++;
  }
  return pauses;
}

async function revertAll(n: Nginx): Promise<number[]> {
  const pauses: number[] = [];
  for (const pid of n.pids) {
    const r = await revertPatch(pid, pkg.model.patchId, { core, timeoutMs: 5000 });
    expect(r.reverted.map((x) => x.patchId)).toEqual([pkg.model.patchId]);
    pauses.push(r.pauseNs);
  }
  return pauses;
}

describe("nginx (master and workers) patched live with its Debian fix of CVE-2026-42945", () => {
  it("the package from patchc build --source replaces exactly the fixed function", () => {
    expect(pkg.model.patchId).toBe("cve-2026-42945");
    expect(pkg.model.functions.map((f) => `${f.kind} ${f.name}`)).toEqual([`replace ${NGINX_FIXED_FUNCTION}`]);
  });

  it("applied to every process, the reproducer shows the fix; reverted, the old behaviour", async () => {
    const n = await startNginx();
    const before = n.pids.map(executableMappings);
    expect(await answers(n.port)).toEqual([`200 ${OLD}`]);
    await applyAll(n);
    expect(await answers(n.port)).toEqual([`200 ${FIXED}`]);
    for (const pid of n.pids) {
      const s = await readStatus(pid, { core });
      expect(s.patches.map((p) => `${p.patchId} ${p.state} ${p.functions.map((f) => `${f.name}${f.current ? "" : " (not current)"}`).join(",")}`)).toEqual([`${pkg.model.patchId} active ${NGINX_FIXED_FUNCTION}`]);
    }
    await revertAll(n);
    expect(await answers(n.port)).toEqual([`200 ${OLD}`]);
    for (const pid of n.pids) expect((await readStatus(pid, { core })).patches).toEqual([]);
    expect(n.pids.map(executableMappings)).toEqual(before);
  });

  it("a worker forked by the patched master runs the fix (the patch comes with the fork), and reverts like the others", async () => {
    const n = await startNginx();
    await applyAll(n);
    // The master replaces a worker that dies: a fork of the master, after the apply.
    const [gone, kept] = n.workers;
    process.kill(gone, "SIGKILL");
    let fresh: number | undefined;
    for (let i = 0; i < 400 && fresh === undefined; i++) {
      await new Promise((r) => setTimeout(r, 25));
      const now = childrenOf(n.master);
      for (const w of now) if (!started.includes(w)) started.push(w);
      if (now.length === WORKERS && !now.includes(gone)) fresh = now.find((w) => w !== kept);
    }
    expect(fresh, "the master started no new worker").toBeDefined();
    const s = await readStatus(fresh!, { core });
    expect(s.patches.map((p) => `${p.patchId} ${p.state}`)).toEqual([`${pkg.model.patchId} active`]);
    expect(await answers(n.port, 16)).toEqual([`200 ${FIXED}`]);
    const now: Nginx = { port: n.port, master: n.master, workers: [kept, fresh!], pids: [n.master, kept, fresh!] };
    await revertAll(now);
    expect(await answers(n.port, 16)).toEqual([`200 ${OLD}`]);
    for (const pid of now.pids) expect((await readStatus(pid, { core })).patches).toEqual([]);
  });

  it(`${CYCLES} apply/revert cycles under load: zero failed requests, both versions serving`, async () => {
    const n = await startNginx();
    const before = n.pids.map(executableMappings);
    const load = await startLoad(loadBin, { port: n.port, path: REPRODUCER, versions: { old: OLD, fixed: FIXED }, keepAlive: 6, fresh: 2, intervalUs: 1000 });
    loads.push(load);
    await new Promise((r) => setTimeout(r, 100));
    const applyPauses: number[] = [];
    const revertPauses: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < CYCLES; i++) {
      applyPauses.push(...(await applyAll(n)));
      await new Promise((r) => setTimeout(r, 10));
      revertPauses.push(...(await revertAll(n)));
      await new Promise((r) => setTimeout(r, 10));
      if (i % 10 === 9) {
        const s = await load.snapshot();
        expect(s.failures, s.firstFailure).toBe(0);
      }
    }
    const cyclesMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 100));
    const r = await load.stop();
    const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
    const ms = (ns: number) => (ns / 1e6).toFixed(2);
    const mid = (xs: number[]) => ms(sorted(xs)[xs.length >> 1]);
    const max = (xs: number[]) => ms(sorted(xs)[xs.length - 1]);
    process.stderr.write(
      `real-nginx-apply: ${CYCLES} cycles over ${n.pids.length} processes in ${(cyclesMs / 1000).toFixed(1)} s; ${r.requests} requests (${r.connections} connections): ` +
        `${JSON.stringify(r.versions)}, failures ${r.failures}, max latency ${(r.maxLatencyUs / 1000).toFixed(2)} ms; ` +
        `pause per process: apply median ${mid(applyPauses)} ms max ${max(applyPauses)} ms, revert median ${mid(revertPauses)} ms max ${max(revertPauses)} ms; ` +
        `applies proven safe by the tracer's scan ${provenBy.scan}, by unwinding ${provenBy.unwind}\n`,
    );
    expect(r.failures, r.firstFailure).toBe(0);
    expect(r.requests).toBe(r.versions.old + r.versions.fixed);
    expect(r.versions.old).toBeGreaterThan(0);
    expect(r.versions.fixed).toBeGreaterThan(0);
    expect(r.requests).toBeGreaterThan(CYCLES * 10);

    // Serving afterwards, with the same processes, the old code and nothing of the patch left.
    for (const pid of n.pids) expect(alive(pid), `nginx process ${pid}`).toBe(true);
    expect(childrenOf(n.master)).toEqual(n.workers);
    expect(await answers(n.port)).toEqual([`200 ${OLD}`]);
    for (const pid of n.pids) expect((await readStatus(pid, { core })).patches).toEqual([]);
    expect(n.pids.map(executableMappings)).toEqual(before);
  }, 240_000);
});
