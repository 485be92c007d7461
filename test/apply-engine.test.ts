// The apply engine end to end on real processes: a C program calling f() in a loop and
// printing what it returns, packages made by the real build (makePackage, as `patchc
// build --orig --patched [--after]`), then applyPatch / readStatus (fresh calls every
// time: the state is read from the target) / revertPatch. Each step is checked in the
// target's behaviour, its /proc/PID/maps and its text bytes; every refusal leaves both
// exactly as they were.
import { beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { ApplyError } from "../src/apply/errors.js";
import { parseMaps } from "../src/apply/maps.js";
import type { ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Tracer } from "../src/shim/index.js";
import { run } from "./helpers/gcc.js";
import { buildPackage, compileObjects, linkTarget, Running, snapshot, engineSuite } from "./apply-engine-helpers.js";
import { rejected } from "./helpers/thrown.js";

const core = nodeCore();
const { scratch, running } = engineSuite();

// -p MS: a second thread calls f(-MS), which sleeps MS ms inside f (-d MS: after MS ms);
// -s: a seccomp filter denies memfd_create; -x MS: exit after MS ms; -e MS: exec sleep after MS ms;
const MAIN = `#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
int f(int x);
static int park_ms, delay_ms;
static void *parker(void *arg) {
  (void)arg;
  if (delay_ms) usleep(delay_ms * 1000);
  printf("parked %ld\\n", (long)syscall(SYS_gettid));
  f(-park_ms);
  printf("left\\n");
  return 0;
}
static void deny_memfd(void) {
  struct sock_filter filt[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_memfd_create, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { sizeof filt / sizeof filt[0], filt };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) { perror("seccomp"); exit(1); }
}
static long ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000L + t.tv_nsec / 1000000; }
static long exit_ms, exec_ms, t0;
static void *run_loop(void *arg) {
  (void)arg;
  int last = -1;
  for (;;) {
    int v = f(10);
    if (v != last) { printf("f %d\\n", v); last = v; }
    usleep(300);
    if (exit_ms && ms() - t0 >= exit_ms) exit(0);
    if (exec_ms && ms() - t0 >= exec_ms) { execl("/bin/sleep", "sleep", "100", (char *)0); exit(1); }
  }
  return 0;
}
int main(int argc, char **argv) {
  t0 = ms();
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-p")) park_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-d")) delay_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-s")) deny_memfd();
    else if (!strcmp(argv[i], "-x")) exit_ms = atol(argv[++i]);
    else if (!strcmp(argv[i], "-e")) exec_ms = atol(argv[++i]);
  }
  if (park_ms) { pthread_t t; pthread_create(&t, 0, parker, 0); }
  run_loop(0);
}
`;
const LIB = (k: number) => `#include <unistd.h>
int scale = 3;
int f(int x) {
  if (x < 0) { for (int i = 0; i < -x; i++) usleep(1000); return 0; }
  return x * scale + ${k};
}
`;
/** f counts its calls in a new global through a new function: K once it was called 3 times. */
const LIB_NEW = (k: number) => `#include <unistd.h>
int scale = 3;
int hits;
__attribute__((noinline)) int bump(void) { return ++hits; }
int f(int x) {
  if (x < 0) { for (int i = 0; i < -x; i++) usleep(1000); return 0; }
  return x * scale + (bump() >= 3 ? ${k} : 100);
}
`;
const FOREVER = "1000000000";

function start(exe: string, ...args: string[]): Running {
  const r = new Running(exe, args);
  running.push(r);
  return r;
}

const wx = (pid: number) => parseMaps(fs.readFileSync(`/proc/${pid}/maps`, "utf8"), "maps").filter((m) => m.write && m.exec);
const hex = (v: bigint) => "0x" + v.toString(16);

let target: string;
let other: string;
let fLink: bigint; // f's link-time address in the target
let v1: ReadPackage;
let v2: ReadPackage;
let v2alone: ReadPackage;
let vA: ReadPackage;
let vB: ReadPackage;

/** f's entry in a running target (PIE: link-time address + the first mapping's start). */
function fEntry(pid: number): bigint {
  const m = parseMaps(fs.readFileSync(`/proc/${pid}/maps`, "utf8"), "maps").find((x) => x.path === target && x.offset === 0n)!;
  return m.start + fLink;
}

/** What a refusal must leave as it was: the maps and f's first 64 bytes. */
const state = (pid: number) => snapshot(pid, [{ addr: fEntry(pid), len: 64 }]);

const refusal = (p: Promise<unknown>): Promise<ApplyError> => rejected(ApplyError, p);

beforeAll(() => {
  const orig = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB(1) }, scratch.path("orig"));
  const p1 = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB(2) }, scratch.path("p1"));
  const p2 = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB(5) }, scratch.path("p2"));
  target = linkTarget(orig, scratch.path("prog"));
  other = linkTarget(orig, scratch.path("prog-other"), ["-pie", "-Wl,-z,norelro"]);
  fLink = BigInt("0x" + /^([0-9a-f]+) T f$/m.exec(run("nm", [target]))![1]);
  v1 = buildPackage(core, { original: orig, patched: p1, target, patchId: "fix-1", out: scratch.path("fix-1.patch") });
  // The second fix on top of the first (patchc build --after fix-1.patch): its site holds fix-1's jump.
  v2 = buildPackage(core, { original: p1, patched: p2, target, patchId: "fix-2", out: scratch.path("fix-2.patch"), after: scratch.path("fix-1.patch") });
  // The same fix built against the original code.
  v2alone = buildPackage(core, { original: orig, patched: p2, target, patchId: "fix-2b", out: scratch.path("fix-2b.patch") });
  // A new global and a new function (the writable part, the symbols of the header), and a
  // patch on top using them (references of scope patch).
  const pA = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB_NEW(200) }, scratch.path("pA"));
  const pB = compileObjects(scratch, { "main.c": MAIN, "lib.c": LIB_NEW(300) }, scratch.path("pB"));
  vA = buildPackage(core, { original: orig, patched: pA, target, patchId: "fix-A", out: scratch.path("fix-A.patch") });
  vB = buildPackage(core, { original: pA, patched: pB, target, patchId: "fix-B", out: scratch.path("fix-B.patch"), after: scratch.path("fix-A.patch") });
});

describe("apply engine: apply, status, revert", () => {
  it("applies one function to a running loop, reads the status from fresh calls, reverts", async () => {
    const r = start(target);
    await r.waitLine(/^f 31$/);
    expect((await readStatus(r.pid)).patches).toEqual([]);
    const before = state(r.pid);

    const rep = await applyPatch(r.pid, v1, { core });
    console.log(`apply of 1 function to a 1-thread target: pauseNs ${rep.pauseNs}, attempts ${rep.attempts}, totalNs ${rep.totalNs}`);
    expect(rep).toMatchObject({ pid: r.pid, patchId: "fix-1", hash: v1.hash, consistency: "function", attempts: 1, waitedNs: 0 });
    expect(rep.module.path).toBe(target);
    expect(rep.region).toMatchObject({ memfd: true, name: "/memfd:patchc:fix-1 (deleted)" });
    expect(rep.functions).toEqual([{ name: "f", site: fEntry(r.pid), newAddr: rep.functions[0].newAddr, newSize: rep.functions[0].newSize }]);
    expect(rep.pauseNs).toBeGreaterThan(0);
    expect(rep.pauseTotalNs).toBe(rep.pauseNs);
    await r.waitLine(/^f 32$/);

    // The entry holds jmp rel32 to the new code; the rest of f is untouched.
    const after = state(r.pid);
    const site = Buffer.from(after.bytes[0], "hex");
    expect(site[0]).toBe(0xe9);
    expect(BigInt(fEntry(r.pid) + 5n + BigInt(site.readInt32LE(1)))).toBe(rep.functions[0].newAddr);
    expect(after.bytes[0].slice(10)).toBe(before.bytes[0].slice(10));

    const st = await readStatus(r.pid);
    expect(st.patches).toHaveLength(1);
    expect(st.patches[0]).toMatchObject({ patchId: "fix-1", hash: v1.hash, state: "active", module: { path: target, buildId: v1.model.target.buildId }, region: { base: rep.region.base, size: rep.region.size } });
    expect(st.patches[0].functions).toEqual([{ name: "f", site: rep.functions[0].site, newAddr: rep.functions[0].newAddr, current: true }]);
    expect(Math.abs(st.patches[0].appliedAt.getTime() - Date.now())).toBeLessThan(60_000);

    // perf names the new code.
    const perfMap = `/tmp/perf-${r.pid}.map`;
    try {
      const f = rep.functions[0];
      expect(fs.readFileSync(perfMap, "utf8")).toContain(`${f.newAddr.toString(16)} ${f.newSize.toString(16)} patchc:fix-1:f\n`);
    } finally {
      fs.rmSync(perfMap, { force: true });
    }

    // Named in /proc/PID/maps, header r--, code r-x, never writable and executable.
    const lines = fs.readFileSync(`/proc/${r.pid}/maps`, "utf8").split("\n").filter((l) => l.includes("/memfd:patchc:fix-1 (deleted)"));
    expect(lines[0]).toMatch(new RegExp(`^${rep.region.base.toString(16)}-[0-9a-f]+ r--p 00000000 `));
    expect(lines.some((l) => / r-xp 00001000 /.test(l))).toBe(true);
    expect(wx(r.pid)).toEqual([]);

    const at = r.lines.length;
    const rev = await revertPatch(r.pid, "fix-1", { core });
    console.log(`revert of 1 function, 1-thread target: pauseNs ${rev.pauseNs}`);
    expect(rev.reverted).toEqual([{ patchId: "fix-1", functions: ["f"], freed: true }]);
    expect(rev.pauseNs).toBeGreaterThan(0);
    await r.waitLine(/^f 31$/, 10000, at);
    expect((await readStatus(r.pid)).patches).toEqual([]);
    const end = state(r.pid);
    expect(end.maps).not.toContain("patchc:");
    expect(end.bytes).toEqual(before.bytes);
  });

  it("stacks a second patch with one hop, refuses an out-of-order revert, reverts last in first out", async () => {
    const r = start(target);
    await r.waitLine(/^f 31$/);
    const a = await applyPatch(r.pid, v1, { core });
    await r.waitLine(/^f 32$/);
    const b = await applyPatch(r.pid, v2, { core });
    expect(b.functions).toEqual([{ name: "f", site: a.functions[0].site, newAddr: b.functions[0].newAddr, newSize: b.functions[0].newSize, previous: "fix-1" }]);
    await r.waitLine(/^f 35$/);

    // One hop: the entry jumps straight to fix-2's code.
    const site = Buffer.from(state(r.pid).bytes[0], "hex");
    expect(site[0]).toBe(0xe9);
    expect(fEntry(r.pid) + 5n + BigInt(site.readInt32LE(1))).toBe(b.functions[0].newAddr);

    const st = await readStatus(r.pid);
    expect(st.patches.map((p) => [p.patchId, p.state, p.functions.map((f) => [f.previous, f.current])])).toEqual([
      ["fix-1", "active", [[undefined, false]]],
      ["fix-2", "active", [["fix-1", true]]],
    ]);

    const before = state(r.pid);
    const e = await refusal(revertPatch(r.pid, "fix-1", { core }));
    expect(e.code).toBe("OUT_OF_ORDER");
    expect(e.message).toBe(`process ${r.pid}, function f: patch fix-2 stacks on patch fix-1 here: revert fix-2 first`);
    expect(state(r.pid)).toEqual(before);

    let at = r.lines.length;
    expect((await revertPatch(r.pid, "fix-2", { core })).reverted).toEqual([{ patchId: "fix-2", functions: ["f"], freed: true }]);
    await r.waitLine(/^f 32$/, 10000, at);
    expect((await readStatus(r.pid)).patches.map((p) => [p.patchId, p.functions[0].current])).toEqual([["fix-1", true]]);

    // Again, and then everything at once, newest first.
    at = r.lines.length;
    await applyPatch(r.pid, v2, { core });
    await r.waitLine(/^f 35$/, 10000, at);
    at = r.lines.length;
    const all = await revertPatch(r.pid, "all", { core });
    expect(all.reverted.map((x) => [x.patchId, x.freed])).toEqual([
      ["fix-2", true],
      ["fix-1", true],
    ]);
    await r.waitLine(/^f 31$/, 10000, at);
    expect((await readStatus(r.pid)).patches).toEqual([]);
    expect(fs.readFileSync(`/proc/${r.pid}/maps`, "utf8")).not.toContain("patchc:");
  });
});

describe("apply engine: new globals and functions", () => {
  it("adds a global and a function, and a stacked patch uses them (scope patch)", async () => {
    const r = start(target);
    await r.waitLine(/^f 31$/);
    const a = await applyPatch(r.pid, vA, { core });
    await r.waitLine(/^f 230$/);
    expect(r.lines).toContain("f 130");
    const st = await readStatus(r.pid);
    expect(st.patches.map((p) => p.patchId)).toEqual(["fix-A"]);
    // The rw- part exists (hits), nothing is w+x.
    const parts = parseMaps(fs.readFileSync(`/proc/${r.pid}/maps`, "utf8"), "maps").filter((m) => m.start >= a.region.base && m.end <= a.region.base + a.region.size);
    expect(parts.map((m) => `${m.read ? "r" : "-"}${m.write ? "w" : "-"}${m.exec ? "x" : "-"}`)).toEqual(["r--", "r-x", "r--", "rw-"]);
    expect(wx(r.pid)).toEqual([]);

    // fix-B calls fix-A's bump() where fix-A's region has it.
    expect(vB.model.references.filter((x) => x.scope === "patch").map((x) => [x.name, x.patch])).toEqual([["bump", "fix-A"]]);
    const b = await applyPatch(r.pid, vB, { core });
    expect(b.functions.map((f) => [f.name, f.previous])).toEqual([["f", "fix-A"]]);
    await r.waitLine(/^f 330$/);
    const at = r.lines.length;
    await revertPatch(r.pid, "all", { core });
    await r.waitLine(/^f 31$/, 10000, at);
  });
});

describe("apply engine: refusals leave the target as it was", () => {
  it("refuses a package for another build", async () => {
    const r = start(other);
    await r.waitLine(/^f 31$/);
    const m = parseMaps(fs.readFileSync(`/proc/${r.pid}/maps`, "utf8"), "maps").find((x) => x.path === other && x.offset === 0n)!;
    const otherF = m.start + BigInt("0x" + /^([0-9a-f]+) T f$/m.exec(run("nm", [other]))![1]);
    const before = snapshot(r.pid, [{ addr: otherF, len: 64 }]);
    const e = await refusal(applyPatch(r.pid, v1, { core }));
    expect(e.code).toBe("WRONG_BUILD");
    expect(e.message).toContain(v1.model.target.buildId);
    expect(snapshot(r.pid, [{ addr: otherF, len: 64 }])).toEqual(before);
  });

  it("refuses a missing dependency, a site holding another patch's jump, the same patch twice, reverting what is not applied", async () => {
    const r = start(target);
    await r.waitLine(/^f 31$/);
    let before = state(r.pid);
    let e = await refusal(applyPatch(r.pid, v2, { core }));
    expect(e.code).toBe("DEPENDENCY");
    expect(e.message).toBe(`process ${r.pid}: patch fix-2 needs patch fix-1 applied first; it is not`);
    expect(state(r.pid)).toEqual(before);
    e = await refusal(revertPatch(r.pid, "fix-1", { core }));
    expect(e.code).toBe("NOT_APPLIED");
    expect(state(r.pid)).toEqual(before);

    await applyPatch(r.pid, v1, { core });
    before = state(r.pid);
    e = await refusal(applyPatch(r.pid, v2alone, { core }));
    expect(e.code).toBe("SITE_MISMATCH");
    expect(e.message).toBe(`process ${r.pid}, function f: the entry holds the jump of patch fix-1; this package expects the original code (build it to stack on fix-1)`);
    expect(state(r.pid)).toEqual(before);
    e = await refusal(applyPatch(r.pid, v1, { core }));
    expect(e.code).toBe("ALREADY_APPLIED");
    expect(state(r.pid)).toEqual(before);
    expect(r.lines.at(-1)).toBe("f 32");
  });

  it("refuses a site whose bytes are not the package's", async () => {
    const r = start(target);
    await r.waitLine(/^f 31$/);
    // Damage f after its entry (an instruction the loop never reaches for x >= 0 is not
    // guaranteed: change the function's last byte, its ret's padding or the ret itself
    // is left alone) -- here: the package's expected site bytes are edited instead.
    const bad = { ...v1, model: { ...v1.model, functions: v1.model.functions.map((f) => (f.original ? { ...f, original: { ...f.original, site: f.original.site.map((x, i) => (i === 1 ? x ^ 0xff : x)), sha256: undefined } } : f)) } };
    const before = state(r.pid);
    const e = await refusal(applyPatch(r.pid, bad, { core }));
    expect(e.code).toBe("SITE_MISMATCH");
    expect(e.message).toMatch(new RegExp(`^process ${r.pid}, function f: the site 0x[0-9a-f]+ holds [0-9a-f ]+, the package expects [0-9a-f ]+$`));
    expect(state(r.pid)).toEqual(before);
  });
});

describe("apply engine: threads inside the function", () => {
  it("waits for a thread parked inside f to leave, then applies", async () => {
    const r = start(target, "-p", "700");
    await r.waitLine(/^parked/);
    await r.waitLine(/^f 31$/);
    const rep = await applyPatch(r.pid, v1, { core, timeoutMs: 5000 });
    expect(r.lines).toContain("left");
    expect(rep.attempts).toBeGreaterThanOrEqual(2);
    expect(rep.waitedNs).toBeGreaterThan(0);
    expect(rep.pauseTotalNs).toBeGreaterThanOrEqual(rep.pauseNs);
    await r.waitLine(/^f 32$/);
  });

  it("times out cleanly when the thread never leaves (BUSY, nothing changed), and applies with consistency entry", async () => {
    const r = start(target, "-p", FOREVER);
    const tid = Number(/^parked (\d+)$/.exec(r.lines[await r.waitLine(/^parked/)])![1]);
    await r.waitLine(/^f 31$/);
    await new Promise((res) => setTimeout(res, 20));
    const before = state(r.pid);
    const t0 = Date.now();
    const e = await refusal(applyPatch(r.pid, v1, { core, timeoutMs: 400 }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(e.code).toBe("BUSY");
    expect(e.tid).toBe(tid);
    expect(e.subject).toBe(`process ${r.pid}, function f`);
    expect(e.reason).toMatch(new RegExp(`^thread ${tid} is inside f \\(frame \\d+, pc 0x[0-9a-f]+\\), and stayed there until the timeout \\(\\d+ attempts\\); nothing was changed$`));
    expect(state(r.pid)).toEqual(before);
    expect((await readStatus(r.pid)).patches).toEqual([]);

    const rep = await applyPatch(r.pid, v1, { core, consistency: "entry", timeoutMs: 400 });
    expect(rep.consistency).toBe("entry");
    expect(rep.attempts).toBe(1);
    await r.waitLine(/^f 32$/);
    expect(r.lines).not.toContain("left");
  });
});

describe("apply engine: threads inside the new code", () => {
  it("does not revert while a thread stays inside the new version (BUSY, nothing changed)", async () => {
    const r = start(target, "-p", FOREVER, "-d", "600");
    await r.waitLine(/^f 31$/);
    const rep = await applyPatch(r.pid, v1, { core });
    await r.waitLine(/^f 32$/);
    const tid = Number(/^parked (\d+)$/.exec(r.lines[await r.waitLine(/^parked/)])![1]);
    await new Promise((res) => setTimeout(res, 20));
    const before = state(r.pid);
    const e = await refusal(revertPatch(r.pid, "fix-1", { core, timeoutMs: 300 }));
    expect(e.code).toBe("BUSY");
    expect(e.tid).toBe(tid);
    expect(e.reason).toMatch(new RegExp(`^thread ${tid} is inside f \\(frame \\d+, pc 0x[0-9a-f]+\\), and stayed there until the timeout \\(\\d+ attempts\\); nothing was reverted$`));
    expect(state(r.pid)).toEqual(before);
    const st = await readStatus(r.pid);
    expect(st.patches.map((p) => [p.patchId, p.state, p.region.base, p.functions[0].current])).toEqual([["fix-1", "active", rep.region.base, true]]);
  });
});

describe("apply engine: the target's conditions", () => {
  it("falls back to anonymous memory when seccomp denies memfd_create, and finds it again by its header", async () => {
    const r = start(target, "-s");
    await r.waitLine(/^f 31$/);
    const rep = await applyPatch(r.pid, v1, { core });
    expect(rep.region.memfd).toBe(false);
    await r.waitLine(/^f 32$/);
    const maps = parseMaps(fs.readFileSync(`/proc/${r.pid}/maps`, "utf8"), "maps");
    const region = maps.filter((m) => m.start >= rep.region.base && m.end <= rep.region.base + rep.region.size);
    expect(region.map((m) => [m.path, m.read, m.write, m.exec])).toContainEqual(["", true, false, true]);
    expect(wx(r.pid)).toEqual([]);
    const st = await readStatus(r.pid);
    expect(st.patches.map((p) => [p.patchId, hex(p.region.base), p.functions[0].current])).toEqual([["fix-1", hex(rep.region.base), true]]);
    const at = r.lines.length;
    expect((await revertPatch(r.pid, "fix-1", { core })).reverted[0].freed).toBe(true);
    await r.waitLine(/^f 31$/, 10000, at);
    expect(parseMaps(fs.readFileSync(`/proc/${r.pid}/maps`, "utf8"), "maps").some((m) => m.start === rep.region.base)).toBe(false);
  });

  it("reports TARGET_GONE when the target exits while apply waits", async () => {
    const r = start(target, "-p", FOREVER, "-x", "600");
    await r.waitLine(/^parked/);
    const e = await refusal(applyPatch(r.pid, v1, { core, timeoutMs: 5000 }));
    expect(e.code, e.message).toBe("TARGET_GONE");
    expect(e.subject).toBe(`process ${r.pid}`);
  });

  it("reports TARGET_GONE when the target calls exec while apply waits, leaving nothing in the new program", async () => {
    const r = start(target, "-p", FOREVER, "-e", "600");
    await r.waitLine(/^parked/);
    const e = await refusal(applyPatch(r.pid, v1, { core, timeoutMs: 5000 }));
    expect(e.code, e.message).toBe("TARGET_GONE");
    expect(e.reason).toMatch(/exec/);
    // The new program runs on: the rollback must not run remote syscalls at the old program's addresses.
    await new Promise((res) => setTimeout(res, 100));
    expect(fs.readFileSync(`/proc/${r.pid}/cmdline`, "utf8")).toBe("sleep\u0000100\u0000");
    expect(fs.readFileSync(`/proc/${r.pid}/maps`, "utf8")).not.toContain("patchc");
  });

  it("reports a corrupt region header and does not trust it", async () => {
    const r = start(target);
    await r.waitLine(/^f 31$/);
    const rep = await applyPatch(r.pid, v1, { core });
    // /proc/PID/mem writes to read-only pages need the writer to be the tracer (proc_mem.force_override).
    const t = Tracer.open({ core });
    await t.attach(r.pid);
    try {
      await t.writeText(rep.region.base + 16n, Uint8Array.of(9));
      const st = (await readStatus(r.pid)) as Awaited<ReturnType<typeof readStatus>> & { problems?: string[] };
      expect(st.patches).toEqual([]);
      expect(st.problems).toEqual([`process ${r.pid}, region at ${hex(rep.region.base)}: corrupt patch region header: state 9 is neither 1 (active) nor 2 (retired)`]);
      expect((await refusal(revertPatch(r.pid, "fix-1", { core }))).code).toBe("NOT_APPLIED");
      await t.writeText(rep.region.base + 16n, Uint8Array.of(1));
    } finally {
      await t.close();
    }
    expect((await revertPatch(r.pid, "fix-1", { core })).reverted[0].freed).toBe(true);
  });
});
