// The sharer check from a pass over /proc (shim/sharers.c, src/shim/sharers.ts), as
// `patchc apply --all` uses it: one OP_VM_PASS groups every process by address space,
// then each attach compares the target with its group at the pass and the processes
// created since, and must refuse (or stop) exactly the sharers a comparison with every
// process finds: one there at the pass, one created after it (clone(CLONE_VM), vfork).
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { Tracer, type Attached } from "../src/shim/index.js";
import { SharerPass } from "../src/shim/sharers.js";
import type { NativeAttachPass, NativeSharerCheck } from "../src/shim/native.js";
import { LineProcess } from "./helpers/line-process.js";
import { alive, cleanupScratch, compile, rejects, sleep, tracerPidOf } from "./helpers/shim.js";

/** test/fixtures/shim/sharer-later.c: makes sharers when asked. */
class Sharing extends LineProcess {
  static async start(): Promise<Sharing> {
    const p = new Sharing(compile("sharer-later"));
    await p.line("ready");
    return p;
  }

  /** The first line starting with `tag` not taken yet: its number. */
  async line(tag: string): Promise<number> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(tag + " "));
      if (i >= 0) return Number(this.lines.splice(i, 1)[0].slice(tag.length + 1));
      if (!this.alive) throw new Error(`sharer-later exited: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`no "${tag}" line: ${this.lines.join(" | ")}`);
      await this.nextChange(deadline);
    }
  }

  /** Asks for a child of `kind`: its pid. */
  async child(kind: "clone" | "vfork" | "fork"): Promise<number> {
    this.proc.stdin!.write(kind + "\n");
    return this.line(kind);
  }
}

const tracers: Tracer[] = [];
const procs: Sharing[] = [];
const passes: SharerPass[] = [];
function tracer(): Tracer {
  const t = Tracer.open();
  tracers.push(t);
  return t;
}
async function sharing(): Promise<Sharing> {
  const p = await Sharing.start();
  procs.push(p);
  return p;
}
/** A SharerPass that takes a new pass after any break (the default gives up when a pass served fewer than 16 attaches). */
function pass(opts: { minServed?: number } = { minServed: 0 }): SharerPass {
  const p = new SharerPass(opts);
  passes.push(p);
  return p;
}
afterEach(async () => {
  for (const t of tracers.splice(0)) await t.close();
  for (const p of procs.splice(0)) p.proc.kill("SIGKILL"); // children die with it (PR_SET_PDEATHSIG; a vfork child: killed below)
  for (const p of passes.splice(0)) p.close();
});
afterAll(() => cleanupScratch());

/**
 * An attach from `pass` that used it: on this loaded machine the tracer or patchc may not
 * run for longer than the pass's gap (then the check compares with every process and the
 * pass is taken again); a few tries.
 */
async function attachFromPass(t: Tracer, pid: number, pass: SharerPass, stopSharers = false): Promise<Attached> {
  for (let i = 0; ; i++) {
    const a = await t.attach(pid, { pass, stopSharers });
    if (!a.sharerCheck.full || i === 5) return a;
    await t.detach();
  }
}


const processCount = () => readFileSync("/proc/loadavg", "utf8"); // for messages only

describe("a pass over /proc", () => {
  it("groups the processes of one address space together and every other process alone", async () => {
    const p = await sharing();
    const c = await p.child("clone");
    const f = await p.child("fork");
    const t = tracer();
    const v = await t.vmPass();
    expect(v.pids.length).toBe(v.same.length);
    const at = (pid: number) => v.pids.indexOf(pid);
    const group = (pid: number): number[] => {
      let i = at(pid);
      if (i < 0) return [];
      while (i > 0 && v.same[i]) i--;
      const out = [v.pids[i]];
      for (let j = i + 1; j < v.pids.length && v.same[j]; j++) out.push(v.pids[j]);
      return out;
    };
    expect(group(p.pid).sort()).toEqual([p.pid, c].sort());
    expect(group(f)).toEqual([f]); // a fork child has its own
    expect(group(process.pid)).toEqual([process.pid]); // node's threads are not processes
    expect(group(t.pid)).toEqual([t.pid]);
    expect(v.lastPid).toBeGreaterThan(0);
    expect(v.pidMax).toBeGreaterThanOrEqual(32768);
    // n log n comparisons, not n^2
    expect(v.kcmps, processCount()).toBeLessThan(v.tries * (v.pids.length * (Math.log2(v.pids.length) + 6) + 64));
  });
});

describe("attach with a pass", () => {
  it("refuses a sharer there at the pass, stops it when asked, checking its group and not every process", async () => {
    const p = await sharing();
    const c = await p.child("clone");
    const sp = pass();
    const t = tracer();
    const e = await rejects(t.attach(p.pid, { pass: sp }));
    expect(e.code).toBe("SHARED_VM");
    expect(e.tid).toBe(c);
    expect(e.message).toContain(`pid ${p.pid} shares its address space (CLONE_VM) with pid ${c}`);
    expect(tracerPidOf(p.pid)).toBe(0);
    expect(tracerPidOf(c)).toBe(0);
    const a = await attachFromPass(t, p.pid, sp, true);
    expect(a.sharers).toEqual([c]);
    expect(a.tids.sort()).toEqual([p.pid, c].sort());
    expect(a.sharerCheck.full).toBe(false);
    await t.detach();
    // every process compared, without a pass
    const full = await t.attach(p.pid, { stopSharers: true });
    expect(full.sharers).toEqual([c]);
    expect(full.sharerCheck.full).toBe(true);
    expect(a.sharerCheck.checked).toBeLessThan(full.sharerCheck.checked);
    await t.detach();
    expect(sp.stats.fromPass).toBe(1); // the refused attach reported nothing
    expect(alive(c)).toBe(true);
  });

  it("finds a sharer created after the pass: clone(CLONE_VM), then vfork", async () => {
    const p = await sharing();
    const sp = pass();
    const t = tracer();
    const a = await attachFromPass(t, p.pid, sp); // takes the pass: no sharer yet
    expect(a.sharers).toEqual([]);
    expect(a.sharerCheck.full).toBe(false);
    await t.detach();
    // a plain fork child does not share: still attachable, from the same pass
    await p.child("fork");
    const b = await attachFromPass(t, p.pid, sp);
    expect([b.sharers, b.sharerCheck.full]).toEqual([[], false]);
    await t.detach();
    const c = await p.child("clone");
    const e = await rejects(t.attach(p.pid, { pass: sp }));
    expect(e.code).toBe("SHARED_VM");
    expect(e.message).toContain(`pid ${p.pid} shares its address space (CLONE_VM) with pid ${c}`);
    expect(tracerPidOf(p.pid)).toBe(0);
    const s = await attachFromPass(t, p.pid, sp, true);
    expect(s.sharers).toEqual([c]);
    expect(s.sharerCheck.full).toBe(false); // found as a process created since the pass, not by a full scan
    await t.detach();

    // vfork in another process that was there at the pass: its thread waits in vfork()
    const q = await sharing();
    const sq = pass();
    expect((await attachFromPass(t, q.pid, sq)).sharerCheck.full).toBe(false);
    await t.detach();
    const v = await q.child("vfork");
    await sleep(20);
    try {
      for (const stopSharers of [false, true]) {
        const ev = await rejects(t.attach(q.pid, { pass: sq, stopSharers }));
        expect(ev.code).toBe("SHARED_VM");
        expect(ev.message).toContain(`pid ${q.pid} shares its address space with pid ${v}`);
        expect(ev.message).toContain("vfork");
      }
      expect(tracerPidOf(q.pid)).toBe(0);
      expect(tracerPidOf(v)).toBe(0);
    } finally {
      process.kill(v, "SIGKILL");
    }
  });

  it("compares with every process when the hint is too old or the target newer than the pass", async () => {
    const t = tracer();
    const v = await t.vmPass();
    const seen: NativeSharerCheck[] = [];
    // A hand-made pass: `hint` gives what SharerPass would, with the cursor last seen at `ns`.
    const stub = (ns: bigint, candidates: number[] = []) =>
      ({
        hint: async (): Promise<NativeAttachPass> => ({ lastPid: v.lastPid, pidMax: v.pidMax, seenPid: v.lastPid, seenNs: ns, candidates: Int32Array.from(candidates) }),
        observe: (c: NativeSharerCheck) => seen.push(c),
      }) as unknown as SharerPass;
    const old = await sharing(); // started after the pass: newer than it
    const c = await old.child("clone");
    const a = await t.attach(old.pid, { pass: stub(process.hrtime.bigint()), stopSharers: true });
    expect(a.sharers).toEqual([c]);
    expect(a.sharerCheck).toMatchObject({ full: true, stale: false });
    await t.detach();
    // the cursor last seen a second ago: it may have gone around since; every process compared
    const b = await t.attach(old.pid, { pass: stub(process.hrtime.bigint() - 1_000_000_000n), stopSharers: true });
    expect(b.sharers).toEqual([c]);
    expect(b.sharerCheck).toMatchObject({ full: true, stale: true });
    await t.detach();
    expect(seen.map((x) => [x.full, x.stale])).toEqual([
      [true, false],
      [true, true],
    ]);
  });

  it("SharerPass: a stale check makes the next attach take a new pass; the heartbeat keeps it fresh meanwhile", async () => {
    const p = await sharing();
    const sp = pass();
    const t = tracer();
    await attachFromPass(t, p.pid, sp);
    await t.detach();
    const before = sp.stats.passes;
    await sleep(60); // three gaps or more: the heartbeat saw the cursor all along
    const a = await attachFromPass(t, p.pid, sp);
    expect(a.sharerCheck.full).toBe(false);
    await t.detach();
    expect(sp.stats.passes - before).toBeLessThanOrEqual(1); // (1: this machine stalled one of us past the gap)
    // blocked event loop: no heartbeat for 50 ms, the chain of observations breaks
    const until = Date.now() + 50;
    while (Date.now() < until) {
      // busy
    }
    const b = await t.attach(p.pid, { pass: sp });
    await t.detach();
    expect(sp.stats.passes + (b.sharerCheck.full ? 1 : 0)).toBeGreaterThanOrEqual(2);
  });

  it("SharerPass: gives up (every process compared) when a pass breaks before it served 16 attaches", async () => {
    const p = await sharing();
    const sp = pass({});
    const t = tracer();
    await t.attach(p.pid, { pass: sp });
    await t.detach();
    const until = Date.now() + 50; // the event loop blocked: the cursor unseen for longer than the gap
    while (Date.now() < until) {
      // busy
    }
    for (let i = 0; i < 2; i++) {
      const a = await t.attach(p.pid, { pass: sp });
      expect(a.sharerCheck.full).toBe(true);
      await t.detach();
    }
    expect(sp.stats.passes).toBe(1);
    expect(sp.stats.noPass).toMatch(/^the pass over \/proc held for \d attaches only/);
  });
});
