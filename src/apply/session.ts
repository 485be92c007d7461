// apply and revert on a live process: the order of the steps and the undo of each.
//
// apply, before the target is stopped (it keeps running; any failure here leaves it
// untouched, and the region is unmapped again):
//   open the target (module by build-id), read what is applied (region headers), attach,
//   resolve the references, plan (sites, expected bytes, layout), prepare the stack check
//   (CFI of every module), open a tracer transaction, map + fill + protect the region,
//   read the sites again.
// then, one stop at a time (the pause):
//   stop every thread and, in the same tracer request (stopCheckPatch), let the tracer
//   prove it safe by scanning every thread's pc and live stack for any word inside the
//   replaced functions, the entry windows or a sigreturn trampoline: none, and it
//   verifies every site's bytes, writes the jumps, commits and resumes without a trip to
//   patchc (shim/proof.c). Otherwise, with the world still stopped, check precisely
//   (entry windows; with consistency "function" no frame inside a replaced function,
//   by unwinding), and if safe: verify, write, commit, resume in one tracer request
//   (patchAndResume). If not safe: resume, wait for the
//   blocking thread to return from its outermost frame in the way (a breakpoint on its
//   return address, inside the tracer) or back off a few ms, and try again until the
//   timeout; then roll back (region unmapped, not a byte of the target changed) and
//   refuse with BUSY naming the thread and the function.
// If patchc dies at any point before the commit, the tracer rolls the transaction back.
//
// revert is the same in reverse: the check covers the patch's code, the write restores
// the bytes each site held before, and the region is unmapped once a scan has shown no
// frame in it (else kept, marked retired in its header, in the same atomic write).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import type { Core } from "../core/instance.js";
import type { ReadPackage } from "../format/reader.js";
import { nodeCore } from "../node/core-file.js";
import { ShimError, Tracer, type Patch, type Resumed, type Span, type World } from "../shim/index.js";
import type { ApplyOptions, ApplyReport, Range, RevertOptions, RevertReport, StatusPatch } from "./contract.js";
import { ApplyError, processSubject } from "./errors.js";
import { appendPerfMap } from "./perf-map.js";
import { planPatch, type EnginePlan } from "./plan.js";
import { ProcMemory } from "./proc-memory.js";
import { STATE, STATE_OFFSET, type RegionHeader } from "./region.js";
import { mapRegion, type MappedRegion } from "./region-memory.js";
import { resolveReferences } from "./resolve.js";
import { ProcessUnwind, SAFETY_STACK_WINDOW, waitTarget, type Blocker, type SafetyVerdict } from "./safety.js";
import { findRegions, readMaps, statusOf, type FoundRegion } from "./status.js";
import { closeTarget, openTarget } from "./target.js";

const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (v: bigint) => "0x" + v.toString(16);
/** Back-off when a blocker's return address is unknown (a pc in an entry window, a conservative hit). */
const BACKOFF_MS = 3;

/** A live thread of the process for remote syscalls: the main thread unless it has exited. */
function syscallThread(pid: number): number {
  const state = (tid: number): string => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    } catch {
      return "X";
    }
  };
  if (!["Z", "X"].includes(state(pid))) return pid;
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return pid;
  }
  return Number(tids.find((t) => !["Z", "X"].includes(state(Number(t)))) ?? pid);
}

/** Is the process still there (not exited, not a zombie)? */
function alive(pid: number): boolean {
  const live = (stat: string) => !["Z", "X"].includes(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
  try {
    if (live(readFileSync(`/proc/${pid}/stat`, "utf8"))) return true;
    // The main thread may have exited (pthread_exit) while others run.
    return readdirSync(`/proc/${pid}/task`).some((t) => {
      try {
        return live(readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8"));
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

const GONE_CODES = new Set(["TARGET_EXITED", "TARGET_EXECED", "NO_SUCH_PROCESS", "ZOMBIE", "ESRCH", "TRACER_GONE"]);

/** A failure of the shim as the ApplyError the user acts on. */
function shimError(e: unknown, pid: number, what: string): unknown {
  if (e instanceof ApplyError) return e;
  if (!(e instanceof ShimError)) return e;
  if (e.code === "TARGET_EXECED") return new ApplyError("TARGET_GONE", processSubject(pid), `it called exec during ${what}; nothing of the patch was left in it`);
  if (GONE_CODES.has(e.code) || !alive(pid)) return new ApplyError("TARGET_GONE", processSubject(pid), `it exited during ${what} (${e.message})`);
  if (e.code === "SITE_MISMATCH") return new ApplyError("SITE_MISMATCH", processSubject(pid), `a site changed while the target was stopped: ${e.message}`);
  return new ApplyError("TRACE", processSubject(pid), `${what}: ${e.message}`);
}

/**
 * shimError, after giving a process that is exiting a moment to be gone: a failure of the
 * tracer while the target dies (a thread already gone, the leader exiting) is TARGET_GONE.
 */
async function settledError(e: unknown, pid: number, what: string): Promise<unknown> {
  const err = shimError(e, pid, what);
  if (!(e instanceof ShimError) || !(err instanceof ApplyError) || err.code !== "TRACE") return err;
  for (let i = 0; i < 20; i++) {
    if (!alive(pid)) return new ApplyError("TARGET_GONE", processSubject(pid), `it exited during ${what} (${e.message})`);
    await sleep(5);
  }
  return err;
}

/**
 * Attaches a fresh tracer, or `given` (a caller's, left open), refusing with the reason
 * the shim gives. A failed attach leaves `given` detached (the tracer undoes a partial one).
 */
async function attach(core: Core, pid: number, given?: Tracer): Promise<Tracer> {
  let t: Tracer;
  try {
    t = given ?? Tracer.open({ core });
  } catch (e) {
    throw new ApplyError("TRACE", processSubject(pid), `cannot start the tracer: ${(e as Error).message}`);
  }
  try {
    await t.attach(pid);
    return t;
  } catch (e) {
    if (!given) await t.close().catch(() => undefined);
    if (e instanceof ShimError && (e.code === "NO_SUCH_PROCESS" || e.code === "ESRCH" || e.code === "ZOMBIE")) throw new ApplyError("NO_PROCESS", processSubject(pid), e.message);
    throw shimError(e, pid, "attach");
  }
}

function blockerName(b: Blocker): string {
  return b.range.name.replace(/ \(patch [^)]*\)$/, "");
}

function describe(b: Blocker): string {
  return b.kind === "window"
    ? `thread ${b.tid} is at ${hex(b.pc)} inside the entry of ${blockerName(b)}`
    : `thread ${b.tid} is inside ${blockerName(b)} (frame ${b.depth}, pc ${hex(b.pc)}${b.how && b.how !== "precise" ? `, ${b.how}` : ""})`;
}

interface StopLoopResult {
  verdict: SafetyVerdict;
  pauseNs: number;
  pauseTotalNs: number;
  attempts: number;
  waitedNs: number;
  provenBy: "scan" | "unwind";
  /** why the tracer's scan did not prove the last stop */
  unprovenBy?: string;
}

/**
 * What the stop does when the tracer's own scan proves it safe (Tracer.stopCheckPatch):
 * `patches` written and the world resumed in the same request, then `done` is told.
 */
interface FastPath {
  spans: Span[];
  patches: Patch[];
  /** commit the open transaction with the patches */
  commit: boolean;
  done: (r: Resumed) => void;
}

/**
 * Stops the world until `accept(verdict)` says the check passed, then runs `commit`
 * (which must resume the world), or until the deadline: then resumes and throws BUSY.
 * `accept(verdict)` also picks the blocker to wait for. With `fast`, each stop is first
 * offered to the tracer's scan (no pc and no stack word in `fast.spans`: patched and
 * resumed without a trip to JavaScript); what it cannot prove goes through the check.
 */
async function stopLoop(
  t: Tracer,
  pid: number,
  unwind: ProcessUnwind,
  forbidden: Range[],
  windows: Range[],
  deadline: bigint,
  accept: (v: SafetyVerdict) => Blocker | undefined,
  commit: (v: SafetyVerdict, world: World) => Promise<number>,
  action: string,
  fast?: FastPath,
): Promise<StopLoopResult> {
  let attempts = 0;
  let pauseTotalNs = 0;
  let waitedNs = 0;
  let unprovenBy: string | undefined;
  for (;;) {
    attempts++;
    let world: World;
    try {
      const left = Number(deadline - now()) / 1e6;
      const timeoutMs = Math.ceil(Math.min(2000, Math.max(100, left)));
      if (fast) {
        const r = await t.stopCheckPatch(fast.spans, fast.patches, { window: SAFETY_STACK_WINDOW, timeoutMs, commit: fast.commit });
        if (r.proven) {
          fast.done(r.resumed);
          pauseTotalNs += r.resumed.pauseNs;
          const verdict: SafetyVerdict = { safe: true, blockers: [], analysisNs: r.scanNs };
          return { verdict, pauseNs: r.resumed.pauseNs, pauseTotalNs, attempts, waitedNs, provenBy: "scan" };
        }
        unprovenBy = r.why;
        world = r.world;
      } else {
        world = await t.stopWorld({ window: SAFETY_STACK_WINDOW, timeoutMs });
      }
    } catch (e) {
      // A thread that does not stop in time (uninterruptible sleep, a loaded machine): the
      // tracer resumed the others; try again until the deadline.
      if (!(e instanceof ShimError && e.code === "STOP_TIMEOUT")) throw e;
      if (now() >= deadline) throw new ApplyError("BUSY", processSubject(pid), `${e.message}, until the timeout (${attempts} attempts); nothing was ${action}`, e.tid);
      await sleep(BACKOFF_MS);
      continue;
    }
    let verdict: SafetyVerdict;
    try {
      verdict = await unwind.check(t, world, forbidden, windows);
    } catch (e) {
      await t.resumeAll().catch(() => undefined);
      throw e;
    }
    const blocker = accept(verdict);
    if (!blocker) {
      const pauseNs = await commit(verdict, world);
      pauseTotalNs += pauseNs;
      return { verdict, pauseNs, pauseTotalNs, attempts, waitedNs, provenBy: "unwind", unprovenBy };
    }
    const left = Number(deadline - now()) / 1e6;
    if (left <= 0) {
      const r = await t.resumeAll();
      pauseTotalNs += r.pauseNs;
      throw new ApplyError(
        "BUSY",
        processSubject(pid, blockerName(blocker)),
        `${describe(blocker)}, and stayed there until the timeout (${attempts} attempts); nothing was ${action}`,
        blocker.tid,
      );
    }
    const w0 = now();
    const wait = waitTarget(blocker);
    if (wait) {
      // The world resumes inside waitReturn; its pause is the stop's so far.
      pauseTotalNs += world.totalNs;
      try {
        await t.waitReturn(blocker.tid, wait.addr, { sp: wait.sp, timeoutMs: Math.ceil(Math.max(1, Math.min(left, 1000))) });
      } catch (e) {
        // The thread exited while we waited: it left. Anything else is a failure.
        if (!(e instanceof ShimError && (e.code === "THREAD_EXITED" || e.code === "NO_SUCH_THREAD"))) throw e;
      }
    } else {
      const r = await t.resumeAll();
      pauseTotalNs += r.pauseNs;
      await sleep(Math.ceil(Math.min(BACKOFF_MS, Math.max(1, left))));
    }
    waitedNs += Number(now() - w0);
  }
}

export async function applyPatch(pid: number, pkg: ReadPackage, opts: ApplyOptions = {}): Promise<ApplyReport> {
  const t0 = now();
  const core = opts.core ?? nodeCore();
  const consistency = opts.consistency ?? "function";
  const timeoutMs = opts.timeoutMs ?? 5000;
  const phase = opts.onPhase ?? (() => undefined);
  const subject = processSubject(pid);

  phase("resolve");
  const target = openTarget(core, pid, pkg.model.target.buildId, pkg.file, pkg.model.target.path);
  let t: Tracer | undefined;
  let plan: EnginePlan | undefined;
  let unwind: ProcessUnwind | undefined;
  let mem: ProcMemory | undefined;
  let inTxn = false;
  let committed = false;
  try {
    mem = new ProcMemory(pid);
    const problems: string[] = [];
    const regions = findRegions(pid, target.maps, mem, problems);
    const status = statusOf(pid, regions, mem, problems);
    t = await attach(core, pid, opts.tracer);
    // Scope "patch": the globals an applied (active) patch defines, from its region header.
    const patchSymbol = (patchId: string, name: string): bigint | undefined =>
      regions.find((r) => r.header.state === "active" && r.header.patchId === patchId)?.header.symbols.find((s) => s.name === name)?.addr;
    const references = await resolveReferences(core, target, pkg, { tracer: t, patchSymbol });
    plan = planPatch(core, target, pkg, references, status, { mem });
    // CFI of every module and of the patch regions (their headers name their .eh_frame).
    unwind = ProcessUnwind.prepare(core, target, { mem, regions });

    phase("map");
    const tid = syscallThread(pid);
    let region: MappedRegion;
    try {
      await t.begin();
      inTxn = true;
      const p = plan;
      region = await mapRegion(t, { pid, tid, patchId: plan.patchId, size: plan.regionSize, reach: plan.reach, below2G: plan.below2G, maps: target.maps, layout: (base) => p.layout(base) });
    } catch (e) {
      throw await settledError(e, pid, "mapping the patch");
    }
    const image = region.image;

    // The sites once more, just before the stop (cheap; the tracer checks them again, stopped).
    const current = await t.readMemory(plan.sites.map((s) => ({ addr: s.site, len: s.expect.length })));
    plan.sites.forEach((s, i) => {
      if (current[i].length !== s.expect.length || current[i].some((b, k) => b !== s.expect[k]))
        throw new ApplyError("SITE_MISMATCH", processSubject(pid, s.name), `the site ${hex(s.site)} changed since it was planned`);
    });

    const forbidden = consistency === "function" ? plan.sites.flatMap((s) => s.oldRanges) : [];
    const windows = plan.sites.map((s) => ({ lo: s.site, hi: s.site + BigInt(s.expect.length), name: s.name }));
    unwind.setMaps(readMaps(pid));
    unwind.prepareCheck(forbidden, windows);

    phase("stop");
    const patches: Patch[] = plan.sites.map((s, i) => ({ addr: s.site, expect: s.expect, bytes: image.jumps[i].bytes }));
    const deadline = t0 + BigInt(timeoutMs) * 1_000_000n;
    const tracer = t;
    let loop: StopLoopResult;
    try {
      loop = await stopLoop(
        tracer,
        pid,
        unwind,
        forbidden,
        windows,
        deadline,
        (v) => (v.safe ? undefined : v.blockers[0]),
        async () => {
          const r = await tracer.patchAndResume(patches, { commit: true });
          committed = true;
          return r.pauseNs;
        },
        "changed",
        { spans: unwind.proofSpans(forbidden, windows), patches, commit: true, done: () => (committed = true) },
      );
    } catch (e) {
      if (e instanceof ApplyError && e.code === "BUSY") phase("wait");
      throw await settledError(e, pid, "the stop");
    }
    inTxn = false;

    // perf names the new code.
    try {
      appendPerfMap(pid, image.newRanges, plan.patchId);
    } catch {
      // The perf map is for people; the patch is applied either way.
    }
    phase("done");
    return {
      pid,
      patchId: plan.patchId,
      hash: plan.hash,
      module: { path: target.module.module.path, buildId: target.module.image.info.buildId ?? pkg.model.target.buildId, bias: target.module.bias },
      region: { base: region.base, size: region.size, name: region.name, memfd: region.memfd },
      functions: plan.sites.map((s, i) => {
        const f = { name: s.name, site: s.site, newAddr: image.jumps[i].newAddr, newSize: image.jumps[i].newSize } as ApplyReport["functions"][number];
        if (s.previous) f.previous = s.previous;
        return f;
      }),
      consistency,
      pauseNs: loop.pauseNs,
      pauseTotalNs: loop.pauseTotalNs,
      attempts: loop.attempts,
      waitedNs: loop.waitedNs,
      provenBy: loop.provenBy,
      ...(loop.unprovenBy ? { unprovenBy: loop.unprovenBy } : {}),
      totalNs: Number(now() - t0),
    };
  } catch (e) {
    const err = await settledError(e, pid, "apply");
    if (t && inTxn && !committed) {
      try {
        await t.rollback();
      } catch (r) {
        // Gone (exited, or exec replaced the address space): nothing of ours is left in it.
        const gone = (err instanceof ApplyError && err.code === "TARGET_GONE") || !alive(pid);
        if (!gone) throw new ApplyError("TRACE", subject, `${(e as Error).message}; and the rollback failed: ${(r as Error).message}`);
      }
    }
    throw err;
  } finally {
    plan?.close();
    unwind?.close();
    mem?.close();
    // A caller's tracer: detached (an open transaction rolled back by the tracer), kept open.
    if (t) await (t === opts.tracer ? t.detach() : t.close()).catch(() => undefined);
    closeTarget(target);
  }
}

/** The patch at a site now: the active one whose jump the site holds. */
function holderAt(regions: FoundRegion[], site: bigint, status: StatusPatch[]): string | undefined {
  for (let i = 0; i < regions.length; i++) {
    if (regions[i].header.state !== "active") continue;
    const f = status[i].functions.find((x) => x.site === site);
    if (f?.current) return regions[i].header.patchId;
  }
  return undefined;
}

export async function revertPatch(pid: number, which: string | "all", opts: RevertOptions = {}): Promise<RevertReport> {
  const t0 = now();
  const core = opts.core ?? nodeCore();
  const timeoutMs = opts.timeoutMs ?? 5000;
  const phase = opts.onPhase ?? (() => undefined);
  const subject = processSubject(pid);
  if (!alive(pid)) throw new ApplyError("NO_PROCESS", subject, existsSync(`/proc/${pid}`) ? "is a zombie" : "no such process");
  const maps = readMaps(pid);
  const mem = new ProcMemory(pid);
  let t: Tracer | undefined;
  let unwind: ProcessUnwind | undefined;
  const report: RevertReport = { pid, reverted: [], pauseNs: 0, totalNs: 0 };
  try {
    const regions = findRegions(pid, maps, mem);
    const status = statusOf(pid, regions, mem).patches;
    const active = regions.filter((r) => r.header.state === "active");
    let todo: FoundRegion[];
    if (which === "all") {
      todo = [...active].reverse();
      if (todo.length === 0) return { ...report, totalNs: Number(now() - t0) };
    } else {
      // The active one of that id; else a retired one (reverted, kept): it is freed if no frame is in it now.
      const r = regions.find((x) => x.header.patchId === which && x.header.state === "active") ?? regions.find((x) => x.header.patchId === which);
      if (!r) throw new ApplyError("NOT_APPLIED", subject, `patch ${which} is not applied${active.length ? ` (applied: ${active.map((x) => x.header.patchId).join(", ")})` : " (no patch is)"}`);
      // Last in, first out: every site must hold this patch's jump, and no active patch may depend on it.
      for (const f of r.header.state === "active" ? r.header.functions : []) {
        const holder = holderAt(regions, f.site, status);
        if (holder !== which)
          throw new ApplyError("OUT_OF_ORDER", processSubject(pid, f.name), holder ? `patch ${holder} stacks on patch ${which} here: revert ${holder} first` : `the site ${hex(f.site)} no longer holds the jump of patch ${which}`);
      }
      const dependent = r.header.state === "active" ? active.find((x) => x !== r && x.header.dependencies.some((d) => d.patchId === which)) : undefined;
      if (dependent) throw new ApplyError("OUT_OF_ORDER", subject, `patch ${dependent.header.patchId} depends on patch ${which}: revert it first`);
      todo = [r];
    }

    t = await attach(core, pid);
    unwind = ProcessUnwind.prepare(core, { pid, maps }, { mem, regions });
    const deadline = t0 + BigInt(timeoutMs) * 1_000_000n;
    phase("stop");
    for (const r of todo) {
      const one = await revertOne(t, pid, r.header, unwind, deadline);
      report.reverted.push(one.entry);
      report.pauseNs += one.pauseNs;
    }
    phase("done");
    report.totalNs = Number(now() - t0);
    return report;
  } catch (e) {
    throw await settledError(e, pid, "revert");
  } finally {
    unwind?.close();
    mem.close();
    if (t) await t.close().catch(() => undefined);
  }
}

/** A retired region (reverted, kept): unmapped once a stop shows no frame in it. */
async function freeRetired(t: Tracer, pid: number, h: RegionHeader, unwind: ProcessUnwind, deadline: bigint): Promise<{ entry: RevertReport["reverted"][number]; pauseNs: number }> {
  const forbidden: Range[] = [{ lo: h.base, hi: h.base + h.size, name: `the region of patch ${h.patchId}` }];
  const loop = await stopLoop(t, pid, unwind, forbidden, [], deadline, (v) => (v.safe ? undefined : v.blockers[0]), async () => (await t.resumeAll()).pauseNs, "freed", {
    spans: unwind.proofSpans(forbidden, []),
    patches: [],
    commit: false,
    done: () => undefined,
  });
  await t.munmap(syscallThread(pid), h.base, h.size);
  return { entry: { patchId: h.patchId, functions: h.functions.map((f) => f.name), freed: true }, pauseNs: loop.pauseNs };
}

async function revertOne(t: Tracer, pid: number, h: RegionHeader, unwind: ProcessUnwind, deadline: bigint): Promise<{ entry: RevertReport["reverted"][number]; pauseNs: number }> {
  if (h.state === "retired") return freeRetired(t, pid, h, unwind, deadline);
  const regionName = `the region of patch ${h.patchId}`;
  // The new code of each function, and then the whole region: a thread in the first must
  // leave before the entries are restored; a frame only in the rest (an added function,
  // a stub) does not stop the revert but keeps the memory, retired.
  const fnRanges: Range[] = h.functions.map((f) => ({ lo: f.newAddr, hi: f.newAddr + f.newSize, name: `${f.name} (patch ${h.patchId})` }));
  const forbidden: Range[] = [...fnRanges, { lo: h.base, hi: h.base + h.size, name: regionName }];
  const windows: Range[] = h.functions.map((f) => ({ lo: f.site, hi: f.site + BigInt(f.jump.length), name: f.name }));
  // each entry back to what it held before this patch
  const restore: Patch[] = h.functions.map((f) => ({ addr: f.site, expect: f.jump, bytes: f.saved }));
  let retire = false;
  unwind.prepareCheck(forbidden, windows);
  await t.begin();
  let committed = false;
  let pauseNs = 0;
  try {
    const loop = await stopLoop(
      t,
      pid,
      unwind,
      forbidden,
      windows,
      deadline,
      (v) => {
        if (v.safe) return undefined;
        const hard = v.blockers.find((b) => b.kind === "window" || b.range.name !== regionName);
        if (hard) return hard;
        retire = true;
        return undefined;
      },
      async () => {
        const patches: Patch[] = retire ? [...restore, { addr: h.base + BigInt(STATE_OFFSET), expect: u32(STATE.active), bytes: u32(STATE.retired) }] : restore;
        const r = await t.patchAndResume(patches, { commit: true });
        committed = true;
        return r.pauseNs;
      },
      "reverted",
      // Proven by the scan: no frame in the patch's code nor anywhere in its region, so
      // the region is freed, not retired.
      {
        spans: unwind.proofSpans(forbidden, windows),
        patches: restore,
        commit: true,
        done: () => (committed = true),
      },
    );
    pauseNs = loop.pauseNs;
  } catch (e) {
    if (!committed) await t.rollback().catch(() => undefined);
    throw e;
  }
  let freed = false;
  if (!retire) {
    try {
      await t.munmap(syscallThread(pid), h.base, h.size);
      freed = true;
    } catch {
      // Keep it, retired: status shows it.
      await t.writeText(h.base + BigInt(STATE_OFFSET), u32(STATE.retired)).catch(() => undefined);
    }
  }
  return { entry: { patchId: h.patchId, functions: h.functions.map((f) => f.name), freed }, pauseNs };
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}
