// Attach, stop the world, registers, memory, resume, detach, on targets that
// check their own invariants (test/fixtures/shim/target.c), and the targets the
// shim must refuse without touching them.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Device, TS, Tracer, listTasks } from "../src/shim/index.js";
import { Target, alive, compile, perTest, procStatus, rejects, sleep, tracerPidOf, until } from "./helpers/shim.js";

const { tracer, target } = perTest();

/** The target's report once `ok` holds for it (polled: signals are handled when the target gets a CPU). */
async function reportWhen(tg: Target, ok: (r: Awaited<ReturnType<Target["report"]>>) => boolean, timeoutMs = 10_000): Promise<Awaited<ReturnType<Target["report"]>>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await tg.report();
    if (ok(r) || Date.now() > end) return r;
    await sleep(20);
  }
}

function expectClean(r: { violations: number; messages: string[] }): void {
  expect(r.messages).toEqual([]);
  expect(r.violations).toBe(0);
}

/** Tasks of a process that are not zombies. */
function liveTasks(pid: number): number[] {
  return listTasks(pid).filter((tid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      return !/\) [ZX] /.test(stat);
    } catch {
      return false;
    }
  });
}


describe("attach and stop the world", () => {
  it("a single-threaded target blocked in read: registers, stack, restart, no trace left", async () => {
    const tg = await target([]);
    const t = tracer();
    const a = await t.attach(tg.pid);
    expect(a).toMatchObject({ pid: tg.pid, tids: [tg.pid], sharers: [], jobStopped: false });
    expect(tracerPidOf(tg.pid)).toBe(t.pid);
    const w = await t.stopWorld({ window: 4096 });
    expect(w.threads.map((x) => x.tid)).toEqual([tg.pid]);
    const th = w.threads[0];
    expect(th.flags & TS.STOPPED).toBeTruthy();
    expect(th.flags & TS.IN_SYSCALL).toBeTruthy();
    // stopped inside read(0, ...): orig_rax = 0, rax = -ERESTARTSYS, rip after `syscall`
    expect(th.regs.orig_rax).toBe(0n);
    expect(BigInt.asIntN(64, th.regs.rax)).toBe(-512n);
    expect(th.regs.rdi).toBe(0n);
    const before = await t.read(th.pc - 2n, 2);
    expect([...before]).toEqual([0x0f, 0x05]);
    // the stack window is the thread's memory at rsp
    expect(th.sp).toBe(th.regs.rsp);
    expect(th.stack.length).toBeGreaterThan(64);
    expect(await t.read(th.sp, th.stack.length)).toEqual(th.stack);
    // the same registers one by one
    expect(await t.getRegs(tg.pid)).toEqual(th.regs);
    // fs_base is the thread pointer: glibc's TCB starts with a pointer to itself
    const tcb = await t.read(th.regs.fs_base, 8);
    expect(new DataView(tcb.buffer, tcb.byteOffset).getBigUint64(0, true)).toBe(th.regs.fs_base);
    expect(w.totalNs).toBeGreaterThan(0);
    const r = await t.resumeAll();
    expect(r.pauseNs).toBeGreaterThanOrEqual(w.totalNs);
    await t.detach();
    expect(tracerPidOf(tg.pid)).toBe(0);
    // read(0) was restarted, not failed: the target still serves commands
    expectClean(await tg.report());
  });

  it("100 threads, stopped and resumed 20 times, keep their sleeps exact", async () => {
    const tg = await target(["--sleepers", "100"]);
    const t = tracer();
    const a = await t.attach(tg.pid);
    expect(a.tids.length).toBe(101);
    for (let i = 0; i < 20; i++) {
      const w = await t.stopWorld({ window: 256 });
      expect(w.threads.length).toBe(101);
      expect(w.threads.every((x) => x.flags & TS.STOPPED)).toBe(true);
      expect(new Set(w.threads.map((x) => x.tid))).toEqual(new Set(liveTasks(tg.pid)));
      await t.resumeAll();
      await sleep(5);
    }
    await t.detach();
    const r = await tg.report();
    expectClean(r);
    expect(Number(r.sleeps)).toBeGreaterThan(100);
    expect(Number(r.slept_real)).toBeGreaterThanOrEqual(Number(r.slept_req));
  });

  it("threads created and exiting all the time: every live thread is stopped", async () => {
    const tg = await target(["--churn", "--workers", "2", "--sleepers", "2"]);
    const t = tracer();
    await t.attach(tg.pid);
    let seen = 0;
    for (let i = 0; i < 30; i++) {
      const w = await t.stopWorld();
      // while the world is stopped no thread can be born or die
      const ids = w.threads.map((x) => x.tid).sort((x, y) => x - y);
      expect(ids).toEqual(liveTasks(tg.pid).sort((x, y) => x - y));
      seen = Math.max(seen, ids.length);
      await t.resumeAll();
      await sleep(Math.random() * 10);
    }
    await t.detach();
    const r = await tg.report();
    expectClean(r);
    expect(Number(r.created)).toBeGreaterThan(100);
    expect(seen).toBeGreaterThan(5);
  });

  it("a thread in a tight loop: its registers are the ones it holds", async () => {
    const tg = await target(["--spin"]);
    const t = tracer();
    await t.attach(tg.pid);
    const spin = tg.ready.roles.spin;
    let inLoop = 0;
    for (let i = 0; i < 40 && inLoop < 3; i++) {
      const w = await t.stopWorld();
      const th = w.threads.find((x) => x.tid === spin)!;
      if (th.regs.r8 === 0x0101010101010101n) {
        // inside the asm loop: every register holds its pattern
        expect(th.regs.r9).toBe(0x0202020202020202n);
        expect(th.regs.r15).toBe(0x0808080808080808n);
        expect(th.regs.rbx).toBe(0x0909090909090909n);
        expect(th.regs.rdi).toBe(0x0b0b0b0b0b0b0b0bn);
        inLoop++;
      }
      await t.resumeAll();
    }
    expect(inLoop).toBeGreaterThan(0);
    await t.detach();
    const r = await tg.report();
    expectClean(r);
    expect(Number(r.spins)).toBeGreaterThan(0);
  });

  it("setRegs writes what the thread then runs with; a rollback restores it", async () => {
    const tg = await target(["--spin"]);
    const t = tracer();
    await t.attach(tg.pid);
    const spin = tg.ready.roles.spin;
    // inside a transaction: the write is undone by the rollback, the target sees nothing
    for (let i = 0; i < 200; i++) {
      const w = await t.stopWorld();
      const regs = w.threads.find((x) => x.tid === spin)!.regs;
      if (regs.r8 !== 0x0101010101010101n || regs.rcx < 1000n) {
        await t.resumeAll();
        continue;
      }
      await t.begin();
      await t.setRegs(spin, { ...regs, r8: 0x1234n });
      expect((await t.getRegs(spin)).r8).toBe(0x1234n);
      expect(await t.rollback()).toBe(1);
      expect(await t.getRegs(spin)).toEqual(regs);
      await t.resumeAll();
      // outside one: the spinner sees its r8 changed and reports it, once
      await t.stopWorld();
      const again = await t.getRegs(spin);
      if (again.r8 === 0x0101010101010101n && again.rcx >= 1000n) {
        await t.setRegs(spin, { ...again, r8: 0x1234n });
        await t.resumeAll();
        break;
      }
      await t.resumeAll();
    }
    await t.detach();
    const r = await reportWhen(tg, (x) => x.violations >= 1);
    expect(r.violations).toBe(1);
    expect(r.messages).toEqual(["spin: a register changed under the loop"]);
  });

  it("signals that arrive while stopped are delivered after, none swallowed", async () => {
    const tg = await target(["--signals", "--alarm", "--sleepers", "4"]);
    const t = tracer();
    await t.attach(tg.pid);
    const w = await t.stopWorld();
    process.kill(tg.pid, "SIGUSR1");
    for (let i = 0; i < 10; i++) process.kill(tg.pid, 35); // SIGRTMIN+1: queued, one per kill
    await sleep(50);
    // the signal thread runs a remote syscall meanwhile (it dequeues the signals)
    await t.mmap(tg.ready.roles.signals, { length: 4096, prot: 1, flags: 0x22 });
    expect(w.threads.length).toBeGreaterThan(4);
    await t.resumeAll();
    // delivered once the signal thread runs (a loaded machine may take a while): then
    // exactly as many as were sent, none more
    let r = await reportWhen(tg, (x) => Number(x.usr1) >= 1 && Number(x.rt) >= 10);
    expect(r.usr1).toBe(1);
    expect(r.rt).toBe(10);
    // and while attached but running, and with a detach while they are pending
    for (let i = 0; i < 5; i++) process.kill(tg.pid, 35);
    await t.stopWorld();
    for (let i = 0; i < 5; i++) process.kill(tg.pid, 35);
    await t.detach();
    r = await reportWhen(tg, (x) => Number(x.rt) >= 20);
    expect(r.rt).toBe(20);
    expect(r.usr1).toBe(1);
    expectClean(r);
    // SIGALRM every 10 ms goes on being counted after all this
    const alarms = Number(r.alarm);
    expect(alarms).toBeGreaterThan(0);
    r = await reportWhen(tg, (x) => Number(x.alarm) > alarms + 5);
    expectClean(r);
  });

  it("a target stopped by job control stays stopped", async () => {
    const tg = await target(["--spin", "--sleepers", "2"]);
    process.kill(tg.pid, "SIGSTOP");
    await until(() => /^T/.test(procStatus(tg.pid).State), 2000, "job-control stop");
    const t = tracer();
    const a = await t.attach(tg.pid);
    expect(a.jobStopped).toBe(true);
    const cpu = () => readFileSync(`/proc/${tg.pid}/stat`, "utf8").split(") ")[1].split(" ").slice(11, 13).join(" ");
    const w = await t.stopWorld();
    expect(w.threads.every((x) => x.flags & TS.GROUP_STOP)).toBe(true);
    const addr = await t.mmap(tg.ready.roles.spin, { length: 4096, prot: 1, flags: 0x22 });
    expect(addr).toBeGreaterThan(0n);
    await t.resumeAll();
    const c0 = cpu();
    await sleep(300);
    // every thread waits in PTRACE_LISTEN: "t (tracing stop)" while we are attached
    for (const tid of listTasks(tg.pid)) expect(readFileSync(`/proc/${tg.pid}/task/${tid}/stat`, "utf8")).toMatch(/\) [tT] /);
    expect(cpu()).toBe(c0); // the spinner did not run
    await t.detach();
    await sleep(200);
    for (const tid of listTasks(tg.pid)) expect(readFileSync(`/proc/${tg.pid}/task/${tid}/stat`, "utf8")).toMatch(/\) T /);
    expect(cpu()).toBe(c0);
    process.kill(tg.pid, "SIGCONT");
    await sleep(100);
    const r = await tg.report();
    expectClean(r);
  });

  it("readMemory reads many ranges in one call, short where memory ends", async () => {
    const tg = await target(["--sleepers", "3"]);
    const t = tracer();
    await t.attach(tg.pid);
    const exe = readFileSync(`/proc/${tg.pid}/cmdline`, "utf8").split("\0")[0];
    const m = readFileSync(`/proc/${tg.pid}/maps`, "utf8").split("\n").filter(Boolean);
    const text = m.find((l) => l.includes(" r-xp ") && l.endsWith(exe))!;
    const lo = BigInt("0x" + text.split("-")[0]);
    const off = BigInt("0x" + text.split(" ")[2]);
    const vdso = m.find((l) => l.endsWith("[vdso]"))!;
    const spans = m.map((l) => l.split(" ")[0].split("-").map((x) => BigInt("0x" + x)));
    const gapEnd = spans.find(([, e]) => !spans.some(([s2]) => s2 === e))![1]; // a mapping with no neighbour after it
    const vlo = BigInt("0x" + vdso.split("-")[0]);
    const w = await t.stopWorld({ window: 0 });
    const ranges = [
      { addr: lo, len: 64 },
      { addr: 16n, len: 32 }, // unmapped
      { addr: gapEnd - 8n, len: 64 }, // runs past the end of a mapping into unmapped memory
      ...w.threads.map((x) => ({ addr: x.sp, len: 128 })),
      { addr: vlo, len: 16 },
    ];
    const got = await t.readMemory(ranges);
    await t.resumeAll();
    const file = readFileSync(exe);
    expect(Buffer.from(got[0])).toEqual(file.subarray(Number(off), Number(off) + 64));
    expect(got[1].length).toBe(0);
    expect(got[2].length).toBe(8);
    for (let i = 0; i < w.threads.length; i++) expect(got[3 + i].length).toBe(128);
    expect([...got[got.length - 1].subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]); // the vDSO is an ELF image
  });

  it("writes data through process_vm_writev, text through /proc/PID/mem, never EFAULT-silently", async () => {
    const tg = await target(["--workers", "2"]);
    const t = tracer();
    await t.attach(tg.pid);
    const v = tg.ready.version;
    const e = await rejects(t.writeData(v, Uint8Array.of(0xb8)));
    expect(e.code).toBe("EFAULT");
    expect(e.syscall).toBe("process_vm_writev");
    expect(e.message).toMatch(/^writeData: process_vm_writev failed for tid \d+: EFAULT/);
    const orig = await t.read(v, 6);
    const w = await t.stopWorld();
    expect(w.threads.some((x) => x.pc > v && x.pc < v + 6n)).toBe(false);
    await t.writeText(v, Uint8Array.of(0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3));
    await t.resumeAll();
    const n0 = Number((await tg.report()).new);
    expect(Number((await reportWhen(tg, (x) => Number(x.new) > n0)).new)).toBeGreaterThan(n0); // the target runs the new bytes
    await t.stopWorld();
    await t.patchAndResume([{ addr: v, expect: Uint8Array.of(0xb8, 0x02, 0x00, 0x00, 0x00, 0xc3), bytes: orig }]);
    // a site that does not hold what is expected is not written
    await t.stopWorld();
    const m = await rejects(t.patchAndResume([{ addr: v, expect: Uint8Array.of(1, 2, 3, 4, 5, 6), bytes: orig }]));
    expect(m.code).toBe("SITE_MISMATCH");
    expect(m.message).toContain(`0x${v.toString(16)}: the site holds [${[...orig].map((x) => x.toString(16).padStart(2, "0")).join(" ")}]`);
    await t.resumeAll();
    // data: a stack word of the main thread, written and read back
    const w2 = await t.stopWorld({ window: 64 });
    const sp = w2.threads[0].sp - 512n;
    const saved = await t.read(sp, 8);
    await t.writeData(sp, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    expect([...(await t.read(sp, 8))]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await t.writeData(sp, saved);
    await t.resumeAll();
    await t.detach();
    const r = await tg.report();
    expectClean(r);
  });
});

describe("targets the shim refuses", () => {
  it("a dead pid", async () => {
    const p = spawnSync("true");
    const t = tracer();
    const e = await rejects(t.attach(p.pid!));
    expect(e).toMatchObject({ code: "NO_SUCH_PROCESS", errno: 3, op: "attach", tid: p.pid });
    expect(e.message).toBe(`attach: pid ${p.pid} does not exist`);
  });

  it("a zombie", async () => {
    // sh's child exits; sh has exec'd into sleep, which never reaps it
    const sh = spawn("sh", ["-c", "sleep 0 & exec sleep 5"], { stdio: "ignore" });
    let zombie = 0;
    await until(() => {
      try {
        zombie = Number(readFileSync(`/proc/${sh.pid}/task/${sh.pid}/children`, "utf8").trim().split(" ")[0]);
        return zombie > 0 && /^Z/.test(procStatus(zombie).State);
      } catch {
        return false;
      }
    }, 3000, "a zombie");
    const t = tracer();
    const e = await rejects(t.attach(zombie));
    expect(e.code).toBe("ZOMBIE");
    expect(e.message).toMatch(new RegExp(`^attach: pid ${zombie} \\(sleep\\) is a zombie`));
    sh.kill("SIGKILL");
  });

  it("a process already traced, and the tracer itself", async () => {
    const tg = await target(["--sleepers", "2"]);
    const t1 = tracer();
    await t1.attach(tg.pid);
    const t2 = tracer();
    const e = await rejects(t2.attach(tg.pid));
    expect(e.code).toBe("ALREADY_TRACED");
    expect(e.message).toBe(`attach: pid ${tg.pid} (target) is already traced by pid ${t1.pid} (patchc-tracer)`);
    expect(tracerPidOf(tg.pid)).toBe(t1.pid);
    const s = await rejects(t2.attach(t2.pid));
    expect(s.code).toBe("SELF");
    const s2 = await rejects(t2.attach(process.pid));
    expect(s2.code).toBe("SELF");
    await t1.detach();
    expectClean(await tg.report());
  });

  it("a thread id is not a process", async () => {
    const tg = await target(["--sleepers", "1"]);
    const tid = listTasks(tg.pid).find((x) => x !== tg.pid)!;
    const e = await rejects(tracer().attach(tid));
    expect(e.code).toBe("NOT_A_PROCESS");
    expect(e.message).toBe(`attach: pid ${tid} is a thread of process ${tg.pid}; attach to ${tg.pid}`);
  });

  it("a vfork child shares the address space: refused with the reason", async () => {
    const tg = await target(["--vfork"], false);
    await tg.line("vforking");
    let child = 0;
    await until(() => {
      const c = readFileSync(`/proc/${tg.pid}/task/${tg.pid}/children`, "utf8").trim();
      child = Number(c.split(" ")[0]);
      return child > 0;
    }, 3000, "the vfork child");
    await sleep(50);
    const t = tracer();
    for (const stopSharers of [false, true]) {
      const e = await rejects(t.attach(tg.pid, { stopSharers }));
      expect(e.code).toBe("SHARED_VM");
      expect(e.message).toContain(`pid ${tg.pid} shares its address space with pid ${child}`);
      expect(e.message).toContain("vfork");
    }
    expect(tracerPidOf(tg.pid)).toBe(0);
    expect(tracerPidOf(child)).toBe(0);
    process.kill(child, "SIGKILL");
  });

  it("a CLONE_VM sharer: refused, or stopped with the target when asked", async () => {
    const p = spawn(compile("clonevm"), [], { stdio: ["ignore", "pipe", "inherit"] });
    const line: string = await new Promise((r) => p.stdout!.once("data", (d) => r(String(d))));
    const [, parent, child] = line.trim().split(" ").map(Number);
    try {
      const t = tracer();
      const e = await rejects(t.attach(parent));
      expect(e.code).toBe("SHARED_VM");
      expect(e.tid).toBe(child);
      expect(e.message).toContain(`shares its address space (CLONE_VM) with pid ${child}`);
      expect(tracerPidOf(parent)).toBe(0);
      const a = await t.attach(parent, { stopSharers: true });
      expect(a.sharers).toEqual([child]);
      expect(a.tids.sort()).toEqual([parent, child].sort());
      const w = await t.stopWorld();
      const c = w.threads.find((x) => x.tid === child)!;
      expect(c.flags & TS.SHARER).toBeTruthy();
      expect(c.flags & TS.STOPPED).toBeTruthy();
      await t.resumeAll();
      await t.detach();
      expect(tracerPidOf(child)).toBe(0);
      expect(alive(child)).toBe(true);
    } finally {
      p.kill("SIGKILL");
    }
  });
});

describe("errors name the operation, syscall, errno and thread", () => {
  it("operations on a thread the tracer does not trace", async () => {
    const tg = await target([]);
    const t = tracer();
    await t.attach(tg.pid);
    const e = await rejects(t.getRegs(1));
    expect(e).toMatchObject({ code: "NO_SUCH_THREAD", op: "getRegs", tid: 1, errno: 3 });
    const n = await rejects(t.resumeAll());
    expect(n.code).toBe("NOT_STOPPED");
    const r = await rejects(t.read(8n, 8));
    expect(r.code).toBe("EFAULT");
  });

  it("a tracer that is gone", async () => {
    const t = Tracer.open();
    process.kill(t.pid, "SIGKILL");
    await sleep(50);
    const e = await rejects(t.hello());
    expect(e.code).toBe("TRACER_GONE");
    expect(e.message).toMatch(new RegExp(`^hello: the tracer process \\(pid ${t.pid}\\) is gone`));
    await t.close();
  });
});

describe("device ioctl binding", () => {
  it("opens /dev/ptmx, ioctls with buffers in and out, closes", async () => {
    const d = Device.open("/dev/ptmx");
    const unlock = new Uint8Array(4); // TIOCSPTLCK (int in): 0 unlocks
    expect(await d.ioctl(0x40045431, unlock)).toBe(0);
    const n = new Uint8Array(4);
    expect(await d.ioctl(0x80045430, n)).toBe(0); // TIOCGPTN (unsigned int out)
    const pts = new DataView(n.buffer).getUint32(0, true);
    const fd = openSync(`/dev/pts/${pts}`, "r+");
    closeSync(fd);
    const e = await rejects(d.ioctl(0x5401 + 0x7f00, new Uint8Array(64)));
    expect(e.code).toBe("ENOTTY");
    expect(e.syscall).toBe("ioctl");
    expect(e.message).toMatch(/^deviceIoctl: ioctl failed: ENOTTY .*fd \d+, request 0xd301$/);
    d.close();
    expect(() => d.close()).toThrow(/deviceClose: close failed: EBADF/);
    expect(() => Device.open("/dev/does-not-exist")).toThrow(/deviceOpen: open failed: ENOENT .*\/dev\/does-not-exist/);
  });
});
