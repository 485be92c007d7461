// `patchc apply | status | revert` end to end through the bundled CLI (dist/patchc.cjs,
// rebuilt here with scripts/build-cli.mjs) on processes compiled by the test: the JSON
// and the human output, --all over several processes, and the exit codes of a bad
// package, a dead PID and a package for another build (the target unchanged).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Scratch } from "./helpers/gcc.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(ROOT, "dist/patchc.cjs");

// Answers each number read on stdin with answer(n): 2n, 3n once patched.
const SOURCE = `
#include <stdio.h>
#include <stdlib.h>
volatile int calls;
__attribute__((noinline)) int answer(int x) {
  calls++; /* long enough for the jump */
#if defined(PATCHED2)
  return x * 4;
#elif defined(PATCHED)
  return x * 3;
#else
  return x * 2;
#endif
}
int main(void) {
  char line[64];
  printf("ready %d\\n", OTHER);
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    printf("%d\\n", answer(atoi(line)));
    fflush(stdout);
  }
  return 0;
}
`;
const CFLAGS = ["-O2", "-g0", "-ffunction-sections", "-fdata-sections", "-fPIE"];

const scratch = new Scratch();
let target: string; // the running build
let other: string; // another build of the same program
let pkg: string; // fix.patch for `target`
let pkg2: string; // fix2.patch, stacked on fix

function patchc(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, "scripts/build-cli.mjs")], { cwd: ROOT, stdio: "pipe" });
  for (const d of ["original", "patched", "patched2", "other"]) fs.mkdirSync(scratch.path(d));
  const src = scratch.write("target.c", SOURCE);
  scratch.gcc(src, "original/target.o", [...CFLAGS, "-DOTHER=0", "-c"]);
  scratch.gcc(src, "patched/target.o", [...CFLAGS, "-DOTHER=0", "-DPATCHED", "-c"]);
  scratch.gcc(src, "patched2/target.o", [...CFLAGS, "-DOTHER=0", "-DPATCHED2", "-c"]);
  target = scratch.path("target");
  execFileSync("gcc", ["-pie", "-Wl,--build-id", scratch.path("original/target.o"), "-o", target]);
  other = scratch.gcc(src, "other/target", [...CFLAGS, "-DOTHER=1", "-pie", "-Wl,--build-id"]);
  pkg = scratch.path("fix.patch");
  const b = patchc("build", "--orig", scratch.path("original"), "--patched", scratch.path("patched"), "--target", target, "-o", pkg);
  if (b.code !== 0) throw new Error(`patchc build failed: ${b.err}`);
  pkg2 = scratch.path("fix2.patch");
  const b2 = patchc("build", "--orig", scratch.path("patched"), "--patched", scratch.path("patched2"), "--target", target, "--after", pkg, "-o", pkg2);
  if (b2.code !== 0) throw new Error(`patchc build --after failed: ${b2.err}`);
}, 120_000);

/** A running fixture: ask(n) writes n and reads the answer. */
class Proc {
  readonly child: ChildProcess;
  private buf = "";
  private wake?: () => void;
  constructor(exe: string) {
    this.child = spawn(exe, [], { stdio: ["pipe", "pipe", "inherit"] });
    this.child.stdout!.on("data", (d) => {
      this.buf += d;
      this.wake?.();
    });
  }
  get pid(): number {
    return this.child.pid!;
  }
  async line(): Promise<string> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const nl = this.buf.indexOf("\n");
      if (nl >= 0) {
        const l = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return l;
      }
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`process ${this.pid}: no answer (exit ${this.child.exitCode})`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
  }
  async ask(n: number): Promise<number> {
    this.child.stdin!.write(`${n}\n`);
    return Number(await this.line());
  }
}

const procs: Proc[] = [];
async function start(exe: string): Promise<Proc> {
  const p = new Proc(exe);
  procs.push(p);
  expect(await p.line()).toMatch(/^ready/);
  return p;
}
afterEach(() => {
  for (const p of procs.splice(0)) p.child.kill("SIGKILL");
});
afterAll(() => scratch.remove());

const maps = (pid: number) => fs.readFileSync(`/proc/${pid}/maps`, "utf8");

describe("patchc apply, status, revert (dist/patchc.cjs)", () => {
  it("applies, shows and reverts with --json; the process answers with the new code, then the old", async () => {
    const p = await start(target);
    expect(await p.ask(21)).toBe(42);
    const a = patchc("apply", String(p.pid), pkg, "--json");
    expect(a.err).toBe("");
    expect(a.code).toBe(0);
    const report = JSON.parse(a.out);
    expect(report).toMatchObject({ pid: p.pid, patchId: "fix", consistency: "function", module: { path: target } });
    expect(report.functions.map((f: { name: string }) => f.name)).toEqual(["answer"]);
    const fn = report.functions[0];
    for (const k of ["site", "newAddr"]) expect(fn[k]).toMatch(/^0x[0-9a-f]+$/);
    expect(report.region.base).toMatch(/^0x[0-9a-f]+$/);
    expect(report.pauseNs).toBeGreaterThan(0);
    expect(report.totalNs).toBeGreaterThanOrEqual(report.pauseNs);
    expect(maps(p.pid)).toContain(report.region.name); // the region as the operator sees it
    expect(await p.ask(21)).toBe(63);
    // perf names the new code
    const perf = fs.readFileSync(`/tmp/perf-${p.pid}.map`, "utf8");
    expect(perf).toContain(`${BigInt(fn.newAddr).toString(16)} ${BigInt(fn.newSize).toString(16)} patchc:fix:answer\n`);

    const s = patchc("status", String(p.pid), "--json");
    expect(s.code).toBe(0);
    const status = JSON.parse(s.out);
    expect(status.patches).toHaveLength(1);
    expect(status.patches[0]).toMatchObject({ patchId: "fix", state: "active", hash: report.hash, region: { base: report.region.base } });
    expect(status.patches[0].functions).toEqual([expect.objectContaining({ name: "answer", site: fn.site, newAddr: fn.newAddr, current: true })]);
    const human = patchc("status", String(p.pid));
    expect(human.out).toMatch(new RegExp(`^process ${p.pid}: 1 patch\\nfix  ${report.hash.slice(0, 12)}  active `));
    expect(human.out).toContain(`  answer  ${fn.site} -> ${fn.newAddr}  current\n`);

    const r = patchc("revert", String(p.pid), "fix", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ pid: p.pid, reverted: [{ patchId: "fix", functions: ["answer"] }] });
    expect(await p.ask(21)).toBe(42);
    expect(patchc("status", String(p.pid)).out).toMatch(new RegExp(`^process ${p.pid}: (no patches applied|1 patch\\nfix  \\w+  retired )`));
    fs.rmSync(`/tmp/perf-${p.pid}.map`, { force: true });
  });

  it("prints for people what was patched, where, and how long the target was stopped", async () => {
    const p = await start(target);
    const a = patchc("apply", String(p.pid), pkg, "--consistency=entry");
    expect(a.code).toBe(0);
    expect(a.out).toMatch(new RegExp(`^process ${p.pid}: applied fix \\([0-9a-f]{12}\\) to ${target} \\(build-id [0-9a-f]{16}\\)\\n  answer  0x[0-9a-f]+ -> 0x[0-9a-f]+ \\(\\d+ bytes\\)\\nregion 0x[0-9a-f]+ \\(\\d+ KiB\\) "[^"]*patchc:fix[^"]*" \\((memfd|anonymous: memfd execution refused)\\)\\n`));
    expect(a.out).toContain("consistency entry: calls already running in these functions finish in the old code");
    expect(a.out).toMatch(/\ntarget stopped for [\d.]+ (us|ms)( \(.*\))?; total [\d.]+ (us|ms|s)\n$/);
    expect(await p.ask(5)).toBe(15);
    const again = patchc("apply", String(p.pid), pkg);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(new RegExp(`^patchc: process ${p.pid}.*\\[ALREADY_APPLIED\\]\\n$`));
    const r = patchc("revert", String(p.pid), "--all");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`^process ${p.pid}: reverted fix \\(answer\\); its memory (freed|kept)`));
    expect(await p.ask(5)).toBe(10);
    fs.rmSync(`/tmp/perf-${p.pid}.map`, { force: true });
  });

  it("apply --all patches exactly the processes running the build, in parallel, and says so", async () => {
    const copy = scratch.path("copy-of-target");
    fs.copyFileSync(target, copy);
    fs.chmodSync(copy, 0o755);
    const ours = [await start(target), await start(target), await start(copy)];
    const theirs = await start(other);
    const a = patchc("apply", "--all", target, pkg, "--json", "--jobs", "2");
    expect(a.code).toBe(0);
    const results = JSON.parse(a.out);
    expect(results.map((r: { pid: number }) => r.pid).sort()).toEqual(ours.map((p) => p.pid).sort());
    for (const r of results) expect(r).toMatchObject({ ok: true, report: { pid: r.pid, patchId: "fix" } });
    for (const p of ours) expect(await p.ask(7)).toBe(21);
    expect(await theirs.ask(7)).toBe(14);
    // Again: every one refuses (already applied), exit 1, each reason in the summary.
    const b = patchc("apply", "--all", target, pkg);
    expect(b.code).toBe(1);
    expect(b.out).toMatch(/^fix on 3 processes with .*: 0 patched, 3 failed\n/);
    for (const p of ours) expect(b.out).toMatch(new RegExp(`\\n +${p.pid}  failed   .*\\[ALREADY_APPLIED\\]\\n`));
    expect(b.out).toMatch(/\ntotal [\d.]+ (us|ms|s), [\d.]+ (us|ms|s) per process/);
    for (const p of ours) expect(patchc("revert", String(p.pid), "fix").code).toBe(0);
    for (const p of ours) expect(await p.ask(7)).toBe(14);
    // On a terminal (script(1) gives it one): a progress line updated in place, cleared before the summary.
    const tty = spawnSync("script", ["-qec", `${process.execPath} ${CLI} apply --all ${target} ${pkg}`, "/dev/null"], { encoding: "utf8", timeout: 60_000 });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toContain("\r\x1b[Kapplying fix: 3/3 processes, 3 patched, 0 failed\r\x1b[Kfix on 3 processes with ");
    for (const p of ours) expect(await p.ask(7)).toBe(21);
    for (const p of ours) expect(patchc("revert", String(p.pid), "--all").code).toBe(0);
    // A package for another build than BINARY: refused before any process is touched.
    const w = patchc("apply", "--all", other, pkg);
    expect(w.code).toBe(1);
    expect(w.err).toMatch(new RegExp(`^patchc: ${other}: its build-id is [0-9a-f]+, and ${pkg} patches build-id [0-9a-f]+ .*\\[WRONG_BUILD\\]\\n$`));
    for (const p of procs) fs.rmSync(`/tmp/perf-${p.pid}.map`, { force: true });
  });

  it("stacks: status shows which version is current, revert is last in first out", async () => {
    const p = await start(target);
    const dep = patchc("apply", String(p.pid), pkg2);
    expect(dep.code).toBe(1);
    expect(dep.err).toMatch(new RegExp(`^patchc: process ${p.pid}.*fix.*\\[DEPENDENCY\\]\\n$`));
    expect(await p.ask(3)).toBe(6);
    expect(patchc("apply", String(p.pid), pkg).code).toBe(0);
    const a2 = patchc("apply", String(p.pid), pkg2);
    expect(a2.code).toBe(0);
    expect(a2.out).toMatch(/\n  answer  0x[0-9a-f]+ -> 0x[0-9a-f]+ \(\d+ bytes, over fix\)\n/);
    expect(await p.ask(3)).toBe(12);
    const s = patchc("status", String(p.pid));
    expect(s.code).toBe(0);
    expect(s.out).toMatch(new RegExp(`^process ${p.pid}: 2 patches\\nfix   [0-9a-f]{12}  active .*\\n  answer  0x[0-9a-f]+ -> 0x[0-9a-f]+  superseded by fix2\\nfix2  [0-9a-f]{12}  active .*\\n  answer  0x[0-9a-f]+ -> 0x[0-9a-f]+  current \\(over fix\\)\\n$`));
    const out = patchc("revert", String(p.pid), "fix");
    expect(out.code).toBe(1);
    expect(out.err).toMatch(new RegExp(`^patchc: process ${p.pid}.*fix2.*\\[OUT_OF_ORDER\\]\\n$`));
    expect(await p.ask(3)).toBe(12);
    const r = patchc("revert", String(p.pid), "--all", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).reverted.map((x: { patchId: string }) => x.patchId)).toEqual(["fix2", "fix"]);
    expect(await p.ask(3)).toBe(6);
    fs.rmSync(`/tmp/perf-${p.pid}.map`, { force: true });
  });

  it("apply --all LIBRARY patches the processes having it loaded", async () => {
    const dir = scratch.path("lib");
    for (const d of ["", "/original", "/patched"]) fs.mkdirSync(dir + d, { recursive: true });
    const libSrc = scratch.write("lib/scale.c", "volatile int n;\nint scale(int x) {\n  n++;\n#ifdef PATCHED\n  return x * 5;\n#else\n  return x * 2;\n#endif\n}\n");
    const flags = ["-O2", "-g0", "-fPIC", "-ffunction-sections", "-fdata-sections", "-c"];
    scratch.gcc(libSrc, "lib/original/scale.o", flags);
    scratch.gcc(libSrc, "lib/patched/scale.o", [...flags, "-DPATCHED"]);
    const lib = scratch.path("lib/libscale.so");
    execFileSync("gcc", ["-shared", "-Wl,--build-id", scratch.path("lib/original/scale.o"), "-o", lib]);
    const user = scratch.gcc(
      scratch.write("lib/user.c", '#include <stdio.h>\n#include <stdlib.h>\nint scale(int);\nint main(void) { char l[64]; printf("ready\\n"); fflush(stdout); while (fgets(l, sizeof l, stdin)) { printf("%d\\n", scale(atoi(l))); fflush(stdout); } return 0; }\n'),
      "lib/user",
      ["-O2", `-L${dir}`, `-Wl,-rpath,${dir}`],
      ["-lscale"],
    );
    const libPkg = scratch.path("lib/scale.patch");
    const b = patchc("build", "--orig", `${dir}/original`, "--patched", `${dir}/patched`, "--target", lib, "-o", libPkg);
    expect(b.err).not.toMatch(/error/i);
    expect(b.code).toBe(0);
    const users = [await start(user), await start(user)];
    const bystander = await start(target);
    const a = patchc("apply", "--all", lib, libPkg, "--json");
    expect(a.code).toBe(0);
    const results = JSON.parse(a.out);
    expect(results.map((r: { pid: number }) => r.pid).sort()).toEqual(users.map((u) => u.pid).sort());
    for (const r of results) expect(r.report.module.path).toBe(lib);
    for (const u of users) expect(await u.ask(3)).toBe(15);
    expect(await bystander.ask(3)).toBe(6);
    for (const u of users) {
      expect(patchc("revert", String(u.pid), "scale").code).toBe(0);
      expect(await u.ask(3)).toBe(6);
      fs.rmSync(`/tmp/perf-${u.pid}.map`, { force: true });
    }
  });

  it("exit codes: bad package, dead PID, wrong build (the target unchanged), usage", async () => {
    const theirs = await start(other);
    const before = maps(theirs.pid);
    const w = patchc("apply", String(theirs.pid), pkg);
    expect(w.code).toBe(1);
    expect(w.err).toMatch(new RegExp(`^patchc: process ${theirs.pid}.*\\[WRONG_BUILD\\]\\n$`));
    expect(maps(theirs.pid)).toBe(before);
    expect(await theirs.ask(4)).toBe(8);
    const bad = scratch.path("bad.patch");
    fs.writeFileSync(bad, fs.readFileSync(pkg).subarray(0, 200));
    const b = patchc("apply", String(theirs.pid), bad);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(new RegExp(`^patchc: ${bad}: .+\\n$`));
    const dead = spawnSync("true").pid!;
    const d = patchc("apply", String(dead), pkg, "--json");
    expect(d.code).toBe(1);
    expect(JSON.parse(d.out)).toEqual({ error: { code: "NO_PROCESS", subject: `process ${dead}`, reason: expect.any(String), tid: 0 } });
    expect(patchc("status", String(theirs.pid)).out).toBe(`process ${theirs.pid}: no patches applied\n`);
    expect(patchc("apply", "x", pkg).code).toBe(2);
    expect(patchc("revert", String(theirs.pid)).code).toBe(2);
  });
});
