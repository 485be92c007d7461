// patchc dies at random moments (SIGKILL of the process driving the shim) during
// stop-the-world patching and during waits: the target keeps running, behaves as
// fully old or fully new, its text holds no int3 and no breakpoint stays armed.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tracer } from "../src/shim/index.js";
import { ROOT, Target, alive, execMaps, maps, sleep, tracedThreads, tracerPidOf, until } from "./helpers/shim.js";

const DRIVER = join(ROOT, "build/test-shim/driver.mjs");
const NEW = [0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3];

beforeAll(async () => {
  mkdirSync(join(ROOT, "build/test-shim"), { recursive: true });
  await build({
    entryPoints: [join(ROOT, "test/fixtures/shim/driver.ts")],
    outfile: DRIVER,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    external: ["*.node"],
    logLevel: "warning",
  });
});

function readMem(pid: number, addr: bigint, len: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    const b = Buffer.alloc(len);
    const n = readSync(fd, b, 0, len, Number(addr));
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Runs the driver; resolves its output lines as they come. */
class Driver {
  proc: ChildProcess;
  lines: string[] = [];
  tracer = 0;
  exited: Promise<void>;
  constructor(args: string[], opts: { uid?: number; gid?: number } = {}) {
    this.proc = spawn(process.execPath, [DRIVER, ...args], { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let buf = "";
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stdout!.on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(l);
        if (l.startsWith("tracer ")) this.tracer = Number(l.slice(7));
      }
    });
    this.proc.stderr!.on("data", (d) => this.lines.push("stderr " + String(d)));
    this.exited = new Promise((r) => this.proc.once("exit", () => r()));
  }
  // 30 s: a driver is a fresh Node process (the bundle, the addon, the tracer
  // spawned); on a loaded 2-core machine (load 90) its first line took over 10 s
  async waitLine(prefix: string, ms = 30000): Promise<string> {
    await until(() => this.lines.some((l) => l.startsWith(prefix)) || this.proc.exitCode !== null, ms, `driver line ${prefix}`);
    const l = this.lines.find((x) => x.startsWith(prefix));
    if (!l) throw new Error(`driver exited: ${this.lines.join("\n")}`);
    return l;
  }
}

/** The executable's text mapping compared with the file: offsets that differ. */
function textDiffs(pid: number, exe: string): Array<{ addr: bigint; have: number; want: number }> {
  const file = readFileSync(exe);
  const out: Array<{ addr: bigint; have: number; want: number }> = [];
  for (const m of execMaps(pid)) {
    if (m.path !== exe) continue;
    const len = Number(m.hi - m.lo);
    const mem = readMem(pid, m.lo, len);
    for (let i = 0; i < mem.length; i++) {
      const off = Number(m.off) + i;
      const want = off < file.length ? file[off] : 0;
      if (mem[i] !== want) out.push({ addr: m.lo + BigInt(i), have: mem[i], want });
    }
  }
  return out;
}

/** Anonymous executable mappings that hold our new code. */
function newCodeRegions(pid: number): bigint[] {
  return maps(pid)
    .filter((m) => m.perms[2] === "x" && m.path === "")
    .filter((m) => readMem(pid, m.lo, 6).equals(Buffer.from(NEW)))
    .map((m) => m.lo);
}

async function afterKill(d: Driver, target: Target): Promise<void> {
  await d.exited;
  // the tracer cleans up (rollback, disarm, detach) and exits
  if (d.tracer) await until(() => !alive(d.tracer), 10000, `tracer ${d.tracer} to exit`);
  // every thread let go, not only the main one (the tracer's exit unlinks them all
  // before it is a zombie: anything still traced here was not detached by it)
  let traced: Array<{ tid: number; tracer: number }> = [];
  await until(() => (traced = tracedThreads(target.pid)).length === 0, 5000, "every thread of the target to be detached").catch((e) => {
    throw new Error(`${e.message}: still traced ${JSON.stringify(traced)}`);
  });
  expect(target.alive, `the target died: ${target.proc.signalCode ?? target.proc.exitCode}`).toBe(true);
}

describe("SIGKILL of patchc", () => {
  let target: Target;
  let exe: string;
  let original: Buffer;

  beforeAll(async () => {
    target = await Target.start(["--workers", "4", "--sleepers", "4", "--churn", "--alarm"]);
    exe = readFileSync(`/proc/${target.pid}/cmdline`, "utf8").split("\0")[0];
    original = readMem(target.pid, target.ready.version, 5);
    expect([...original]).toEqual([0xb8, 0x01, 0x00, 0x00, 0x00]);
  });
  afterAll(async () => {
    await target?.stop();
  });

  it("at random points of stop-the-world patching leaves the target fully old or fully new", async () => {
    const v = target.ready.version;
    // regions that were committed (jumped to) at some point: a kill during a revert,
    // after the jump is gone and before the munmap, leaves one behind, unreachable
    const committed = new Set<bigint>();
    let applied = 0;
    let reverted = 0;
    let rolledBack = 0;
    // 30 kills, more (up to 60) until they landed in every phase: during the attach,
    // after an apply, after a revert, and between a map and its commit
    for (let i = 0; i < 60 && (i < 30 || applied < 3 || reverted < 3 || rolledBack < 1); i++) {
      const d = new Driver(["patch", String(target.pid), "0x" + v.toString(16), "0x" + target.ready.slow.toString(16), original.toString("hex")]);
      await d.waitLine(i % 5 === 0 ? "tracer " : "attached");
      await sleep(Math.random() * (i % 5 === 0 ? 20 : i % 3 === 0 ? 30 : 300));
      d.proc.kill("SIGKILL");
      await afterKill(d, target);
      const events = d.lines.filter((l) => l.startsWith("cycle "));
      const last = events[events.length - 1] ?? "";
      for (const l of events) if (/ applied /.test(l)) committed.add(BigInt(l.split(" ")[3]));
      if (/ mapped /.test(last)) rolledBack++;
      applied += events.filter((l) => / applied /.test(l)).length;
      reverted += events.filter((l) => / reverted /.test(l)).length;
      expect(d.lines.filter((l) => l.startsWith("error") || l.startsWith("stderr"))).toEqual([]);

      // the target runs and saw only version 1 or 2
      expect(target.alive).toBe(true);
      const r = await target.report();
      expect(r.messages).toEqual([]);
      expect(r.violations).toBe(0);

      // fully old or fully new, nothing else changed in the text
      const site = readMem(target.pid, v, 5);
      const diffs = textDiffs(target.pid, exe);
      const regions = newCodeRegions(target.pid);
      if (site.equals(original)) {
        expect(diffs).toEqual([]);
      } else {
        expect(site[0]).toBe(0xe9);
        const dest = v + 5n + BigInt(site.readInt32LE(1));
        expect(regions).toContain(dest);
        expect(diffs.every((x) => x.addr >= v && x.addr < v + 5n)).toBe(true);
        committed.add(dest);
      }
      // every other region of new code is one a revert left before its munmap:
      // an apply that did not commit was rolled back (unmapped)
      for (const reg of regions)
        expect(committed.has(reg), `region 0x${reg.toString(16)} after:\n${d.lines.join("\n")}`).toBe(true);
      expect(diffs.some((x) => x.have === 0xcc)).toBe(false);
    }
    // the kills landed in every phase
    expect(applied).toBeGreaterThanOrEqual(3);
    expect(reverted).toBeGreaterThanOrEqual(3);
    expect(rolledBack).toBeGreaterThanOrEqual(1);
    const after = await target.report();
    expect(Number(after.old)).toBeGreaterThan(0);
    expect(Number(after.new)).toBeGreaterThan(0);
    console.log(`kills: ${applied} applies, ${reverted} reverts, ${rolledBack} killed after a map (rolled back)`);
  });

  it("at random points of a wait leaves no breakpoint armed", async () => {
    let waits = 0;
    for (let i = 0; i < 20; i++) {
      const d = new Driver([
        "wait",
        String(target.pid),
        "0x" + target.ready.version.toString(16),
        "0x" + target.ready.slow.toString(16),
        "0x" + target.ready.slow_ret.toString(16),
      ]);
      await d.waitLine("tracer ");
      await sleep(50 + Math.random() * 400);
      d.proc.kill("SIGKILL");
      await afterKill(d, target);
      waits += d.lines.filter((l) => l.startsWith("cycle ")).length;
      expect(d.lines.filter((l) => l.startsWith("error") || l.startsWith("stderr"))).toEqual([]);
      // a breakpoint left armed would kill the target with SIGTRAP on its next call
      await sleep(50);
      expect(target.alive).toBe(true);
      const r = await target.report();
      expect(r.violations).toBe(0);
    }
    expect(waits).toBeGreaterThan(10);
    // and no debug register of any thread holds anything
    const t = Tracer.open();
    try {
      await t.attach(target.pid);
      const w = await t.stopWorld();
      const armed: string[] = [];
      for (const th of w.threads) {
        const dr = await t.debugRegs(th.tid);
        if (dr[7] !== 0n || dr[0] !== 0n) armed.push(`tid ${th.tid}: DR7 0x${dr[7].toString(16)} DR0 0x${dr[0].toString(16)}`);
      }
      expect(armed).toEqual([]);
      await t.resumeAll();
    } finally {
      await t.close();
    }
    expect(textDiffs(target.pid, exe).some((x) => x.have === 0xcc)).toBe(false);
  });
});

describe("a breakpoint's wait", () => {
  // clone copies the creator's task_struct: copy_thread() zeroes its breakpoint
  // slots but not the DR7 value PTRACE_PEEKUSER returns, so a thread born while
  // its creator had our breakpoint armed read DR7 = 0x1 without a breakpoint, and
  // the next wait on it was refused (DEBUG_REGS_BUSY). The tracer sets that copy
  // to 0 at the newborn's first stop.
  it("leaves no DR7 value in the threads born while a creator had it armed", async () => {
    const target = await Target.start(["--churn"]);
    const t = Tracer.open();
    try {
      await t.attach(target.pid);
      const churner = target.ready.roles["churn"];
      let w = await t.stopWorld();
      let newborns = 0;
      const copies: string[] = [];
      for (let i = 0; i < 30; i++) {
        const before = new Set(w.threads.map((th) => th.tid));
        // the churner never calls version(): the wait times out with the
        // breakpoint armed in it while it creates threads
        const r = await t.waitReturn(churner, target.ready.version, { timeoutMs: 20 });
        expect(r.hit).toBe(false);
        w = await t.stopWorld();
        for (const th of w.threads) {
          if (before.has(th.tid)) continue;
          newborns++;
          const dr = await t.debugRegs(th.tid);
          if (dr[7] !== 0n) copies.push(`tid ${th.tid}: DR7 0x${dr[7].toString(16)}`);
        }
        // and a wait on the newest thread is accepted
        const last = w.threads[w.threads.length - 1].tid;
        await t.waitReturn(last, target.ready.version, { timeoutMs: 1 });
        w = await t.stopWorld();
      }
      expect(copies).toEqual([]);
      expect(newborns).toBeGreaterThan(10);
      await t.resumeAll();
      expect((await target.report()).violations).toBe(0);
    } finally {
      await t.close();
      await target.stop();
    }
  });
});

describe("SIGKILL of the tracer itself", () => {
  // A dying tracer lets go of every tracee in exit_notify() (exit_ptrace), before it
  // is a zombie; until then its threads read TracerPid = the old tracer. A new
  // tracer attaching in that moment waits for it (SIGKILL pending, PF_EXITING)
  // instead of refusing with ALREADY_TRACED or EPERM.
  it("does not make the attach of the next tracer fail", async () => {
    const target = await Target.start(["--churn", "--sleepers", "2"]);
    try {
      for (let i = 0; i < 30; i++) {
        const old = Tracer.open();
        const next = Tracer.open();
        await old.attach(target.pid);
        process.kill(old.pid, "SIGKILL");
        await next.attach(target.pid);
        expect(tracedThreads(target.pid).every((x) => x.tracer === next.pid)).toBe(true);
        await next.close();
        await old.close().catch(() => undefined);
      }
      expect(target.alive).toBe(true);
      expect((await target.report()).violations).toBe(0);
    } finally {
      await target.stop();
    }
  });
});

describe("the driver as another user", () => {
  it.runIf(process.getuid?.() === 0)("cannot attach to a root process and says why, without touching it", async () => {
    const target = await Target.start(["--sleepers", "2"]);
    try {
      const d = new Driver(["attach", String(target.pid)], { uid: 65534, gid: 65534 });
      const line = await d.waitLine("result ");
      const r = JSON.parse(line.slice(7));
      expect(r.ok).toBe(false);
      expect(r.code).toBe("EACCES");
      expect(r.syscall).toBe("open(/proc/PID/mem)");
      expect(r.message).toMatch(new RegExp(`attach: open\\(/proc/PID/mem\\) failed for tid ${target.pid}: EACCES .*not permitted to trace pid ${target.pid}.*uid 0.*as uid 65534`));
      await d.exited;
      expect(tracerPidOf(target.pid)).toBe(0);
      expect((await target.report()).violations).toBe(0);
    } finally {
      await target.stop();
    }
  });
});
