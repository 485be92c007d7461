// The sharer check of many attaches from one pass over /proc (`patchc apply --all`).
//
// Every attach must find the processes sharing the target's address space (CLONE_VM
// without CLONE_THREAD). Comparing the target with every process (kcmp(KCMP_VM), what a
// lone attach does) costs O(processes) per attach, so O(processes^2) for --all. Instead a
// SharerPass asks one tracer once for every process grouped by address space
// (OP_VM_PASS, shim/sharers.c: the kernel facts are written there), and each attach then
// gives the tracer the target's group at the pass and where the pid cursor was: the
// tracer compares the target with that group and with the processes created since (the
// pids allocated after the pass), not with the others, which cannot have joined it.
//
// That interval holds only if the pid cursor did not go around pid_max in between, so the
// cursor is watched: by the pass, by every check, and by a heartbeat here reading
// /proc/sys/kernel/ns_last_pid every few ms. Each observation must follow the previous
// one within the pass's gap (20 ms) and have moved forward less than half of pid_max in
// all; when that chain breaks (the event loop was blocked, a check found its hint too
// old) the pass is stale and the next attach takes a new one. The tracer checks the last
// link itself and compares with every process when it does not hold.
import { closeSync, openSync, readSync } from "node:fs";
import type { NativeAttachPass, NativeSharerCheck, NativeVmPass } from "./native.js";

const EMPTY = new Int32Array(0);
const HEARTBEAT_MS = 4;
/** Passes per run at most (a pass costs n log n kcmp calls; a machine that stalls us past
 * the gap again and again gets the comparison with every process instead). */
const MAX_PASSES = 4;
/** A new pass only after the last one served this many attaches: a pass costs about as
 * many kcmp calls as log2(processes) + 2 comparisons with every process, so one that the
 * machine breaks sooner does not pay for itself. */
const MIN_SERVED = 16;

export interface SharerPassStats {
  /** passes taken */
  passes: number;
  /** attaches checked from a pass, and by comparing with every process */
  fromPass: number;
  full: number;
  /** kcmp calls of the checks, and of the passes */
  checked: number;
  passKcmps: number;
  passNs: number;
  /** why no pass could be taken (then every attach compared with every process) */
  noPass?: string;
}

export class SharerPass {
  private pass?: NativeVmPass;
  /** pid -> the other processes of its group at the pass (EMPTY: none) */
  private groups = new Map<number, Int32Array>();
  private seenPid = 0;
  private seenNs = 0n;
  private stale = true;
  private taking?: Promise<void>;
  private served = 0;
  /** why no pass could be taken */
  failed?: Error;
  private timer?: ReturnType<typeof setInterval>;
  private fd = -1;
  private readonly buf = Buffer.alloc(32);
  readonly stats: SharerPassStats = { passes: 0, fromPass: 0, full: 0, checked: 0, passKcmps: 0, passNs: 0 };
  private readonly minServed: number;
  private readonly maxPasses: number;

  /** `minServed`, `maxPasses`: see MIN_SERVED and MAX_PASSES (tests lower them). */
  constructor(opts: { minServed?: number; maxPasses?: number } = {}) {
    this.minServed = opts.minServed ?? MIN_SERVED;
    this.maxPasses = opts.maxPasses ?? MAX_PASSES;
  }

  /** The hint for an attach of `pid`, taking a pass with `take` first when there is none or it is stale; undefined: `pid` is not in the pass (compare with every process). */
  async hint(pid: number, take: () => Promise<NativeVmPass>): Promise<NativeAttachPass | undefined> {
    while (this.stale || !this.pass) {
      if (this.pass && this.served < this.minServed && !this.failed) {
        this.failed = new Error(`the pass over /proc held for ${this.served} attaches only (the pid cursor went unseen for longer than ${this.pass.gapNs / 1e6} ms): every later attach compares with every process`);
        this.stats.noPass = this.failed.message;
      }
      if (this.failed || this.stats.passes >= this.maxPasses) {
        this.stats.full++;
        return undefined;
      }
      this.taking ??= this.retake(take)
        .catch((e) => {
          this.failed = e as Error;
          this.stats.noPass = this.failed.message; // no pass here (another pid namespace's /proc, a small pid_max...): every attach compares with every process
        })
        .finally(() => (this.taking = undefined));
      await this.taking;
    }
    const candidates = this.groups.get(pid);
    if (!candidates) {
      this.stats.full++;
      return undefined;
    }
    return { lastPid: this.pass.lastPid, pidMax: this.pass.pidMax, seenPid: this.seenPid, seenNs: this.seenNs, candidates };
  }

  /** What a check from a hint reported: the cursor it saw, or that it compared with every process. */
  observe(c: NativeSharerCheck): void {
    this.stats.checked += c.checked;
    if (c.full) {
      this.stats.full++;
      if (c.stale) this.stale = true; // its hint could not be trusted: take a new pass
      return; // else the target is newer than the pass
    }
    this.stats.fromPass++;
    this.served++;
    if (c.seenPid >= 0) this.see(c.seenPid, c.seenNs);
  }

  /** Stops the heartbeat. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private async retake(take: () => Promise<NativeVmPass>): Promise<void> {
    const p = await take();
    this.stats.passes++;
    this.stats.passKcmps += p.kcmps;
    this.stats.passNs += p.tookNs;
    const groups = new Map<number, Int32Array>();
    for (let i = 0; i < p.pids.length; ) {
      let j = i + 1;
      while (j < p.pids.length && p.same[j]) j++;
      const run = p.pids.subarray(i, j);
      for (const q of run) groups.set(q, run.length === 1 ? EMPTY : Int32Array.from(run.filter((x) => x !== q)));
      i = j;
    }
    this.pass = p;
    this.served = 0;
    this.groups = groups;
    this.seenPid = p.seenPid;
    this.seenNs = p.seenNs;
    this.stale = false;
    this.beat(); // the pass may have taken longer than the gap: see the cursor now
    if (!this.timer) {
      this.timer = setInterval(() => this.beat(), HEARTBEAT_MS);
      this.timer.unref();
    }
  }

  /** The cursor as this process reads it (the tracer's pid namespace is ours). */
  private beat(): void {
    if (this.stale) return;
    try {
      if (this.fd < 0) this.fd = openSync("/proc/sys/kernel/ns_last_pid", "r");
      const ns = process.hrtime.bigint(); // CLOCK_MONOTONIC, as the tracer's now_ns()
      const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
      this.see(Number(this.buf.toString("latin1", 0, n)), ns);
    } catch {
      this.stale = true;
    }
  }

  /** One more observation of the cursor: it must follow the last within the gap and not have gone backwards. */
  private see(pid: number, ns: bigint): void {
    const p = this.pass;
    if (!p || this.stale) return;
    if (ns <= this.seenNs) return; // older than what we know: nothing to add
    const adv = (x: number) => (((x - p.lastPid) % p.pidMax) + p.pidMax) % p.pidMax;
    if (ns - this.seenNs > BigInt(p.gapNs) || adv(pid) < adv(this.seenPid) || adv(pid) >= p.pidMax / 2 || !Number.isInteger(pid)) {
      this.stale = true;
      return;
    }
    this.seenPid = pid;
    this.seenNs = ns;
  }
}
