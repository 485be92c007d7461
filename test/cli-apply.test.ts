// `patchc apply | revert | status`: the command lines planned (pure functions), the reports
// formatted for people and for tools, and the exit codes, without touching a process.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import { availableParallelism } from "node:os";
import { main } from "../src/cli/main.js";
import { commands } from "../src/cli/commands.js";
import { parseArgs, type ParsedArgs } from "../src/cli/options.js";
import type { Output } from "../src/cli/command.js";
import { applyCommandWith, duration, formatAllSummary, formatApply, formatProgress, planApply, toJson, type ApplyLibrary } from "../src/cli/apply-command.js";
import { formatRevert, planRevert, revertCommandWith } from "../src/cli/revert-command.js";
import { formatStatus, statusCommandWith } from "../src/cli/status-command.js";
import { ApplyError } from "../src/apply/errors.js";
import type { ApplyReport, RevertReport, StatusReport } from "../src/apply/contract.js";
import type { ProcessOutcome } from "../src/apply/all.js";
import { Scratch } from "./helpers/gcc.js";
import { nodeCore } from "../src/node/core-file.js";
import { buildFixture } from "./helpers/package-fixture.js";
import { writePackageFile } from "../src/format/writer.js";

const specs = commands.map((c) => c.spec);
const parse = (...argv: string[]): ParsedArgs => parseArgs(argv, specs);

function sink(isTTY = false): Output & { text: () => { out: string; err: string } } {
  let out = "";
  let err = "";
  return { out: (t) => void (out += t), err: (t) => void (err += t), isTTY, text: () => ({ out, err }) };
}

async function patchc(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = sink();
  const code = await main(argv, io);
  return { code, ...io.text() };
}

const REPORT: ApplyReport = {
  pid: 4242,
  patchId: "fix-2",
  hash: "3f2a9c0d81b4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e",
  module: { path: "/usr/sbin/server", buildId: "0123456789abcdef0123456789abcdef01234567", bias: 0x55d0c7a00000n },
  region: { base: 0x7f12a4000000n, size: 8192n, name: "/memfd:patchc:fix-2 (deleted)", memfd: true },
  functions: [
    { name: "parse", site: 0x55d0c7a01234n, newAddr: 0x7f12a4001040n, newSize: 90n },
    { name: "check_header", site: 0x55d0c7a01300n, newAddr: 0x7f12a40010a0n, newSize: 0x120n, previous: "fix-1" },
  ],
  consistency: "function",
  pauseNs: 123_456,
  pauseTotalNs: 123_456,
  attempts: 1,
  waitedNs: 0,
  provenBy: "scan",
  totalNs: 12_345_678,
};

describe("planning", () => {
  it("plans apply PID FILE with its defaults and options", () => {
    expect(planApply(parse("apply", "4242", "fix.patch"))).toEqual({ mode: "one", pid: 4242, file: "fix.patch", consistency: "function", timeoutMs: undefined, requireSigned: undefined, json: false });
    expect(planApply(parse("apply", "--consistency=entry", "--timeout", "250", "--require-signed", "k.pem", "--json", "7", "f"))).toEqual({
      mode: "one",
      pid: 7,
      file: "f",
      consistency: "entry",
      timeoutMs: 250,
      requireSigned: "k.pem",
      json: true,
    });
    expect(planApply(parse("apply", "--all", "/usr/sbin/nginx", "fix.patch", "--jobs", "3"))).toMatchObject({ mode: "all", binary: "/usr/sbin/nginx", file: "fix.patch", jobs: 3 });
    expect(planApply(parse("apply", "--all", "/lib/libc.so.6", "f"))).toMatchObject({ mode: "all", jobs: availableParallelism(), consistency: "function" });
  });

  it("refuses a wrong apply command line, saying what is wrong", () => {
    const bad = (...argv: string[]) => () => planApply(parse("apply", ...argv));
    expect(bad("abc", "f")).toThrow("`patchc apply`: abc is not a process id (a positive integer)");
    expect(bad("0", "f")).toThrow(/0 is not a process id/);
    expect(bad("-5", "f")).toThrow(/unknown option -5/);
    expect(bad("12")).toThrow("`patchc apply` needs PID FILE (or --all BINARY FILE)");
    expect(bad("--all", "bin")).toThrow("`patchc apply --all` needs BINARY FILE");
    expect(bad("--consistency=loose", "1", "f")).toThrow("--consistency loose: give one of function, entry");
    expect(bad("--timeout", "-1", "1", "f")).toThrow("--timeout -1: not a time in milliseconds (a positive integer)");
    expect(bad("--timeout", "1.5", "1", "f")).toThrow(/not a time in milliseconds/);
    expect(bad("--jobs", "2", "1", "f")).toThrow("--jobs goes with --all");
    expect(bad("--all", "--jobs", "0", "b", "f")).toThrow(/--jobs 0: not a count of processes/);
    expect(bad("1", "f", "g")).toThrow(/too many arguments/);
  });

  it("plans revert PID (PATCH-ID | --all)", () => {
    expect(planRevert(parse("revert", "12", "fix-1"))).toEqual({ pid: 12, which: "fix-1", all: false, timeoutMs: undefined, json: false });
    expect(planRevert(parse("revert", "--all", "12", "--json", "--timeout", "100"))).toEqual({ pid: 12, which: "all", all: true, timeoutMs: 100, json: true });
    const bad = (...argv: string[]) => () => planRevert(parse("revert", ...argv));
    expect(bad("12")).toThrow("`patchc revert PID` needs PATCH-ID (see `patchc status PID`) or --all");
    expect(bad("12", "fix-1", "--all")).toThrow("give PATCH-ID or --all, not both");
    expect(bad("x1", "fix-1")).toThrow(/x1 is not a process id/);
  });
});

describe("output", () => {
  it("says for people what was patched, where, and how long the target was stopped", () => {
    expect(formatApply(REPORT)).toBe(
      [
        "process 4242: applied fix-2 (3f2a9c0d81b4) to /usr/sbin/server (build-id 0123456789abcdef)",
        "  parse         0x55d0c7a01234 -> 0x7f12a4001040 (90 bytes)",
        "  check_header  0x55d0c7a01300 -> 0x7f12a40010a0 (288 bytes, over fix-1)",
        'region 0x7f12a4000000 (8 KiB) "/memfd:patchc:fix-2 (deleted)" (memfd)',
        "target stopped for 123 us; total 12.3 ms",
        "",
      ].join("\n"),
    );
    const entry = formatApply({ ...REPORT, consistency: "entry", attempts: 3, pauseNs: 80_000, pauseTotalNs: 300_000, waitedNs: 41_000_000, region: { ...REPORT.region, memfd: false } });
    expect(entry).toContain("consistency entry: calls already running in these functions finish in the old code; new calls run the new code\n");
    expect(entry).toContain('region 0x7f12a4000000 (8 KiB) "/memfd:patchc:fix-2 (deleted)" (anonymous: memfd execution refused)\n');
    expect(formatApply({ ...REPORT, region: { ...REPORT.region, name: "", memfd: false } })).toContain("region 0x7f12a4000000 (8 KiB) (anonymous: memfd execution refused)\n");
    expect(entry).toContain("target stopped for 80 us (3 attempts: stopped 300 us in all, waited 41.0 ms for threads to leave); total 12.3 ms");
    expect(formatApply(REPORT)).not.toContain("consistency");
  });

  it("writes durations people read at a glance", () => {
    expect([46_300, 5_120, 999_499, 1_234_000, 45_670_000, 2_345_000_000].map(duration)).toEqual(["46 us", "5.1 us", "999 us", "1.23 ms", "45.7 ms", "2.35 s"]);
  });

  it("gives tools the report as JSON, addresses as hex strings", () => {
    const j = JSON.parse(toJson(REPORT));
    expect(j.functions[1]).toEqual({ name: "check_header", site: "0x55d0c7a01300", newAddr: "0x7f12a40010a0", newSize: "0x120", previous: "fix-1" });
    expect(j.region).toEqual({ base: "0x7f12a4000000", size: "0x2000", name: "/memfd:patchc:fix-2 (deleted)", memfd: true });
    expect(j.module.bias).toBe("0x55d0c7a00000");
    expect(j.pauseNs).toBe(123456);
  });

  it("formats a revert", () => {
    const r: RevertReport = {
      pid: 9,
      reverted: [
        { patchId: "fix-2", functions: ["parse", "check"], freed: true },
        { patchId: "fix-1", functions: ["loop"], freed: false },
      ],
      pauseNs: 51_000,
      totalNs: 3_000_000,
    };
    expect(formatRevert(r)).toBe(
      "process 9: reverted fix-2 (parse, check); its memory freed\n" +
        "process 9: reverted fix-1 (loop); its memory kept, marked retired: a frame may still be in it (see patchc status)\n" +
        "target stopped for 51 us; total 3.00 ms\n",
    );
  });

  it("formats a status: every patch, its state, its functions current or superseded", () => {
    const s: StatusReport = {
      pid: 77,
      patches: [
        {
          patchId: "fix-1",
          hash: "aaaaaaaaaaaabbbb",
          state: "active",
          module: { path: "/srv/app", buildId: "00112233445566778899" },
          region: { base: 0x7f0000000000n, size: 4096n },
          appliedAt: new Date("2026-11-27T08:01:02.345Z"),
          functions: [
            { name: "parse", site: 0x401000n, newAddr: 0x7f0000000100n, current: false },
            { name: "run", site: 0x401100n, newAddr: 0x7f0000000200n, current: true },
          ],
        },
        {
          patchId: "fix-2",
          hash: "ccccccccccccdddd",
          state: "retired",
          module: { path: "/srv/app", buildId: "00112233445566778899" },
          region: { base: 0x7f0000100000n, size: 12288n },
          appliedAt: new Date("2026-11-27T08:05:00Z"),
          functions: [{ name: "parse", site: 0x401000n, newAddr: 0x7f0000100100n, previous: "fix-1", current: true }],
        },
      ],
    };
    expect(formatStatus(s)).toBe(
      [
        "process 77: 2 patches",
        "fix-1  aaaaaaaaaaaa  active   /srv/app (build-id 0011223344556677)  region 0x7f0000000000 (4 KiB)  applied 2026-11-27 08:01:02 UTC",
        "  parse  0x401000 -> 0x7f0000000100  superseded by fix-2",
        "  run    0x401100 -> 0x7f0000000200  current",
        "fix-2  cccccccccccc  retired  /srv/app (build-id 0011223344556677)  region 0x7f0000100000 (12 KiB)  applied 2026-11-27 08:05:00 UTC",
        "  parse  0x401000 -> 0x7f0000100100  current (over fix-1)",
        "",
      ].join("\n"),
    );
    expect(formatStatus({ pid: 5, patches: [] })).toBe("process 5: no patches applied\n");
    // What the library could not read is said, not hidden.
    const damaged = "region at 0x7f0000200000 (/memfd:patchc:x (deleted)): header version 9 is not 1";
    expect(formatStatus({ pid: 5, patches: [], problems: [damaged] } as StatusReport)).toBe(`process 5: no patches applied\nproblem: ${damaged}\n`);
    expect(formatStatus({ ...s, problems: [damaged] } as StatusReport).endsWith(`  parse  0x401000 -> 0x7f0000100100  current (over fix-1)\nproblem: ${damaged}\n`)).toBe(true);
    expect(JSON.parse(toJson(s)).patches[0].appliedAt).toBe("2026-11-27T08:01:02.345Z");
  });

  it("summarises --all: counts, each failure with its reason, time per process, what was not touched", () => {
    const id = { path: "/usr/sbin/server", buildId: "0123456789abcdef0123", dev: "fe:00", inode: 1, executable: true };
    const outcomes: ProcessOutcome[] = [
      { pid: 10, ok: true, report: { ...REPORT, pid: 10, pauseNs: 100_000 }, ms: 4 },
      { pid: 11, ok: false, error: { code: "BUSY", subject: "process 11, function parse", reason: "thread 12 stayed in parse until the timeout (5000 ms)", tid: 12 }, ms: 5000, gone: false },
      { pid: 13, ok: true, report: { ...REPORT, pid: 13, pauseNs: 300_000 }, ms: 6 },
      { pid: 14, ok: false, error: { code: "NO_PROCESS", subject: "process 14", reason: "no such process", tid: 0 }, ms: 1, gone: true },
    ];
    const text = formatAllSummary({ patchId: "fix-2" }, id, { matches: [], excluded: [{ pid: 1, why: "ancestor" }], unreadable: [5, 6], scanned: 50 }, outcomes, 5_010_000_000);
    expect(text).toBe(
      [
        "fix-2 on 4 processes with /usr/sbin/server (build-id 0123456789abcdef): 2 patched, 1 failed, 1 exited meanwhile",
        "       10  patched  stopped 100 us, 4.00 ms",
        "       11  failed   function parse: thread 12 stayed in parse until the timeout (5000 ms) [BUSY]",
        "       13  patched  stopped 300 us, 6.00 ms",
        "       14  exited   no such process [NO_PROCESS]",
        "total 5.01 s, 1.25 s per process (each apply: median 5.00 ms, max 5.00 s); target stopped: median 200 us, max 300 us",
        "not touched: 1 (an ancestor of patchc)",
        "not readable (another user's, not permitted): 2 processes",
        "",
      ].join("\n"),
    );
    // Many processes: no line each, but every failure still with its reason.
    const many: ProcessOutcome[] = Array.from({ length: 30 }, (_, i) =>
      i === 7
        ? { pid: 107, ok: false, error: { code: "TARGET_GONE", subject: "process 107", reason: "the process called exec during the apply", tid: 0 }, ms: 3, gone: false }
        : { pid: 100 + i, ok: true, report: { ...REPORT, pid: 100 + i }, ms: 2 },
    );
    const manyText = formatAllSummary({ patchId: "fix-2" }, id, { matches: [], excluded: [], unreadable: [], scanned: 50 }, many, 30_000_000);
    expect(manyText.split("\n")).toEqual([
      "fix-2 on 30 processes with /usr/sbin/server (build-id 0123456789abcdef): 29 patched, 1 failed",
      "failed: process 107: the process called exec during the apply [TARGET_GONE]",
      "total 30.0 ms, 1.00 ms per process (each apply: median 2.00 ms, max 3.00 ms); target stopped: median 123 us, max 123 us",
      "",
    ]);
    expect(formatAllSummary({ patchId: "p" }, id, { matches: [], excluded: [], unreadable: [], scanned: 9 }, [], 1e6)).toBe("no process runs or has loaded /usr/sbin/server (build-id 0123456789abcdef): nothing to patch\n");
    expect(formatProgress("fix-2", { total: 40, done: 12, patched: 11, failed: 1 })).toBe("applying fix-2: 12/40 processes, 11 patched, 1 failed");
  });
});

describe("running, exit codes", () => {
  const scratch = new Scratch();
  let good: string;
  beforeAll(() => {
    const core = nodeCore();
    const f = buildFixture(core);
    good = scratch.path("fix-1.patch");
    writePackageFile(good, f.model);
    f.scratch.remove();
  });
  afterAll(() => scratch.remove());

  const refusing: ApplyLibrary = {
    applyPatch: async (pid) => {
      throw new ApplyError("SITE_MISMATCH", `process ${pid}, function table_switch`, "the site holds other bytes than the package expects (e8 00 00 00 00)");
    },
    revertPatch: async (pid) => {
      throw new ApplyError("OUT_OF_ORDER", `process ${pid}, function parse`, "fix-2 stacks on fix-1: revert fix-2 first");
    },
    readStatus: async (pid) => ({ pid, patches: [] }),
  };

  it("a refusal: one line naming the process, the function and the reason, exit 1; with --json also the error as JSON", async () => {
    const cmd = applyCommandWith(refusing);
    let io = sink();
    expect(await cmd.run(parse("apply", String(process.pid), good), io)).toBe(1);
    expect(io.text()).toEqual({ out: "", err: `patchc: process ${process.pid}, function table_switch: the site holds other bytes than the package expects (e8 00 00 00 00) [SITE_MISMATCH]\n` });
    io = sink();
    expect(await cmd.run(parse("apply", "--json", String(process.pid), good), io)).toBe(1);
    expect(JSON.parse(io.text().out)).toEqual({
      error: { code: "SITE_MISMATCH", subject: `process ${process.pid}, function table_switch`, reason: "the site holds other bytes than the package expects (e8 00 00 00 00)", tid: 0 },
    });
    io = sink();
    expect(await revertCommandWith(refusing).run(parse("revert", String(process.pid), "fix-1"), io)).toBe(1);
    expect(io.text().err).toBe(`patchc: process ${process.pid}, function parse: fix-2 stacks on fix-1: revert fix-2 first [OUT_OF_ORDER]\n`);
    io = sink();
    expect(await statusCommandWith(refusing).run(parse("status", String(process.pid)), io)).toBe(0);
    expect(io.text().out).toBe(`process ${process.pid}: no patches applied\n`);
  });

  it("usage errors exit 2; a bad or missing package exits 1 naming the file, before any process is looked at", async () => {
    expect((await patchc("apply", "12x", good)).code).toBe(2);
    expect((await patchc("revert", "1")).code).toBe(2);
    expect((await patchc("status")).code).toBe(2);
    let r = await patchc("apply", "1", scratch.path("missing.patch"));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^patchc: ${scratch.path("missing.patch")}: cannot read the package: ENOENT`));
    const truncated = scratch.path("truncated.patch");
    fs.writeFileSync(truncated, fs.readFileSync(good).subarray(0, 300));
    r = await patchc("apply", "1", truncated);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^patchc: ${truncated}: `));
    expect(r.err.split("\n").length).toBe(2); // one line
    const key = scratch.path("key.pem");
    const { generateKeyPairSync } = await import("node:crypto");
    fs.writeFileSync(key, generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }));
    r = await patchc("apply", "--require-signed", key, "1", good);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^patchc: ${good}: refused: a signature by ${key} is required`));
  });

  it("a dead PID exits 1 naming the process", async () => {
    const { spawnSync } = await import("node:child_process");
    const dead = spawnSync("true").pid!;
    const r = await patchc("apply", String(dead), good);
    expect(r).toEqual({ code: 1, out: "", err: `patchc: process ${dead}: no such process [NO_PROCESS]\n` });
    expect((await patchc("status", String(dead))).code).toBe(1);
    expect((await patchc("revert", String(dead), "--all")).code).toBe(1);
  });

  it("lists the commands and their options in help", async () => {
    const h = (await patchc("--help")).out;
    for (const c of ["apply", "revert", "status"]) expect(h).toMatch(new RegExp(`^  ${c} `, "m"));
    const a = (await patchc("apply", "--help")).out;
    for (const o of ["--all", "--consistency MODE", "--timeout MS", "--require-signed KEY", "--jobs N", "--json"]) expect(a).toContain(o);
  });
});
