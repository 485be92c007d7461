// Several fixture servers under load, patched with `patchc apply --all SERVER FILE` (every
// process running that build, found by build-id) and taken back with `patchc revert PID
// PATCH-ID`, through the CLI's own code (main(), --json), while a load generator per
// server keeps its connections busy: the CLI side of test/apply-server.test.ts.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { patchc } from "./helpers/apply.js";
import { Scratch } from "./helpers/gcc.js";
import { alive, buildServerFixture, compileLoad, executableMappings, httpGet, type Load, startFixtureServer, startLoad, stopStarted } from "./fixtures/server/harness.js";

const scratch = new Scratch();
const SERVERS = 3;
const CYCLES = 20;
const PATH = "/cli";
const V1 = `server version 1: ${PATH}\n`;
const V2 = `server version 2: ${PATH}\n`;

let server: string;
let packageFile: string;
let loadBin: string;
const started: number[] = [];
const loads: Load[] = [];

beforeAll(async () => {
  ({ server, packageFile } = await buildServerFixture(scratch));
  loadBin = compileLoad(scratch.dir);
}, 120_000);

afterEach(() => stopStarted(started, loads));
afterAll(() => scratch.remove());

describe("patchc apply --all / revert on servers under load", () => {
  it(`${CYCLES} cycles over ${SERVERS} servers: every one patched and unpatched, zero failed requests`, async () => {
    const servers: Array<{ pid: number; port: number }> = [];
    for (let i = 0; i < SERVERS; i++) servers.push(await startFixtureServer(server, 2, started));
    const pids = servers.map((s) => s.pid).sort((a, b) => a - b);
    const before = pids.map(executableMappings);
    for (const s of servers) {
      const load = await startLoad(loadBin, { port: s.port, path: PATH, versions: { v1: V1, v2: V2 }, keepAlive: 3, fresh: 1, intervalUs: 2000 });
      loads.push(load);
    }
    const answers = async () => Promise.all(servers.map(async (s) => (await httpGet(s.port, PATH)).body));
    expect(await answers()).toEqual(servers.map(() => V1));

    for (let i = 0; i < CYCLES; i++) {
      const a = await patchc("apply", "--all", server, packageFile, "--json");
      expect(a.code, a.err + a.out).toBe(0);
      const outcomes = JSON.parse(a.out) as Array<{ pid: number; ok: boolean; report?: { patchId: string; functions: Array<{ name: string }> } }>;
      expect(outcomes.map((o) => o.pid).sort((x, y) => x - y)).toEqual(pids);
      for (const o of outcomes) {
        expect(o.ok, JSON.stringify(o)).toBe(true);
        expect(o.report!.patchId).toBe("fix");
        expect(o.report!.functions.map((f) => f.name)).toEqual(["render_reply"]);
      }
      expect(await answers()).toEqual(servers.map(() => V2));
      await new Promise((r) => setTimeout(r, 20));
      for (const pid of pids) {
        const r = await patchc("revert", String(pid), "fix", "--json");
        expect(r.code, r.err + r.out).toBe(0);
        expect((JSON.parse(r.out) as { reverted: Array<{ patchId: string }> }).reverted.map((x) => x.patchId)).toEqual(["fix"]);
      }
      expect(await answers()).toEqual(servers.map(() => V1));
      await new Promise((r) => setTimeout(r, 20));
    }

    const reports = [];
    for (const l of loads) reports.push(await l.stop());
    process.stderr.write(`apply-server-cli: ${CYCLES} cycles over ${SERVERS} servers: ${reports.map((r) => `${JSON.stringify(r.versions)} failures ${r.failures}`).join("; ")}\n`);
    for (const r of reports) {
      expect(r.failures, r.firstFailure).toBe(0);
      expect(r.versions.v1).toBeGreaterThan(0);
      expect(r.versions.v2).toBeGreaterThan(0);
    }
    for (const pid of pids) {
      expect(alive(pid)).toBe(true);
      const s = await patchc("status", String(pid), "--json");
      expect(s.code, s.err).toBe(0);
      expect((JSON.parse(s.out) as { patches: unknown[] }).patches).toEqual([]);
    }
    expect(pids.map(executableMappings)).toEqual(before);
    expect(await answers()).toEqual(servers.map(() => V1));
    for (const s of servers) expect(await httpGet(s.port, "/_eintr")).toEqual({ status: 200, body: "eintr 0\n" });
  }, 180_000);
});
