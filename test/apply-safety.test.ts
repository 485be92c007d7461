// The stack check of apply (src/apply/safety.ts) on real processes: a fixture built
// with gcc -O2 -fomit-frame-pointer whose threads park at known depths inside a
// function f (called through g and h), spin in it, recurse in it, spin at the first
// bytes of a tiny asm function, or run a signal handler on a sigaltstack that
// interrupted f. The fixture reports, from f's outermost frame, its return address
// (__builtin_return_address(0)) and its CFA (__builtin_dwarf_cfa()): what the check
// must give as the place to wait. Every process is stopped with the shim's Tracer,
// resumed, detached and killed in a finally.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import { parseMaps } from "../src/apply/maps.js";
import { ProcessUnwind, SAFETY_STACK_WINDOW, waitTarget, type SafetyVerdict } from "../src/apply/safety.js";
import type { Range } from "../src/apply/contract.js";
import type { RegionHeader } from "../src/apply/region.js";
import type { FoundRegion } from "../src/apply/status.js";
import { Tracer, type Span, type World } from "../src/shim/index.js";
import { Scratch, run } from "./helpers/gcc.js";
import { synthEhFrame } from "./helpers/stack.js";

const FIXTURE = String.raw`
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { F, SPIN, SIGNAL, WINDOW, OTHER, RT, JIT, SIGJIT, SIGLEAF };
enum { SLEEP, READ, FUTEX };

struct job {
  volatile int release; /* first: its address is the job's, printed */
  int mode, depth, park;
  volatile int in_f;
  void *ra, *cfa;
  pthread_t th;
};

static int pipefd[2];
static int futex_word;
static volatile int forever = 1;
static __thread struct job *cur;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *names[] = {"f", "spin", "signal", "window", "other", "rt", "jit", "sigjit", "sigleaf"};
static int (*jit)(struct job *, int (*)(struct job *));

static void say(struct job *j) {
  char buf[160];
  int n = snprintf(buf, sizeof buf, "thread %s %ld %d %p %p %p\n", names[j->mode], (long)syscall(SYS_gettid), j->depth, j->ra, j->cfa, (void *)j);
  pthread_mutex_lock(&out_lock);
  if (write(1, buf, n) != n) abort();
  pthread_mutex_unlock(&out_lock);
}

__attribute__((noipa)) void park(int how) {
  while (forever) {
    if (how == SLEEP) { struct timespec ts = {3600, 0}; nanosleep(&ts, NULL); }
    else if (how == READ) { char c; if (read(pipefd[0], &c, 1) < 0) abort(); }
    else syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  }
}

/* Spins outside f, called by f: a signal interrupting it leaves f's frame only in the caller's stack. */
__attribute__((noipa)) void spin_leaf(struct job *j) {
  j->in_f = 1;
  while (forever && !j->release) __asm__ volatile("" ::: "memory");
}

__attribute__((noipa)) int f(struct job *j, int level) {
  if (level == 0) { j->ra = __builtin_return_address(0); j->cfa = __builtin_dwarf_cfa(); }
  if (level < j->depth) {
    int r = f(j, level + 1);
    __asm__ volatile("" ::: "memory");
    return r + level;
  }
  if (j->mode != SIGNAL && j->mode != RT && j->mode != SIGJIT && j->mode != SIGLEAF) say(j);
  if (j->mode == F || j->mode == JIT) park(j->park);
  if (j->mode == SIGJIT || j->mode == SIGLEAF) { spin_leaf(j); return level + 1; }
  j->in_f = 1;
  while (forever && !j->release) __asm__ volatile("" ::: "memory");
  return level;
}

__attribute__((noipa)) int h(struct job *j) { int r = f(j, 0); __asm__ volatile("" ::: "memory"); return r + 1; }
__attribute__((noipa)) int g(struct job *j) { int r = j->mode == JIT ? jit(j, h) : h(j); __asm__ volatile("" ::: "memory"); return r + 2; }
__attribute__((noipa)) int other(struct job *j) { say(j); park(j->park); return 1; }

/* Loops on its own first bytes: the pc is always strictly inside [spin_entry, spin_entry + 5). */
void spin_entry(void);
__asm__(".text\n.globl spin_entry\n.type spin_entry,@function\nspin_entry:\n.cfi_startproc\n"
        "nop\n1: pause\njmp 1b\n.cfi_endproc\n.size spin_entry, .-spin_entry\n");

/* A sigreturn trampoline without CFI, as musl's: the check must find it by its bytes. */
void my_restore_rt(void);
__asm__(".text\n.p2align 4\nnop\n.globl my_restore_rt\n.type my_restore_rt,@function\nmy_restore_rt:\n"
        "mov $15, %rax\nsyscall\nhlt\n.size my_restore_rt, .-my_restore_rt\n");
struct ksigaction { void (*handler)(int); unsigned long flags; void (*restorer)(void); unsigned long mask; };

static void on_usr2(int sig) {
  (void)sig;
  say(cur);
  park(SLEEP);
}

static int park_job(struct job *j) {
  say(j);
  park(SLEEP);
  return 0;
}

static void on_usr1(int sig) {
  (void)sig;
  stack_t ss;
  sigaltstack(NULL, &ss);
  if (!(ss.ss_flags & SS_ONSTACK)) abort();
  if (cur->mode == SIGJIT) jit(cur, park_job); /* a frame without CFI on the alternate stack */
  else park_job(cur);
}

static void *thread_main(void *p) {
  struct job *j = cur = p;
  if (j->mode == SIGNAL || j->mode == SIGJIT || j->mode == SIGLEAF) {
    stack_t ss = { .ss_sp = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), .ss_size = 65536 };
    if (ss.ss_sp == MAP_FAILED || sigaltstack(&ss, NULL)) abort();
  }
  if (j->mode == OTHER) other(j);
  else if (j->mode == WINDOW) { say(j); spin_entry(); }
  else g(j);
  return NULL;
}

int main(int argc, char **argv) {
  if (pipe(pipefd)) abort();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_ONSTACK;
  if (sigaction(SIGUSR1, &sa, NULL)) abort();
  struct ksigaction ks = { on_usr2, 0x04000000 /* SA_RESTORER */, my_restore_rt, 0 };
  if (syscall(SYS_rt_sigaction, SIGUSR2, &ks, NULL, 8)) abort();
  /* Code without CFI in an anonymous executable mapping (as a patch region or JIT code):
     sub $8,%rsp; call *%rsi; add $8,%rsp; ret */
  static const unsigned char code[] = {0x48, 0x83, 0xec, 0x08, 0xff, 0xd6, 0x48, 0x83, 0xc4, 0x08, 0xc3};
  void *jp = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (jp == MAP_FAILED) abort();
  memcpy(jp, code, sizeof code);
  jit = jp;
  printf("sym f %p\nsym g %p\nsym h %p\nsym spin_entry %p\nsym park %p\nsym my_restore_rt %p\nsym jit %p\nsym spin_leaf %p\n", (void *)f, (void *)g, (void *)h, (void *)spin_entry, (void *)park, (void *)my_restore_rt, (void *)jit, (void *)spin_leaf);
  fflush(stdout);
  int n = argc - 1;
  struct job *jobs = calloc(n, sizeof *jobs);
  for (int i = 0; i < n; i++) {
    char mode[16], park[16] = "sleep";
    int depth = 0;
    if (sscanf(argv[i + 1], "%15[a-z]:%d:%15[a-z]", mode, &depth, park) < 1) abort();
    for (int k = 0; k < 9; k++) if (!strcmp(mode, names[k])) jobs[i].mode = k;
    jobs[i].depth = depth;
    jobs[i].park = !strcmp(park, "read") ? READ : !strcmp(park, "futex") ? FUTEX : SLEEP;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    if (pthread_create(&jobs[i].th, &at, thread_main, &jobs[i])) abort();
  }
  for (int i = 0; i < n; i++)
    if (jobs[i].mode == SIGNAL || jobs[i].mode == RT || jobs[i].mode == SIGJIT || jobs[i].mode == SIGLEAF) {
      while (!jobs[i].in_f) usleep(100);
      pthread_kill(jobs[i].th, jobs[i].mode == RT ? SIGUSR2 : SIGUSR1);
    }
  char buf[32];
  int len = snprintf(buf, sizeof buf, "ready %d\n", n);
  if (write(1, buf, len) != len) abort();
  for (;;) pause();
}
`;

const scratch = new Scratch();
afterAll(() => scratch.remove());
const built = new Map<string, string>();
function build(name: string, flags: string[]): string {
  const key = flags.join(" ");
  let exe = built.get(key);
  if (!exe) {
    exe = scratch.gcc(FIXTURE, name, ["-O2", "-fomit-frame-pointer", "-pthread", "-Wall", ...flags]);
    built.set(key, exe);
  }
  return exe;
}

interface ThreadLine { mode: string; tid: number; depth: number; ra: bigint; cfa: bigint; job: bigint }
interface Fixture {
  pid: number;
  exe: string;
  proc: ChildProcess;
  threads: ThreadLine[];
  sym: Record<string, bigint>;
  /** [start, start + st_size) of a function, from nm -S and the runtime address the fixture printed */
  range(name: string): Range;
}

const SYSCALL = { sleep: 230 /* clock_nanosleep */, read: 0, futex: 202 } as const;

async function startFixture(jobs: string[], flags: string[] = []): Promise<Fixture> {
  const exe = build(flags.length ? `safety-${built.size}` : "safety", flags);
  const proc = spawn(exe, jobs, { stdio: ["ignore", "pipe", "inherit"] });
  const lines: string[] = [];
  let buf = "";
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  const fx: Fixture = {
    pid: proc.pid!,
    exe,
    proc,
    threads: [],
    sym: {},
    range(name) {
      const nm = run("nm", ["-S", "--defined-only", exe]);
      const m = new RegExp(`^([0-9a-f]+) ([0-9a-f]+) [tT] ${name}$`, "m").exec(nm);
      if (!m) throw new Error(`nm: no ${name}`);
      const lo = this.sym[name];
      return { lo, hi: lo + BigInt("0x" + m[2]), name };
    },
  };
  try {
    const deadline = Date.now() + 20_000;
    while (!lines.some((l) => l.startsWith("ready ")) || lines.filter((l) => l.startsWith("thread ")).length < jobs.length) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`fixture exited (${proc.exitCode ?? proc.signalCode})`);
      if (Date.now() > deadline) throw new Error("fixture not ready within 20 s");
      await sleep(5);
    }
    for (const l of lines) {
      let m;
      if ((m = /^sym (\S+) 0x([0-9a-f]+)$/.exec(l))) fx.sym[m[1]] = BigInt("0x" + m[2]);
      else if ((m = /^thread (\S+) (\d+) (\d+) (\S+) (\S+) (\S+)$/.exec(l)))
        fx.threads.push({ mode: m[1], tid: Number(m[2]), depth: Number(m[3]), ra: ptr(m[4]), cfa: ptr(m[5]), job: ptr(m[6]) });
    }
    expect(fx.threads.length).toBe(jobs.length);
    // Parked threads: wait until each is inside its blocking syscall.
    for (const t of fx.threads) {
      if (t.mode === "spin" || t.mode === "window") continue;
      const want: number[] = ["signal", "rt", "sigjit", "sigleaf"].includes(t.mode) ? [SYSCALL.sleep] : Object.values(SYSCALL);
      await until(() => want.includes(syscallOf(fx.pid, t.tid)), `thread ${t.tid} (${t.mode}) parked`);
    }
    await sleep(30); // spinning threads: past the report, into their loops
    return fx;
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
  }
}

function ptr(s: string): bigint {
  return s === "(nil)" ? 0n : BigInt(s);
}

function syscallOf(pid: number, tid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/task/${tid}/syscall`, "utf8").trim();
    return /^-?\d+/.test(s) ? Number(s.split(" ")[0]) : -2;
  } catch {
    return -2;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(2);
  }
}

const core = nodeCore();

/** prepare (before the stop), attach, stop, check, resume, detach, kill: always. */
async function checkFixture(
  fx: Fixture,
  forbidden: Range[],
  windows: Range[],
  window = SAFETY_STACK_WINDOW,
  setup?: (pu: ProcessUnwind) => void,
  regions?: FoundRegion[],
): Promise<SafetyVerdict> {
  return stopped(fx, (tracer) => tracer.stopWorld({ window }), (pu, tracer, world) => pu.check(tracer, world, forbidden, windows), setup, regions);
}

/**
 * prepare (before the stop), attach, `stop` (which returns the stopped world), `use`,
 * resume, detach: always.
 */
async function stopped<S extends { world: World } | World, T>(
  fx: Fixture,
  stop: (tracer: Tracer, pu: ProcessUnwind) => Promise<S>,
  use: (pu: ProcessUnwind, tracer: Tracer, world: World, stopped: S) => Promise<T>,
  setup?: (pu: ProcessUnwind) => void,
  regions?: FoundRegion[],
): Promise<T> {
  const maps = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps");
  const pu = ProcessUnwind.prepare(core, { pid: fx.pid, maps }, { regions });
  setup?.(pu);
  const tracer = Tracer.open({ core });
  try {
    await tracer.attach(fx.pid);
    const st = await stop(tracer, pu);
    try {
      return await use(pu, tracer, "world" in st ? st.world : st, st);
    } finally {
      await tracer.resumeAll();
    }
  } finally {
    pu.close();
    await tracer.detach().catch(() => undefined);
    await tracer.close();
  }
}

const fixtures: Fixture[] = [];
async function fixture(jobs: string[], flags: string[] = []): Promise<Fixture> {
  const fx = await startFixture(jobs, flags);
  fixtures.push(fx);
  return fx;
}
afterAll(() => {
  for (const fx of fixtures) fx.proc.kill("SIGKILL");
});
async function done(fx: Fixture): Promise<void> {
  fx.proc.kill("SIGKILL");
  if (fx.proc.exitCode === null && fx.proc.signalCode === null) await new Promise((r) => fx.proc.once("exit", r));
}

const hex = (v: bigint) => "0x" + v.toString(16);
const byTid = (v: SafetyVerdict) => new Map(v.blockers.map((b) => [`${b.tid} ${b.kind}`, b]));

describe("ProcessUnwind on a stopped process", () => {
  it("threads parked in read, nanosleep and futex inside f (through g and h): blocked on f's outermost frame; others clear", async () => {
    const fx = await fixture(["f:0:sleep", "f:3:read", "f:1:futex", "other:0:sleep", "other:0:read", "f:7:sleep"]);
    try {
      const f = fx.range("f");
      const v = await checkFixture(fx, [f], []);
      expect(v.safe).toBe(false);
      const inF = fx.threads.filter((t) => t.mode === "f");
      const got = byTid(v);
      expect(v.blockers.length).toBe(inF.length);
      for (const t of inF) {
        const b = got.get(`${t.tid} inside`);
        expect(b, `thread ${t.tid}`).toBeDefined();
        expect(b!.how).toBe("precise");
        expect(b!.range).toEqual(f);
        // where f's outermost frame (called by h) returns to, and its return slot (CFA - 8): as f itself saw them
        expect(hex(b!.returnAddr)).toBe(hex(t.ra));
        expect(hex(b!.returnSp)).toBe(hex(t.cfa - 8n));
        expect(b!.returnAddr >= fx.range("h").lo && b!.returnAddr < fx.range("h").hi).toBe(true);
        // the outermost f frame is a return address into f (f's recursive call, or its call of park)
        expect(b!.pc - 1n >= f.lo && b!.pc - 1n < f.hi).toBe(true);
        expect(b!.depth).toBeGreaterThanOrEqual(t.depth + 1);
      }
      expect(v.stats!.precise).toBe(fx.threads.length + 1); // and the main thread
      expect(v.stats!.conservative).toBe(0);
      // The same threads with f not forbidden: safe.
      const g2 = await checkFixture(fx, [fx.range("spin_entry")], [{ lo: f.lo, hi: f.lo + 5n, name: "f" }]);
      expect(g2).toMatchObject({ safe: true, blockers: [] });
    } finally {
      await done(fx);
    }
  });

  it("a thread spinning in f, with and without recursion: frame depth = recursion depth", async () => {
    const fx = await fixture(["spin:0", "spin:4", "other:0:futex"]);
    try {
      const f = fx.range("f");
      const v = await checkFixture(fx, [f], []);
      const got = byTid(v);
      expect(v.blockers.length).toBe(2);
      for (const t of fx.threads.filter((x) => x.mode === "spin")) {
        const b = got.get(`${t.tid} inside`)!;
        expect(b).toBeDefined();
        expect(b.depth).toBe(t.depth);
        expect(hex(b.returnAddr)).toBe(hex(t.ra));
        expect(hex(b.returnSp)).toBe(hex(t.cfa - 8n));
      }
      // f and h both replaced: the outermost frame inside either is h's, which returns into g
      const h = fx.range("h"), g = fx.range("g");
      const v2 = await checkFixture(fx, [f, h], []);
      expect(v2.blockers.length).toBe(2);
      for (const b of v2.blockers) {
        expect(b.range).toEqual(h);
        expect(b.returnAddr > g.lo && b.returnAddr < g.hi).toBe(true);
        expect(b.depth).toBe(fx.threads.find((x) => x.tid === b.tid)!.depth + 1);
      }
    } finally {
      await done(fx);
    }
  });

  it("waitReturn on the blocker's return address and return slot (waitTarget) sees the thread leave f", async () => {
    const fx = await fixture(["spin:3", "other:0:sleep"]);
    const maps = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps");
    const pu = ProcessUnwind.prepare(core, { pid: fx.pid, maps });
    const tracer = Tracer.open({ core });
    try {
      const f = fx.range("f");
      const t = fx.threads.find((x) => x.mode === "spin")!;
      await tracer.attach(fx.pid);
      const v = await pu.check(tracer, await tracer.stopWorld({ window: SAFETY_STACK_WINDOW }), [f], []);
      expect(v.blockers.length).toBe(1);
      const b = v.blockers[0];
      expect(b).toMatchObject({ tid: t.tid, depth: 3, returnAddr: t.ra, returnSp: t.cfa - 8n });
      // let it leave f (its loop ends on job->release), and wait where the check said
      await tracer.writeData(t.job, Uint8Array.of(1, 0, 0, 0));
      const w = waitTarget(b)!;
      expect(w).toEqual({ addr: t.ra, sp: t.cfa - 8n }); // the return slot
      const r = await tracer.waitReturn(b.tid, w.addr, { sp: w.sp, timeoutMs: 10_000 });
      expect(r.hit).toBe(true);
      expect(r.rsp).toBe(t.cfa); // the stack pointer once f's outermost frame returned: its CFA
      const v2 = await pu.check(tracer, await tracer.stopWorld({ window: SAFETY_STACK_WINDOW }), [f], []);
      await tracer.resumeAll();
      expect(v2).toMatchObject({ safe: true, blockers: [] });
    } finally {
      pu.close();
      await tracer.detach().catch(() => undefined);
      await tracer.close();
      await done(fx);
    }
  });

  it("stacks mapped after prepare (threads started since): found by reading the maps again inside check", async () => {
    const fx = await fixture(["f:1:sleep", "other:0:read"]);
    const all = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps");
    // prepare as if no anonymous mapping existed yet: no thread stack is known to it
    const pu = ProcessUnwind.prepare(core, { pid: fx.pid, maps: all.filter((m) => m.inode !== 0 || m.path !== "") });
    const tracer = Tracer.open({ core });
    try {
      const f = fx.range("f");
      const t = fx.threads.find((x) => x.mode === "f")!;
      await tracer.attach(fx.pid);
      // a short window: the rest is read from the stack mappings, which prepare did not know
      const v = await pu.check(tracer, await tracer.stopWorld({ window: 64 }), [f], []);
      await tracer.resumeAll();
      expect(v.blockers.length).toBe(1);
      expect(v.blockers[0]).toMatchObject({ tid: t.tid, how: "precise", returnAddr: t.ra, returnSp: t.cfa - 8n });
      expect(v.stats!.conservative).toBe(0);
    } finally {
      pu.close();
      await tracer.detach().catch(() => undefined);
      await tracer.close();
      await done(fx);
    }
  });

  it("a pc at the very first bytes of a function: a window blocker, at any depth of forbidden ranges", async () => {
    const fx = await fixture(["window", "f:2:sleep", "other:0:sleep"]);
    try {
      const se = fx.range("spin_entry");
      const f = fx.range("f");
      const win: Range[] = [{ lo: se.lo, hi: se.lo + 5n, name: "spin_entry" }, { lo: f.lo, hi: f.lo + 5n, name: "f" }];
      // entry consistency: windows only
      const v = await checkFixture(fx, [], win);
      const w = fx.threads.find((t) => t.mode === "window")!;
      expect(v.safe).toBe(false);
      expect(v.blockers.length).toBe(1);
      const b = v.blockers[0];
      expect(b).toMatchObject({ tid: w.tid, kind: "window", depth: 0, range: win[0], returnAddr: 0n });
      expect(b.pc > se.lo && b.pc < se.lo + 5n).toBe(true);
      // whole-function consistency: the window, and the thread in f
      const v2 = await checkFixture(fx, [f], win);
      expect(v2.blockers.map((x) => x.kind).sort()).toEqual(["inside", "window"]);
      // a window that starts at the pc's instruction's end does not hold it
      const v3 = await checkFixture(fx, [], [{ lo: se.lo + 5n, hi: se.hi + 5n, name: "after" }]);
      expect(v3.safe).toBe(true);
    } finally {
      await done(fx);
    }
  });

  it("a signal handler on a sigaltstack that interrupted f: blocked through the signal frame", async () => {
    const fx = await fixture(["signal:2", "other:0:sleep"]);
    try {
      const f = fx.range("f");
      const v = await checkFixture(fx, [f], [], 2048);
      const t = fx.threads.find((x) => x.mode === "signal")!;
      expect(v.blockers.length).toBe(1);
      const b = v.blockers[0];
      expect(b).toMatchObject({ tid: t.tid, kind: "inside", how: "precise" });
      expect(hex(b.returnAddr)).toBe(hex(t.ra));
      expect(hex(b.returnSp)).toBe(hex(t.cfa - 8n));
      // the handler's frames are on the alternate stack: the f frames were found past the signal frame,
      // on the thread's own stack (read as a second segment)
      expect(v.stats!.reads).toBeGreaterThan(0);
      // Without forbidden f, but with f's whole body as a "window": the interrupted pc (exact) is in it.
      const v2 = await checkFixture(fx, [], [{ lo: f.lo, hi: f.hi, name: "f body" }]);
      const w = v2.blockers.find((x) => x.tid === t.tid)!;
      expect(w).toMatchObject({ kind: "window" });
      expect(w.depth).toBeGreaterThan(2);
      expect(w.pc > f.lo && w.pc < f.hi).toBe(true);
    } finally {
      await done(fx);
    }
  });

  it("precise unwinding failing on a sigaltstack: the word scan also covers the stack the signal interrupted", async () => {
    const fx = await fixture(["sigjit:2", "other:0:sleep"]);
    try {
      const f = fx.range("f");
      const leaf = fx.range("spin_leaf");
      const t = fx.threads.find((x) => x.mode === "sigjit")!;
      const v = await checkFixture(fx, [f], []);
      // the handler's frames (park <- park_job <- jit, no CFI) are on the alternate stack; the
      // interrupted spin_leaf and f's frames on the thread's own stack, found through the signal frame
      expect(v.stats!.fallbacks.map((x) => x.tid)).toEqual([t.tid]);
      expect(v.blockers.length).toBe(1);
      expect(v.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", range: f, returnAddr: 0n, depth: -1 });
      expect(v.stats!.reads).toBeGreaterThan(0);
      // spin_leaf forbidden instead: its pc is in the signal frame (on the alternate stack)
      const v2 = await checkFixture(fx, [leaf], []);
      expect(v2.blockers.map((b) => b.tid)).toEqual([t.tid]);
    } finally {
      await done(fx);
    }
  });

  it("the stack a signal interrupted cannot be read: blocked as unknown, never clear", async () => {
    const fx = await fixture(["sigleaf:1", "other:0:sleep"]);
    const maps = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps");
    const pu = ProcessUnwind.prepare(core, { pid: fx.pid, maps });
    const tracer = Tracer.open({ core });
    try {
      const f = fx.range("f");
      const t = fx.threads.find((x) => x.mode === "sigleaf")!;
      await tracer.attach(fx.pid);
      const world = await tracer.stopWorld({ window: SAFETY_STACK_WINDOW });
      const sp = world.threads.find((x) => x.tid === t.tid)!.sp;
      const alt = maps.find((m) => sp >= m.start && sp < m.end)!;
      // a tracer that reads nothing outside the alternate stack
      const blind = {
        readMemory: async (r: Array<{ addr: bigint; len: number }>) =>
          (await tracer.readMemory(r)).map((b, i) => (r[i].addr >= alt.start && r[i].addr < alt.end ? b : new Uint8Array(0))),
      } as unknown as Tracer;
      const v = await pu.check(blind, world, [f], []);
      const v2 = await pu.check(tracer, world, [f], []);
      await tracer.resumeAll();
      expect(v.blockers.length).toBe(1);
      expect(v.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", returnAddr: 0n, range: { lo: 0n, hi: 0n } });
      expect(v.blockers[0].range.name).toMatch(/could not be read/);
      // with the memory: precise, through the signal frame
      expect(v2.blockers.length).toBe(1);
      expect(v2.blockers[0]).toMatchObject({ tid: t.tid, how: "precise", range: f, returnAddr: t.ra });
    } finally {
      pu.close();
      await tracer.detach().catch(() => undefined);
      await tracer.close();
      await done(fx);
    }
  });

  it("a signal handler whose restorer has no CFI (found by its bytes): blocked through that trampoline", async () => {
    const fx = await fixture(["rt:1", "other:0:sleep"]);
    try {
      const f = fx.range("f");
      let tramps: bigint[] = [];
      const v = await checkFixture(fx, [f], [], SAFETY_STACK_WINDOW, (pu) => (tramps = pu.trampolines));
      expect(tramps).toContain(fx.sym.my_restore_rt);
      const t = fx.threads.find((x) => x.mode === "rt")!;
      expect(v.blockers.length).toBe(1);
      expect(v.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", how: "precise", depth: expect.any(Number) });
      expect(hex(v.blockers[0].returnAddr)).toBe(hex(t.ra));
      expect(hex(v.blockers[0].returnSp)).toBe(hex(t.cfa - 8n));
      expect(v.stats!.conservative).toBe(0);
    } finally {
      await done(fx);
    }
  });

  it("code without CFI in an anonymous executable mapping: conservative, until its CFI is added (addModuleCfi)", async () => {
    const fx = await fixture(["jit:1:sleep", "other:0:sleep"]);
    try {
      const f = fx.range("f");
      const t = fx.threads.find((x) => x.mode === "jit")!;
      const jit = fx.sym.jit;
      let unwindless: bigint[] = [];
      const v = await checkFixture(fx, [f], [], SAFETY_STACK_WINDOW, (pu) => (unwindless = pu.unwindless.map((m) => m.start)));
      expect(unwindless).toContain(jit);
      expect(v.blockers.length).toBe(1);
      expect(v.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", returnAddr: 0n, depth: -1 });
      expect(v.blockers[0].how).toMatch(/^conservative: .*no FDE/);
      // sub $8,%rsp (4 bytes): CFA = rsp+16; add $8,%rsp (at +6, 4 bytes): CFA = rsp+8
      const ehAddr = jit + 2048n;
      const eh = synthEhFrame(ehAddr, [{ pc: jit, len: 11, program: [0x44, 0x0e, 16, 0x46, 0x0e, 8] }]);
      const v2 = await checkFixture(fx, [f], [], SAFETY_STACK_WINDOW, (pu) => pu.addModuleCfi(eh, ehAddr));
      expect(v2.blockers.length).toBe(1);
      expect(v2.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", how: "precise" });
      expect(hex(v2.blockers[0].returnAddr)).toBe(hex(t.ra));
      // and with the jit code itself forbidden (patch code about to be freed): its frame, returning into g
      const v3 = await checkFixture(fx, [{ lo: jit, hi: jit + 11n, name: "jit" }], [], SAFETY_STACK_WINDOW, (pu) => pu.addModuleCfi(eh, ehAddr));
      const b = v3.blockers[0];
      expect(b.pc).toBe(jit + 6n);
      expect(b.returnAddr >= fx.range("g").lo && b.returnAddr < fx.range("g").hi).toBe(true);
      // The same CFI found through a patch region's header (as prepare() reads it from the target)
      const fd = openSync(`/proc/${fx.pid}/mem`, "r+");
      try {
        writeSync(fd, eh, 0, eh.length, Number(ehAddr));
      } finally {
        closeSync(fd);
      }
      const maps = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps");
      const mapping = maps.find((m) => m.start === jit)!;
      const header = { patchId: "jit", base: jit, size: 4096n, ehFrame: { addr: ehAddr, size: BigInt(eh.length) } } as RegionHeader;
      const v4 = await checkFixture(fx, [f], [], SAFETY_STACK_WINDOW, undefined, [{ header, mapping, memfd: false }]);
      expect(v4.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", how: "precise", returnAddr: t.ra });
    } finally {
      await done(fx);
    }
  });

  it("reads more stack when the window is short, in batched rounds", async () => {
    const fx = await fixture(["f:12:sleep", "f:20:read", "spin:15", "other:0:sleep"]);
    try {
      const f = fx.range("f");
      const big = await checkFixture(fx, [f], []);
      const small = await checkFixture(fx, [f], [], 64);
      expect(small.stats!.reads).toBeGreaterThan(0);
      const key = (v: SafetyVerdict) => v.blockers.map((b) => `${b.tid} ${b.kind} ${hex(b.returnAddr)} ${hex(b.returnSp)} ${b.depth}`).sort();
      expect(key(small)).toEqual(key(big));
      expect(big.blockers.length).toBe(3);
    } finally {
      await done(fx);
    }
  });

  it("100 threads: the 50 inside f blocked with their own return addresses, the 50 others clear", async () => {
    const jobs: string[] = [];
    for (let i = 0; i < 100; i++) jobs.push(i % 2 ? `other:0:${["sleep", "read", "futex"][i % 3]}` : `f:${i % 7}:${["sleep", "read", "futex"][i % 3]}`);
    const fx = await fixture(jobs);
    try {
      const f = fx.range("f");
      const v = await checkFixture(fx, [f], [{ lo: f.lo, hi: f.lo + 5n, name: "f" }]);
      expect(v.stats!.threads).toBe(101);
      expect(v.stats!.conservative).toBe(0);
      const got = byTid(v);
      const inF = fx.threads.filter((t) => t.mode === "f");
      expect(inF.length).toBe(50);
      expect(v.blockers.length).toBe(50);
      for (const t of inF) {
        const b = got.get(`${t.tid} inside`)!;
        expect(b, `thread ${t.tid}`).toBeDefined();
        expect(hex(b.returnAddr)).toBe(hex(t.ra));
        expect(hex(b.returnSp)).toBe(hex(t.cfa - 8n));
      }
    } finally {
      await done(fx);
    }
  });

  it("without CFI for f (-fno-asynchronous-unwind-tables): the conservative scan still blocks, with no return address", async () => {
    const fx = await fixture(["f:2:sleep", "other:0:sleep"], ["-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]);
    try {
      const f = fx.range("f");
      const v = await checkFixture(fx, [f], []);
      const t = fx.threads.find((x) => x.mode === "f")!;
      const b = v.blockers.find((x) => x.tid === t.tid);
      expect(b).toMatchObject({ kind: "inside", returnAddr: 0n, returnSp: 0n, depth: -1 });
      expect(b!.how).toMatch(/^conservative: /);
      expect(v.blockers.length).toBe(1);
      expect(v.stats!.conservative).toBeGreaterThan(0);
    } finally {
      await done(fx);
    }
  });

  it("an executable linked without .eh_frame_hdr: its .eh_frame from the file's sections, precise as before", async () => {
    const fx = await fixture(["f:2:sleep", "other:0:sleep"], ["-Wl,--no-eh-frame-hdr"]);
    try {
      expect(run("readelf", ["-lW", fx.exe])).not.toMatch(/GNU_EH_FRAME/);
      const f = fx.range("f");
      let info: { fromHdr: boolean; fdes: number } | undefined;
      const v = await checkFixture(fx, [f], [], SAFETY_STACK_WINDOW, (pu) => {
        const m = pu.modules.find((x) => x.path === fx.exe)!;
        expect(m.skipped).toBeUndefined();
        info = pu.registry.moduleInfo(m.id);
      });
      expect(info!.fromHdr).toBe(false);
      expect(info!.fdes).toBeGreaterThan(5);
      const t = fx.threads.find((x) => x.mode === "f")!;
      expect(v.blockers.length).toBe(1);
      expect(v.blockers[0]).toMatchObject({ tid: t.tid, kind: "inside", how: "precise", returnAddr: t.ra, returnSp: t.cfa - 8n });
    } finally {
      await done(fx);
    }
  });

  it("prepare registers the executable, libc, ld.so and the vDSO at their runtime addresses", async () => {
    const fx = await fixture(["other:0:sleep"]);
    try {
      const maps = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps");
      const pu = ProcessUnwind.prepare(core, { pid: fx.pid, maps });
      try {
        const names = pu.modules.filter((m) => m.id).map((m) => m.path.replace(/^.*\//, ""));
        expect(names).toEqual(expect.arrayContaining(["safety", "[vdso]", expect.stringMatching(/^libc\.so/), expect.stringMatching(/^ld-linux/)]));
        // the row of f at its runtime address comes from the executable's module
        const row = pu.registry.row(fx.sym.f);
        expect(row).not.toBeNull();
        expect(row!.fdeBegin).toBe(fx.sym.f);
        // glibc's __restore_rt has CFI (an 'S' CIE); the fixture's own restorer has none
        expect(pu.trampolines).toEqual([fx.sym.my_restore_rt]);
        expect(pu.modules.find((m) => /\/libc\.so/.test(m.path))!.signalCie).toBe(true);
        // where a handler returns to: the fixture's restorer, and glibc's __restore_rt (libc's and
        // ld.so's copies), from their 'S' FDEs
        expect(pu.sigRanges.filter((r) => r.lo === fx.sym.my_restore_rt).length).toBe(1);
        const glibc = pu.sigRanges.filter((r) => r.lo !== fx.sym.my_restore_rt);
        const libc = pu.modules.find((m) => /\/libc\.so/.test(m.path))!;
        expect(glibc.some((r) => r.lo >= libc.start && r.hi <= libc.end)).toBe(true);
        for (const r of glibc) expect(pu.registry.row(r.lo + 1n)!.signalFrame).toBe(true);
      } finally {
        pu.close();
      }
    } finally {
      await done(fx);
    }
  });
});

/**
 * The tracer's scan (Tracer.stopAndProve: the same stop and scan as stopCheckPatch, the
 * world held) and the precise check on the very same stopped world.
 */
async function proveFixture(fx: Fixture, forbidden: Range[], windows: Range[], maxScan?: number, spans?: Span[]) {
  return stopped(
    fx,
    (tracer, pu) => tracer.stopAndProve(spans ?? pu.proofSpans(forbidden, windows), { window: SAFETY_STACK_WINDOW, maxScan }),
    async (pu, tracer, world, r) => {
      const v = await pu.check(tracer, world, forbidden, windows);
      // whatever the scan said, it never proves a stop the check refuses
      if (r.proven) expect(v.blockers).toEqual([]);
      return { r, v, sigRanges: pu.sigRanges };
    },
  );
}

const PROOF = { pc: 1, word: 2, tooMuch: 4, unreadable: 5, offStack: 10 } as const;

function readMem(pid: number, addr: bigint, len: number): Uint8Array {
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    const b = new Uint8Array(len);
    readSync(fd, b, 0, len, Number(addr));
    return b;
  } finally {
    closeSync(fd);
  }
}

describe("the tracer's scan inside the stop: proves only stops the precise check clears", () => {
  it("threads parked inside f: a return address into f on a stack, not proven", async () => {
    const fx = await fixture(["f:0:sleep", "f:3:read", "other:0:sleep"]);
    try {
      const f = fx.range("f");
      const { r, v, sigRanges } = await proveFixture(fx, [f], []);
      expect(v.safe).toBe(false);
      expect(r.proven).toBe(false);
      expect(r.reason).toBe(PROOF.word);
      // a return address into f, or (the fixture's main thread holds its restorer's
      // address in a local) a word that looks like a signal frame's
      const inF = r.addr > f.lo && r.addr <= f.hi;
      expect(inF || sigRanges.some((s) => r.addr >= s.lo && r.addr <= s.hi)).toBe(true);
      if (inF) expect(fx.threads.filter((t) => t.mode === "f").map((t) => t.tid)).toContain(r.tid);
      // the word is on that thread's stack, above its stack pointer
      const sp = r.world.threads.find((t) => t.tid === r.tid)!.sp;
      expect(r.where >= sp).toBe(true);
      expect(r.why).toMatch(new RegExp(`a stack word is in a span: tid ${r.tid} \\(${hex(r.addr)} at ${hex(r.where)}\\)`));
      // f not forbidden: the check clears the stop; the scan still does not prove it, held
      // only by the main thread's local copy of its restorer's address (a sigreturn
      // trampoline word: a signal frame, as far as a scan can tell)
      const other = await proveFixture(fx, [fx.range("spin_entry")], [{ lo: f.lo, hi: f.lo + 5n, name: "f" }]);
      expect(other.r.proven).toBe(false);
      expect(other.r.tid).toBe(fx.pid);
      expect(other.sigRanges.some((s) => other.r.addr >= s.lo && other.r.addr <= s.hi)).toBe(true);
      expect(other.r.scanned).toBeGreaterThan(0);
      expect(other.v.safe).toBe(true);
    } finally {
      await done(fx);
    }
  });

  it("a thread spinning in f: its pc (or a return address) in f, not proven", async () => {
    const fx = await fixture(["spin:0", "spin:4", "other:0:futex"]);
    try {
      const { r, v } = await proveFixture(fx, [fx.range("f")], []);
      expect(v.safe).toBe(false);
      expect(r.proven).toBe(false);
      expect([PROOF.pc, PROOF.word]).toContain(r.reason);
    } finally {
      await done(fx);
    }
  });

  it("signal handlers that interrupted f (on a sigaltstack, without CFI, with a restorer without CFI): never proven", async () => {
    for (const jobs of [["signal:2", "other:0:sleep"], ["sigjit:2", "other:0:sleep"], ["rt:1", "other:0:sleep"], ["sigleaf:1", "other:0:sleep"]]) {
      const fx = await fixture(jobs);
      try {
        const { r, v } = await proveFixture(fx, [fx.range("f")], []);
        expect(v.safe, jobs[0]).toBe(false);
        expect(r.proven, jobs[0]).toBe(false);
      } finally {
        await done(fx);
      }
    }
  });

  it("a signal frame on a sigaltstack, nothing forbidden in it: not proven (the stack it interrupted may be elsewhere), the check clears it", async () => {
    const fx = await fixture(["signal:2", "other:0:sleep"]);
    try {
      const { r, v, sigRanges } = await proveFixture(fx, [fx.range("spin_entry")], []);
      expect(v.safe).toBe(true);
      expect(r.proven).toBe(false);
      // the thread runs on its alternate stack (mapped below its own: the span up to its
      // thread pointer crosses the guard page) and holds a signal frame there; the main
      // thread holds its restorer's address: whichever the scan meets first
      expect([PROOF.word, PROOF.unreadable, PROOF.offStack]).toContain(r.reason);
      const tid = fx.threads.find((t) => t.mode === "signal")!.tid;
      if (r.reason !== PROOF.word) expect(r.tid).toBe(tid);
      // the alternate stack holds the signal frame's return address, a sigreturn trampoline
      const sp = r.world.threads.find((t) => t.tid === tid)!.sp;
      const alt = parseMaps(readFileSync(`/proc/${fx.pid}/maps`, "utf8"), "maps").find((m) => sp >= m.start && sp < m.end)!;
      const words = new BigUint64Array(readMem(fx.pid, sp, Number(alt.end - sp)).buffer);
      expect([...words].some((w) => sigRanges.some((s) => w >= s.lo && w <= s.hi))).toBe(true);
      // without the trampolines among the spans (a restorer patchc would not know): still
      // not proven, by where the thread runs
      const spin = fx.range("spin_entry");
      const blind = await proveFixture(fx, [spin], [], undefined, [{ lo: spin.lo + 1n, hi: spin.hi }]);
      expect(blind.r.proven).toBe(false);
      expect([PROOF.unreadable, PROOF.offStack]).toContain(blind.r.reason);
      expect(blind.r.tid).toBe(tid);
    } finally {
      await done(fx);
    }
  });

  it("stacks larger than the scan limit: not proven, and says so", async () => {
    const fx = await fixture(["other:0:sleep"]);
    try {
      const { r, v } = await proveFixture(fx, [fx.range("f")], [], 256);
      expect(v.safe).toBe(true);
      expect(r.proven).toBe(false);
      expect(r.reason).toBe(PROOF.tooMuch);
      expect(r.why).toMatch(/^the stacks are larger than the scan limit: tid \d+/);
    } finally {
      await done(fx);
    }
  });
});
