// Remote syscalls (mmap, munmap, mprotect, memfd_create, ftruncate, close) in
// threads stopped anywhere, blocking syscalls included; seccomp checks before any
// injection; transactions and their rollback; waiting for a return.
import { readFileSync, readlinkSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MAP, PROT, SYS, Tracer, type Regs } from "../src/shim/index.js";
import { maps, perTest, rejects, sleep, until } from "./helpers/shim.js";

const { tracer, target } = perTest();


function expectClean(r: { violations: number; messages: string[] }): void {
  expect(r.messages).toEqual([]);
  expect(r.violations).toBe(0);
}

const ANON = MAP.PRIVATE | MAP.ANONYMOUS;
const mapped = (pid: number, a: bigint) => maps(pid).find((m) => m.lo === a);

describe("remote syscalls restore the thread exactly", () => {
  it("in threads blocked in read, accept, futex, cond, nanosleep, epoll_wait, and a tight loop", async () => {
    const tg = await target(["--blocked", "--spin", "--sleepers", "4", "--norestart"]);
    const t = tracer();
    await t.attach(tg.pid);
    const roles = ["read", "accept", "futex", "futex_timeout", "cond", "nanosleep", "epoll", "spin", "norestart"];
    const blockedIn: Record<string, number[]> = {
      read: [0],
      accept: [43, 288],
      futex: [202],
      futex_timeout: [202, 219],
      cond: [202],
      nanosleep: [35, 230, 219],
      epoll: [232, 281],
      norestart: [0],
    };
    const t0 = Date.now();
    let injected = 0;
    for (let round = 0; round < 12; round++) {
      const w = await t.stopWorld();
      for (const role of roles) {
        const tid = tg.ready.roles[role];
        const before: Regs = w.threads.find((x) => x.tid === tid)!.regs;
        if (round === 0 && blockedIn[role]) {
          expect(blockedIn[role], role).toContain(Number(BigInt.asIntN(64, before.orig_rax)));
          expect(BigInt.asIntN(64, before.rax) < 0n, role).toBe(true);
        }
        const addr = await t.mmap(tid, { length: 8192, prot: PROT.READ, flags: ANON });
        expect(mapped(tg.pid, addr)?.perms).toBe("r--p");
        await t.munmap(tid, addr, 8192);
        expect(mapped(tg.pid, addr)).toBeUndefined();
        expect(await t.getRegs(tid), role).toEqual(before);
        injected++;
      }
      // a real SIGUSR2 while stopped: its handler (no SA_RESTART) makes read fail with EINTR, as it would have
      if (round === 5) process.kill(tg.pid, "SIGUSR2");
      await t.resumeAll();
      await sleep(20 + Math.random() * 40);
    }
    // one thread alone while the world runs
    for (const role of ["read", "epoll", "spin"]) {
      const a = await t.mmap(tg.ready.roles[role], { length: 4096, prot: PROT.READ, flags: ANON });
      await t.munmap(tg.ready.roles[role], a, 4096);
    }
    await t.detach();
    // let the 3 s futex timeouts and 2 s sleeps run out across the stops
    await sleep(Math.max(0, 3600 - (Date.now() - t0)));
    const r = await tg.wakeBlocked();
    expectClean(r);
    for (const k of ["read", "accept", "futex", "cond", "epoll"]) expect(r[k], k).toBe(1);
    expect(Number(r.futex_timeout)).toBeGreaterThanOrEqual(1);
    expect(Number(r.nanosleep)).toBeGreaterThanOrEqual(1);
    expect(Number(r.spins)).toBeGreaterThan(0);
    expect(r.usr2).toBe(1);
    expect(r.usr2_eintr).toBe(1);
    expect(Number(r.slept_real)).toBeGreaterThanOrEqual(Number(r.slept_req));
    expect(injected).toBe(12 * roles.length);
  });

  it("mmap at a chosen address with MAP_FIXED_NOREPLACE, R+X, filled through /proc/PID/mem", async () => {
    const tg = await target(["--workers", "1"]);
    const t = tracer();
    await t.attach(tg.pid);
    const v = tg.ready.version;
    const taken = maps(tg.pid);
    let want = (v + 0x10000000n) & ~0xfffn;
    while (taken.some((m) => want < m.hi && want + 0x2000n > m.lo)) want += 0x100000n;
    const a = await t.mmap(tg.pid, { addr: want, length: 8192, prot: PROT.READ | PROT.EXEC, flags: ANON | MAP.FIXED_NOREPLACE });
    expect(a).toBe(want);
    expect(mapped(tg.pid, a)?.perms).toBe("r-xp");
    const e = await rejects(t.mmap(tg.pid, { addr: want, length: 4096, prot: PROT.READ, flags: ANON | MAP.FIXED_NOREPLACE }));
    expect(e).toMatchObject({ code: "EEXIST", op: "mmap", tid: tg.pid, errno: 17 });
    expect(e.message).toMatch(/^mmap: remote mmap\(0x[0-9a-f]+, 4096, PROT_READ, 0x100022\) in tid \d+ failed: EEXIST/);
    const code = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff);
    await t.writeText(a, code);
    expect(await t.read(a, 4096)).toEqual(code);
    // never writable and executable
    const wx = await rejects(t.mmap(tg.pid, { length: 4096, prot: PROT.WRITE | PROT.EXEC, flags: ANON }));
    expect(wx.code).toBe("BAD_ARGUMENT");
    const wx2 = await rejects(t.mprotect(tg.pid, a, 4096, PROT.READ | PROT.WRITE | PROT.EXEC));
    expect(wx2.code).toBe("BAD_ARGUMENT");
    await t.mprotect(tg.pid, a, 4096, PROT.READ);
    expect(mapped(tg.pid, a)?.perms).toBe("r--p");
    await t.munmap(tg.pid, a, 8192);
    await t.detach();
    expectClean(await tg.report());
  });

  it("memfd_create, ftruncate, a private R+X mapping that shows its name, close", async () => {
    const tg = await target([]);
    const t = tracer();
    await t.attach(tg.pid);
    const fd = await t.memfdCreate(tg.pid, "patchc-test");
    expect(readlinkSync(`/proc/${tg.pid}/fd/${fd}`)).toBe("/memfd:patchc-test (deleted)");
    await t.ftruncate(tg.pid, fd, 8192);
    // private: /proc/PID/mem writes through protections only into private (copy-on-write) mappings
    const a = await t.mmap(tg.pid, { length: 8192, prot: PROT.READ | PROT.EXEC, flags: MAP.PRIVATE, fd });
    const sh = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ | PROT.EXEC, flags: MAP.SHARED, fd });
    await t.closeFd(tg.pid, fd);
    expect(() => readlinkSync(`/proc/${tg.pid}/fd/${fd}`)).toThrow();
    const m = mapped(tg.pid, a)!;
    expect(m.perms).toBe("r-xp");
    expect(m.path).toBe("/memfd:patchc-test (deleted)");
    await t.writeText(a + 4096n, Uint8Array.of(0xc3, 0x90));
    expect([...(await t.read(a + 4096n, 2))]).toEqual([0xc3, 0x90]);
    const e = await rejects(t.writeText(sh, Uint8Array.of(0xc3)));
    expect(e.code).toBe("EIO");
    expect(e.message).toContain("shared mapping");
    await t.munmap(tg.pid, a, 8192);
    await t.munmap(tg.pid, sh, 4096);
    await t.detach();
    expectClean(await tg.report());
  });
});

describe("seccomp", () => {
  it("under a MemoryDenyWriteExecute-like filter: R+X patch memory works, mprotect(PROT_EXEC) is refused, not tried", async () => {
    const tg = await target(["--seccomp", "mdwe", "--sleepers", "2"]);
    const t = tracer();
    await t.attach(tg.pid);
    const s = await t.seccomp(tg.pid);
    expect(s.mode).toBe(2);
    expect(s.count).toBe(1);
    expect(s.fingerprint).not.toBe(0n);
    expect(s.filters.length).toBe(8 + 17 * 8);
    const a = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ | PROT.EXEC, flags: ANON });
    await t.writeText(a, Uint8Array.of(0xb8, 2, 0, 0, 0, 0xc3));
    await t.mprotect(tg.pid, a, 4096, PROT.READ); // no PROT_EXEC: allowed
    const e = await rejects(t.mprotect(tg.pid, a, 4096, PROT.READ | PROT.EXEC));
    expect(e.code).toBe("SECCOMP_DENIED");
    expect(e.message).toMatch(/^mprotect: the seccomp filters of tid \d+ would fail the call with EPERM for mprotect\(0x[0-9a-f]+, 0x1000, 0x5, \.\.\.\) \(they return 0x50001, ERRNO\); not attempted$/);
    expect(mapped(tg.pid, a)?.perms).toBe("r--p");
    await t.detach();
    expectClean(await tg.report());
  });

  it("under the kernel's own memory-deny-write-execute (PR_SET_MDWE) too", async () => {
    const tg = await target(["--kernel-mdwe", "--sleepers", "1"]);
    const t = tracer();
    await t.attach(tg.pid);
    const a = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ | PROT.EXEC, flags: ANON });
    await t.writeText(a, Uint8Array.of(0xb8, 2, 0, 0, 0, 0xc3));
    expect([...(await t.read(a, 6))]).toEqual([0xb8, 2, 0, 0, 0, 0xc3]);
    expect(mapped(tg.pid, a)?.perms).toBe("r-xp");
    // what the kernel refuses is reported with the remote errno
    const b = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ, flags: ANON });
    const e = await rejects(t.mprotect(tg.pid, b, 4096, PROT.READ | PROT.EXEC));
    expect(e.code).toBe("EACCES");
    expect(e.message).toMatch(/^mprotect: remote mprotect\(0x[0-9a-f]+, 4096, PROT_READ\|PROT_EXEC\) in tid \d+ failed: EACCES$/);
    await t.detach();
    expectClean(await tg.report());
  });

  it("a call that would kill the process is not attempted", async () => {
    const tg = await target(["--seccomp", "kill-memfd"]);
    const t = tracer();
    await t.attach(tg.pid);
    const e = await rejects(t.memfdCreate(tg.pid, "x"));
    expect(e.code).toBe("SECCOMP_DENIED");
    expect(e.message).toContain("would kill the process for memfd_create");
    await t.detach();
    expect(tg.alive).toBe(true);
    expectClean(await tg.report());
  });

  it("inside a transaction the undo must pass too: munmap raising SIGSYS refuses the mmap", async () => {
    const tg = await target(["--seccomp", "trap-munmap"]);
    const t = tracer();
    await t.attach(tg.pid);
    await t.begin();
    const e = await rejects(t.mmap(tg.pid, { length: 4096, prot: PROT.READ, flags: ANON }));
    expect(e.message).toContain("would send it SIGSYS for munmap");
    await t.commit();
    await t.detach();
    expectClean(await tg.report());
  });

  it("strict mode refuses everything", async () => {
    const tg = await target(["--seccomp", "strict"]);
    const t = tracer();
    await t.attach(tg.pid);
    const e = await rejects(t.mmap(tg.pid, { length: 4096, prot: PROT.READ, flags: ANON }));
    expect(e.message).toMatch(/^mmap: tid \d+ is in seccomp strict mode/);
    await t.detach();
    tg.send("");
    await tg.line("strict");
  });

  it("the tracer refuses a call checked against other filters than the thread's", async () => {
    const tg = await target(["--seccomp", "mdwe"]);
    const t = tracer();
    await t.attach(tg.pid);
    const native = (t as unknown as { native: { syscall: (...a: unknown[]) => Promise<unknown> } }).native;
    const args = new BigUint64Array([0n, 4096n, 1n, BigInt(ANON), BigInt.asUintN(64, -1n), 0n]);
    await expect(native.syscall(tg.pid, SYS.mmap, args, 0n, null, 0)).rejects.toMatchObject({ code: "SECCOMP_UNCHECKED" });
    await t.detach();
  });
});

describe("transactions", () => {
  it("rollback unmaps what the transaction mapped and restores what it wrote", async () => {
    const tg = await target(["--workers", "2"]);
    const t = tracer();
    await t.attach(tg.pid);
    const v = tg.ready.version;
    const orig = await t.read(v, 6);
    await t.begin();
    const a = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ | PROT.EXEC, flags: ANON });
    await t.writeText(a, Uint8Array.of(0xb8, 2, 0, 0, 0, 0xc3)); // fresh memory: no journal entry needed
    const lw = await rejects(t.writeText(v, Uint8Array.of(0x90)));
    expect(lw.code).toBe("TXN_LIVE_WRITE");
    const un = await rejects(t.munmap(tg.pid, v & ~0xfffn, 4096));
    expect(un.code).toBe("TXN_NO_UNDO");
    await t.stopWorld();
    await t.writeText(v, Uint8Array.of(0xb8, 2, 0, 0, 0, 0xc3));
    const live = await rejects(t.resumeAll());
    expect(live.code).toBe("TXN_LIVE_CHANGES");
    expect(await t.rollback()).toBe(2);
    expect(await t.read(v, 6)).toEqual(orig);
    expect(mapped(tg.pid, a)).toBeUndefined();
    await t.resumeAll();
    await t.detach();
    const r = await tg.report();
    expectClean(r);
    expect(r.new).toBe(0);
  });

  it("patchc going away mid-transaction rolls it back: the memfd is closed, the mapping gone", async () => {
    const tg = await target([]);
    const t = Tracer.open();
    await t.attach(tg.pid);
    await t.begin();
    const fd = await t.memfdCreate(tg.pid, "patchc-rollback");
    await t.ftruncate(tg.pid, fd, 4096);
    const a = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ, flags: MAP.SHARED, fd });
    expect(readlinkSync(`/proc/${tg.pid}/fd/${fd}`)).toContain("patchc-rollback");
    await t.close(); // EOF for the tracer, as if patchc died
    await until(() => !/patchc-rollback/.test(readFileSync(`/proc/${tg.pid}/maps`, "utf8")), 5000, "the rollback");
    expect(mapped(tg.pid, a)).toBeUndefined();
    expect(() => readlinkSync(`/proc/${tg.pid}/fd/${fd}`)).toThrow();
    expectClean(await tg.report());
  });
});

describe("waiting for a return", () => {
  it("a worker inside slow() returns to its caller; the breakpoint is gone after", async () => {
    const tg = await target(["--workers", "2"]);
    const t = tracer();
    const a = await t.attach(tg.pid);
    const workers = a.tids.filter((x) => x !== tg.pid);
    let hits = 0;
    for (let i = 0; i < 20 && hits < 3; i++) {
      const w = await t.stopWorld();
      const th = w.threads.find((x) => workers.includes(x.tid) && x.pc >= tg.ready.slow && x.pc < tg.ready.slow + 256n);
      if (!th) {
        await t.resumeAll();
        continue;
      }
      const r = await t.waitReturn(th.tid, tg.ready.slow_ret, { sp: th.sp, timeoutMs: 2000 });
      expect(r.hit).toBe(true);
      expect(r.rsp).toBeGreaterThan(th.sp);
      expect(r.elapsedNs).toBeLessThan(2e9);
      hits++;
      await t.stopWorld();
      expect((await t.debugRegs(th.tid))[7]).toBe(0n);
      await t.resumeAll();
    }
    expect(hits).toBeGreaterThan(0);
    // an address no thread runs: the timeout, nothing left armed
    await t.stopWorld();
    const r = await t.waitReturn(workers[0], 0x1000n, { timeoutMs: 150 });
    expect(r.hit).toBe(false);
    expect(r.elapsedNs).toBeGreaterThanOrEqual(150e6);
    await t.stopWorld();
    expect((await t.debugRegs(workers[0]))[7]).toBe(0n);
    await t.resumeAll();
    await t.detach();
    await sleep(50);
    expectClean(await tg.report());
  });

  it("a breakpoint hit as it is disarmed leaves no SIGTRAP behind", async () => {
    // each worker returns from slow() every ~0.2 ms: now and then it hits the
    // breakpoint just as the tracer interrupts it to disarm, and the interrupt's stop
    // is reported with the breakpoint's SIGTRAP still queued behind it
    const tg = await target(["--workers", "2"]);
    const t = tracer();
    let hits = 0;
    let waits = 0;
    for (let i = 0; i < 100 && (i < 40 || hits < 30); i++) {
      const a = await t.attach(tg.pid);
      const workers = a.tids.filter((x) => x !== tg.pid);
      for (let k = 0; k < 3; k++) {
        await t.stopWorld();
        const r = await t.waitReturn(workers[k % 2], tg.ready.slow_ret, { timeoutMs: 2 + k * 2 });
        hits += r.hit ? 1 : 0;
        waits++;
      }
      await t.detach();
      expect(tg.alive, `after ${i + 1} detaches`).toBe(true);
    }
    expect(hits).toBeGreaterThan(20);
    await sleep(100);
    expect(tg.alive).toBe(true);
    expectClean(await tg.report());
  });
});
