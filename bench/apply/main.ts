// bench/apply: `patchc apply` on live fixture servers (bench/apply/fixture.ts), through the
// library call applyPatch (src/apply/index.ts) in this process: no Node start-up counted.
//
// For 1, 10 and 100 worker threads, sleeping or busy, and patches of 1, 10 and 100
// functions, each cell measures
//   - the pause seen from inside the target: the largest gap of a monitor thread spinning
//     on the clock in the target (bench/apply/pause-monitor.c, LD_PRELOAD), over a window
//     opened right before the apply and closed after it;
//   - the pause patchc reports (ApplyReport.pauseNs: first interrupt to last resume,
//     measured in the tracer) and the whole apply as this process times it;
// beside the floor measured in the same run on the same target: plain one-by-one ptrace
// (bench/apply/floor.c: per thread PTRACE_INTERRUPT, waitpid, PTRACE_GETREGS, then
// PTRACE_CONT each), seen by the same monitor. The noise floor is a monitor window of
// the same length with nothing done. Applies and floor rounds take turns in blocks; every
// apply is reverted before the next; the figures are medians.
//
// Then `--all`: 1000 processes of the fixture binary (1 sleeping thread each), patched
// by the scan and the bounded-concurrency applies of src/apply/all.ts, as cost per
// process against a single apply to one of them.
//
// BENCH_ONLY=sleep,busy,all picks parts; BENCH_THREADS=1,10 and BENCH_FUNCTIONS=1,10 pick
// cells; BENCH_REPS (applies per cell and block, default 4). Progress goes to stderr.
// BENCH_ALL=N processes for --all (default 1000); BENCH_ALL_TRACERS=fresh: a tracer per process (the old way) instead of one per job.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ApplyError, applyPatch, revertPatch } from "../../src/apply/index.js";
import { applyAll, applyAllPooled, binaryIdentity, findProcesses } from "../../src/apply/all.js";
import type { ApplyReport, Consistency } from "../../src/apply/contract.js";
import { readPackageFile } from "../../src/format/reader.js";
import { nodeCore } from "../../src/node/core-file.js";
import { Tracer } from "../../src/shim/index.js";
import { SharerPass, type SharerPassStats } from "../../src/shim/sharers.js";
import { tracerPath } from "../../src/shim/load.js";
import type { Core } from "../../src/core/instance.js";
import { splitPause, timeCalls, type CallTimes, type PauseSplit } from "./breakdown.js";
import { SAFETY_STACK_WINDOW } from "../../src/apply/safety.js";
import { buildFixtures } from "./fixture.js";
import { plotSvg, type PlotSeries } from "./plot.js";
import { forgetPerfMap, startServer, type Server } from "./target.js";

const list = (v: string | undefined, d: number[]) => (v ? v.split(",").map(Number) : d);
const only = process.env.BENCH_ONLY?.split(",");
const want = (k: string) => !only || only.includes(k);
const THREADS = list(process.env.BENCH_THREADS, [1, 10, 100]);
const FUNCS = list(process.env.BENCH_FUNCTIONS, [1, 10, 100]);
const REPS = Number(process.env.BENCH_REPS ?? 4);
const BLOCKS = 2;
const ALL_N = Number(process.env.BENCH_ALL ?? 1000);
// --all: "pooled" (default: one tracer per job, reused, as the CLI does) or "fresh" (a tracer per process)
const ALL_TRACERS = process.env.BENCH_ALL_TRACERS === "fresh" ? "fresh" : "pooled";
const CONSISTENCY = (process.env.BENCH_CONSISTENCY ?? "function") as Consistency;
// how long an apply waits for busy threads to leave the replaced functions (default 5000)
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 2000);

const log = (s: string) => process.stderr.write(`bench/apply: ${s}\n`);

function median(v: number[]): number {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function fmt(ns: number): string {
  if (!Number.isFinite(ns)) return "-";
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e3).toFixed(0)} us`;
}

const now = () => Number(process.hrtime.bigint());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The machine is shared: other sessions' load (each session is an autogroup, whose CPU
// share nice values inside it cannot change) preempts the target's monitor, patchc and
// its tracer for whole timeslices. The bench's autogroup (this session: the bench, the
// tracer, the floor program and the targets) gets nice -20 (BENCH_AUTOGROUP_NICE; needs
// root), restored when the bench exits.
const autogroupBefore = (() => {
  try {
    return /nice (-?\d+)/.exec(readFileSync("/proc/self/autogroup", "utf8"))?.[1];
  } catch {
    return undefined;
  }
})();
let autogroupNote = "autogroup not changed";
if (autogroupBefore !== undefined && process.env.BENCH_AUTOGROUP_NICE !== "") {
  const want = process.env.BENCH_AUTOGROUP_NICE ?? "-20";
  try {
    writeFileSync("/proc/self/autogroup", want);
    autogroupNote = `the bench's autogroup at nice ${want}`;
    process.on("exit", () => writeFileSync("/proc/self/autogroup", autogroupBefore));
  } catch (e) {
    autogroupNote = `autogroup nice not set (${(e as NodeJS.ErrnoException).code})`;
  }
}
const loadBefore = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

const t0 = now();
const fx = await buildFixtures(FUNCS);
const core: Core = nodeCore();
const pkgs = new Map(FUNCS.map((k) => [k, readPackageFile(core, fx.packages.get(k)!)]));
log(`fixtures built in ${fmt(now() - t0)} (${fx.dir})`);

const live = new Set<Server>();
const cleanup = () => {
  for (const s of live) s.kill();
  live.clear();
};
process.on("exit", cleanup);

interface Floor {
  ns: number[];
  gap: number[];
  partial?: { stopped: number; of: number; ns: number };
}

/** Plain one-by-one rounds on the target (budget per round). */
function floor(pid: number, rounds: number, budgetMs: number): Floor {
  const out = execFileSync(fx.floor, [String(pid), String(rounds), String(budgetMs)], { encoding: "utf8" });
  const line = (k: string) => out.split("\n").find((l) => l.startsWith(k + " "))!.split(" ").slice(1).map(Number);
  const ns = line("ns");
  const gap = line("gap");
  const stopped = line("stopped");
  const of = line("threads")[0];
  const cut = stopped.findIndex((s) => s < of);
  return cut < 0 ? { ns, gap } : { ns, gap, partial: { stopped: stopped[cut], of, ns: ns[cut] } };
}

interface Cell {
  kind: "sleep" | "busy";
  threads: number;
  functions: number;
  variant: string;
  gap: number[];
  pause: number[];
  pauseTotal: number[];
  total: number[];
  attempts: number[];
  waited: number[];
  splits: PauseSplit[];
  /** ms from the call to each phase ApplyOptions.onPhase reports, and to the return ("end") */
  phases: Array<Record<string, number>>;
  calls: CallTimes[];
  /** applies that timed out (BUSY) with whole-function consistency and were made with "entry" */
  entryApplies: number;
  busyTimeouts: string[];
  /** reverts that timed out (BUSY): the target was restarted */
  revertTimeouts: number;
  failures: string[];
}

interface TargetRow {
  kind: "sleep" | "busy";
  threads: number;
  floorNs: number[];
  floorGap: number[];
  partial?: Floor["partial"];
  noise: number[];
  /** the shim alone: stopWorld then resumeAll from JavaScript, per tracer variant */
  shimGap: Map<string, number[]>;
  shimPause: Map<string, number[]>;
  /** the same with the safety check's stack windows read in the stop */
  shimWinGap: number[];
  shimWinPause: number[];
  cells: Cell[];
}

// The tracer executable applyPatch starts (shim/build/Release/patchc-tracer), and with
// BENCH_TRACER_ALT=PATH a second one, swapped in by rename between blocks: the two take
// turns on the same targets in the same run (an A/B of a tracer change).
const tracerFile = tracerPath();
const variants: Array<{ name: string; file: string }> = [{ name: "current", file: join(fx.dir, "tracer-current") }];
copyFileSync(tracerFile, variants[0].file);
if (process.env.BENCH_TRACER_ALT) {
  variants.push({ name: "alt", file: join(fx.dir, "tracer-alt") });
  copyFileSync(process.env.BENCH_TRACER_ALT, variants[1].file);
}
function install(v: { file: string }): void {
  copyFileSync(v.file, tracerFile + ".bench");
  renameSync(tracerFile + ".bench", tracerFile);
}
let restored = false;
function restoreTracer(): void {
  if (!restored) install(variants[0]);
  restored = true;
}
process.on("exit", restoreTracer);

async function applyOnce(s: Server, cell: Cell, consistency = CONSISTENCY): Promise<void | "restart"> {
  const m = s.monitor!;
  await m.reset();
  const a = now();
  let report: ApplyReport;
  try {
    const pkg = readPackageFile(core, fx.packages.get(cell.functions)!);
    const ph: Record<string, number> = {};
    const tc = await timeCalls(() => splitPause(() => applyPatch(s.pid, pkg, { core, consistency, timeoutMs: TIMEOUT_MS, onPhase: (p) => void (ph[p] = (now() - a) / 1e6) })));
    const r = tc.value;
    ph.end = (now() - a) / 1e6;
    report = r.value;
    if (r.split) cell.splits.push(r.split);
    cell.phases.push(ph);
    cell.calls.push(tc.calls);
  } catch (e) {
    if (e instanceof ApplyError && e.code === "BUSY" && consistency === "function") {
      // Busy threads inside the replaced functions at every stop until the timeout: the
      // comparison with the floor needs an apply, so this one is made with "entry".
      cell.busyTimeouts.push(e.message);
      cell.entryApplies++;
      return applyOnce(s, cell, "entry");
    }
    cell.failures.push(e instanceof Error ? e.message : String(e));
    return;
  }
  const total = now() - a;
  cell.gap.push(await m.gap());
  cell.pause.push(report.pauseNs);
  cell.pauseTotal.push(report.pauseTotalNs);
  cell.total.push(total);
  cell.attempts.push(report.attempts);
  cell.waited.push(report.waitedNs);
  try {
    await revertPatch(s.pid, report.patchId, { core, timeoutMs: TIMEOUT_MS });
  } catch (e) {
    // A busy thread inside the new code at every stop: the target is replaced by a fresh one.
    if (!(e instanceof ApplyError && e.code === "BUSY")) throw e;
    cell.revertTimeouts++;
    return "restart";
  }
  await sleep(5);
}

/** Stop and resume through the shim with nothing in between but the round trip to JavaScript. */
async function shimRounds(s: Server, row: TargetRow, variant: string, rounds: number): Promise<void> {
  const t = Tracer.open({ core });
  try {
    await t.attach(s.pid);
    for (let i = 0; i < rounds; i++) {
      for (const window of variant === "current" ? [0, SAFETY_STACK_WINDOW] : [0]) {
        await s.monitor!.reset();
        await t.stopWorld({ window });
        const r = await t.resumeAll();
        const gap = await s.monitor!.gap();
        if (window) {
          row.shimWinGap.push(gap);
          row.shimWinPause.push(r.pauseNs);
        } else {
          row.shimGap.get(variant)!.push(gap);
          row.shimPause.get(variant)!.push(r.pauseNs);
        }
        await sleep(5);
      }
    }
  } finally {
    await t.close();
  }
}

async function benchTarget(kind: "sleep" | "busy", threads: number): Promise<TargetRow> {
  let s = await startServer(fx.server, kind, threads, fx.monitor);
  live.add(s);
  try {
    await sleep(50);
    const row: TargetRow = {
      kind,
      threads,
      floorNs: [],
      floorGap: [],
      noise: [],
      shimGap: new Map(variants.map((v) => [v.name, []])),
      shimPause: new Map(variants.map((v) => [v.name, []])),
      shimWinGap: [],
      shimWinPause: [],
      cells: variants.flatMap((v) => FUNCS.map((functions) => ({ kind, threads, functions, variant: v.name, gap: [], pause: [], pauseTotal: [], total: [], attempts: [], waited: [], splits: [], phases: [], calls: [], entryApplies: 0, busyTimeouts: [], revertTimeouts: 0, failures: [] }))),
    };
    // one-by-one stops of 100 busy threads take seconds (each waits for its turn on a CPU)
    const busyMany = kind === "busy" && threads >= 100;
    for (let b = 0; b < BLOCKS; b++) {
      const floorRounds = (n: number) => {
        const f = floor(s.pid, n, busyMany ? 10000 : 60000);
        row.floorNs.push(...f.ns);
        row.floorGap.push(...f.gap);
        row.partial ??= f.partial;
      };
      if (busyMany) floorRounds(1);
      for (const v of b % 2 ? [...variants].reverse() : variants) {
        install(v);
        await shimRounds(s, row, v.name, REPS);
        for (const cell of row.cells)
          if (cell.variant === v.name)
            for (let r = 0; r < REPS; r++) {
              // the floor next to the applies in time: the machine's load changes by the second
              if (!busyMany) floorRounds(1);
              if ((await applyOnce(s, cell)) === "restart") {
                s.kill();
                live.delete(s);
                s = await startServer(fx.server, kind, threads, fx.monitor);
                live.add(s);
                await sleep(50);
              }
            }
      }
      // the noise floor: a window as long as an apply, with nothing done
      const len = Math.max(5, median(row.cells.flatMap((c) => c.total)) / 1e6);
      for (let r = 0; r < 3; r++) {
        await s.monitor!.reset();
        await sleep(len);
        row.noise.push(await s.monitor!.gap());
      }
    }
    install(variants[0]);
    return row;
  } finally {
    s.kill();
    live.delete(s);
  }
}

const rows: TargetRow[] = [];
for (const kind of ["sleep", "busy"] as const) {
  if (!want(kind)) continue;
  for (const n of THREADS) {
    log(`${n} ${kind === "sleep" ? "sleeping" : "busy"} threads`);
    rows.push(await benchTarget(kind, n));
  }
}

// ---- --all --------------------------------------------------------------------

interface AllResult {
  n: number;
  single: number[];
  singlePause: number[];
  wallNs: number;
  scanNs: number;
  ok: number;
  failed: string[];
  pause: number[];
  jobs: number;
  functions: number;
  calls: CallTimes;
  sharers?: SharerPassStats;
}

async function benchAll(): Promise<AllResult> {
  const k = FUNCS.includes(10) ? 10 : FUNCS[0];
  const procs: ChildProcess[] = [];
  const kill = () => {
    for (const p of procs) {
      p.kill("SIGKILL");
      if (p.pid) forgetPerfMap(p.pid);
    }
  };
  process.on("exit", kill);
  try {
    for (let i = 0; i < ALL_N; i++) procs.push(spawn(fx.server, ["sleep", "1"], { stdio: ["pipe", "ignore", "inherit"] }));
    // ready: main + one worker
    const t = Date.now();
    for (const p of procs) {
      while (readdirSync(`/proc/${p.pid}/task`).length < 2) {
        if (Date.now() - t > 60000) throw new Error(`--all: process ${p.pid} not ready`);
        await sleep(5);
      }
    }
    const pkg = readPackageFile(core, fx.packages.get(k)!);
    const single: number[] = [];
    const singlePause: number[] = [];
    for (let r = 0; r < 5; r++) {
      const a = now();
      const rep = await applyPatch(procs[0].pid!, readPackageFile(core, fx.packages.get(k)!), { core, consistency: CONSISTENCY });
      single.push(now() - a);
      singlePause.push(rep.pauseNs);
      await revertPatch(procs[0].pid!, rep.patchId, { core });
    }
    const jobs = Number(process.env.BENCH_JOBS ?? 8);
    const cores = Array.from({ length: jobs }, () => nodeCore());
    const a = now();
    const p = readPackageFile(core, fx.packages.get(k)!);
    const id = binaryIdentity(core, fx.server);
    const scan = findProcesses(core, id, { self: process.pid });
    const scanNs = now() - a;
    const pids = scan.matches.map((m) => m.pid);
    const sharers = new SharerPass();
    const tc = await timeCalls(() =>
      ALL_TRACERS === "fresh"
        ? applyAll(pids, (pid, slot) => applyPatch(pid, p, { core: cores[slot], consistency: CONSISTENCY }), { jobs })
        : applyAllPooled(pids, (pid, slot, tracer) => applyPatch(pid, p, { core: cores[slot], consistency: CONSISTENCY, tracer }), { jobs, open: (slot) => Tracer.open({ core: cores[slot] }), sharers }),
    );
    sharers.close();
    const outcomes = tc.value;
    const wallNs = now() - a;
    const mine = new Set(procs.map((q) => q.pid));
    const ok = outcomes.filter((o) => o.ok && mine.has(o.pid));
    return {
      n: ALL_N,
      single,
      singlePause,
      wallNs,
      scanNs,
      ok: ok.length,
      failed: outcomes.filter((o) => !o.ok).map((o) => (o.ok ? "" : `${o.pid}: ${o.error.reason}`)),
      pause: ok.map((o) => (o.ok ? o.report.pauseNs : 0)),
      jobs,
      functions: k,
      calls: tc.calls,
      sharers: ALL_TRACERS === "fresh" ? undefined : sharers.stats,
    };
  } finally {
    kill();
  }
}

let all: AllResult | undefined;
if (want("all")) {
  log(`--all over ${ALL_N} processes`);
  all = await benchAll();
}

// ---- results ------------------------------------------------------------------

const kindName = (k: "sleep" | "busy", n: number) => `${n} ${k === "sleep" ? "sleeping" : "busy"}`;
const cellOf = (r: TargetRow, f: number, v = "current") => r.cells.find((c) => c.functions === f && c.variant === v)!;
console.log("\n### apply\n");
console.log(`consistency: ${CONSISTENCY}; ${REPS * BLOCKS} applies per cell (each reverted), a one-by-one floor round before each apply; medians; ${autogroupNote}; pause monitor at nice ${process.env.BENCH_MONITOR_NICE ?? "-20"}; load average ${loadBefore} before, ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} after\n`);
console.log("| threads | functions | pause seen by the target | floor seen by the target | ratio | pause patchc reports | shim stop + resume alone | whole apply | floor timed by itself | noise floor | note |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  const fGap = median(r.floorGap);
  for (const f of FUNCS) {
    const c = cellOf(r, f);
    const notes: string[] = [];
    const att = c.attempts.filter((a) => a > 1);
    if (att.length) notes.push(`${att.length} of ${c.attempts.length} applies waited for a thread to leave (${fmt(median(c.waited))} median wait, up to ${Math.max(...c.attempts)} attempts; pause summed over attempts ${fmt(median(c.pauseTotal))})`);
    if (c.entryApplies) notes.push(`${c.entryApplies} applies with whole-function consistency timed out after ${TIMEOUT_MS} ms (a busy thread inside a replaced function at every stop: "${c.busyTimeouts[0]}") and were made again with consistency "entry"`);
    if (c.revertTimeouts) notes.push(`${c.revertTimeouts} reverts timed out after ${TIMEOUT_MS} ms (a busy thread inside the new code at every stop): the target was restarted`);
    if (c.failures.length) notes.push(`${c.failures.length} failed: ${[...new Set(c.failures)].join("; ")}`);
    if (r.partial) notes.push(`one-by-one stopped ${r.partial.stopped} of ${r.partial.of} threads in ${fmt(r.partial.ns)} and was cut short: the floor is a lower bound`);
    const g = median(c.gap);
    const lb = r.partial ? "> " : "";
    console.log(
      `| ${kindName(r.kind, r.threads)} | ${c.functions} | ${fmt(g)} | ${lb}${fmt(fGap)} | ${Number.isFinite(g) ? (r.partial ? "< " : "") + (g / fGap).toFixed(2) + "x" : "-"} | ${fmt(median(c.pause))} | ${fmt(median(r.shimGap.get("current")!))} (tracer: ${fmt(median(r.shimPause.get("current")!))}) | ${fmt(median(c.total))} | ${lb}${fmt(median(r.floorNs))} | ${fmt(median(r.noise))} | ${notes.join("; ")} |`,
    );
  }
}
console.log("\n#### where the pause goes (the successful stop of each apply, medians per step)\n");
console.log(`| threads | functions | pause patchc reports | proven by the tracer's scan | stop (tracer) | scan of the stacks (tracer): time, bytes | of which reading registers and ${SAFETY_STACK_WINDOW / 1024} KiB stack windows (not proven) | safety check (JavaScript, stack reads included) | other JavaScript | patch + resume (tracer) | transit to JavaScript and back | stack reads in the check | the shim's stop + resume alone, with the windows (tracer) |`);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  for (const f of FUNCS) {
    const sp = cellOf(r, f).splits;
    const m = (k: keyof PauseSplit) => median(sp.map((x) => x[k]));
    const proven = sp.filter((x) => x.proven).length;
    if (sp.length) console.log(`| ${kindName(r.kind, r.threads)} | ${f} | ${fmt(m("pause"))} | ${proven} of ${sp.length} | ${fmt(m("stop"))} | ${fmt(m("scan"))}, ${(m("scanned") / 1024).toFixed(0)} KiB | ${fmt(m("stopRead"))} | ${fmt(m("check"))} | ${fmt(m("otherJs"))} | ${fmt(m("patch"))} | ${fmt(m("transit"))} | ${m("reads")} | ${fmt(median(r.shimWinPause))} |`);
  }
}
console.log("\n#### where the whole apply goes (ApplyOptions.onPhase, medians of the time from one phase to the next)\n");
const PH = ["resolve", "map", "stop", "done", "end"];
console.log("| threads | functions | whole apply | reading the package | resolve: target, references, plan, unwind tables | map: region, fill, warm-up | stop, check, patch, resume (waits included) | after |");
console.log("|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  for (const f of FUNCS) {
    const ps = cellOf(r, f).phases.filter((p) => PH.every((k) => k in p));
    if (!ps.length) continue;
    const d = (i: number) => fmt(median(ps.map((p) => (i < 0 ? p[PH[0]] : p[PH[i + 1]] - p[PH[i]]))) * 1e6);
    console.log(`| ${kindName(r.kind, r.threads)} | ${f} | ${fmt(median(ps.map((p) => p.end)) * 1e6)} | ${d(-1)} | ${d(0)} | ${d(1)} | ${d(2)} | ${d(3)} |`);
  }
}
{
  // where the rest of the whole apply goes: the shim's requests and the unwind tables
  const fn = FUNCS.includes(10) ? 10 : FUNCS[0];
  const cols = rows.filter((r) => r.kind === "sleep").map((r) => ({ name: `${kindName(r.kind, r.threads)}, ${fn} functions: median per apply`, calls: cellOf(r, fn).calls }));
  const labels = new Set<string>();
  for (const c of cols) for (const x of c.calls) for (const k of Object.keys(x)) labels.add(k);
  if (all) for (const k of Object.keys(all.calls)) labels.add(k);
  if (labels.size) {
    console.log("\n#### the calls inside an apply (wall time as JavaScript sees it; count in parentheses)\n");
    const heads = cols.map((c) => c.name).concat(all ? [`--all: sum over ${all.n} processes / ${all.n} (${all.jobs} at a time: overlapping)`] : []);
    console.log(`| call | ${heads.join(" | ")} |`);
    console.log(`|---|${heads.map(() => "---").join("|")}|`);
    const med = (c: CallTimes[], k: string, f: "ns" | "calls") => median(c.map((x) => x[k]?.[f] ?? 0));
    const order = [...labels].sort((x, y) => (cols[0] ? med(cols[0].calls, y, "ns") - med(cols[0].calls, x, "ns") : 0));
    for (const k of order) {
      const cells = cols.map((c) => `${fmt(med(c.calls, k, "ns"))} (${med(c.calls, k, "calls")})`);
      if (all) cells.push(`${fmt((all.calls[k]?.ns ?? 0) / all.n)} (${((all.calls[k]?.calls ?? 0) / all.n).toFixed(1)})`);
      console.log(`| ${k} | ${cells.join(" | ")} |`);
    }
  }
}
if (variants.length > 1) {
  console.log(`\n#### tracer A/B: current = ${tracerFile}, alt = ${process.env.BENCH_TRACER_ALT} (taking turns in the same run)\n`);
  console.log("| threads | functions | pause seen by the target, current | alt | alt / current | pause patchc reports, current | alt | shim stop + resume seen by the target, current | alt |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    for (const f of FUNCS) {
      const c = cellOf(r, f);
      const d = cellOf(r, f, "alt");
      console.log(
        `| ${kindName(r.kind, r.threads)} | ${f} | ${fmt(median(c.gap))} | ${fmt(median(d.gap))} | ${(median(d.gap) / median(c.gap)).toFixed(2)}x | ${fmt(median(c.pause))} | ${fmt(median(d.pause))} | ${fmt(median(r.shimGap.get("current")!))} | ${fmt(median(r.shimGap.get("alt")!))} |`,
      );
    }
  }
}
if (all) {
  const per = all.wallNs / all.n;
  const single = median(all.single);
  console.log("\n| --all | processes | whole run | per process | single apply | ratio | pause patchc reports | note |");
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(
    `| ${all.functions} functions | ${all.n} (1 sleeping thread each) | ${fmt(all.wallNs)} | ${fmt(per)} | ${fmt(single)} | ${(per / single).toFixed(2)}x | ${fmt(median(all.pause))} median, ${fmt(Math.max(...all.pause))} max | scan of /proc ${fmt(all.scanNs)}; ${all.jobs} applies at a time (src/apply/all.ts ${ALL_TRACERS === "fresh" ? "applyAll, a tracer per process" : "applyAllPooled, a tracer per job"}); ${all.sharers ? `sharer check: ${all.sharers.passes} pass${all.sharers.passes === 1 ? "" : "es"} over /proc (${fmt(all.sharers.passNs)}, ${all.sharers.passKcmps} kcmp), ${all.sharers.fromPass} attaches from it, ${all.sharers.full} against every process, ${(all.sharers.checked / Math.max(1, all.sharers.fromPass + all.sharers.full)).toFixed(1)} kcmp per attach${all.sharers.noPass ? ` (${all.sharers.noPass})` : ""}; ` : ""}${all.ok} patched${all.failed.length ? `, ${all.failed.length} failed: ${[...new Set(all.failed.map((f) => f.replace(/^\d+: /, "")))].slice(0, 3).join("; ")}` : ""} |`,
  );
}
console.log(`\nbench/apply: ${fmt(now() - t0)} in all`);

// ---- plot ---------------------------------------------------------------------

if (rows.length) {
  const colors = ["#1f77b4", "#2ca02c", "#d62728"];
  const panels = (["sleep", "busy"] as const)
    .filter((k) => rows.some((r) => r.kind === k))
    .map((k) => {
      const rs = rows.filter((r) => r.kind === k);
      const series: PlotSeries[] = [
        { label: "floor: one-by-one ptrace", color: "#000", dash: "6,4", points: rs.map((r) => ({ threads: r.threads, value: median(r.floorGap) / 1e6 })) },
        { label: "the shim's stop + resume alone", color: "#999", dash: "2,2", points: rs.map((r) => ({ threads: r.threads, value: median(r.shimGap.get("current")!) / 1e6 })) },
      ];
      FUNCS.forEach((f, i) =>
        series.push({ label: `patchc, ${f} function${f > 1 ? "s" : ""}`, color: colors[i % colors.length], points: rs.map((r) => ({ threads: r.threads, value: median(cellOf(r, f).gap) / 1e6 })).filter((p) => Number.isFinite(p.value)) }),
      );
      return { title: k === "sleep" ? "sleeping threads" : "busy threads", series };
    });
  const svg = plotSvg("patchc apply: pause seen by the target (pause monitor), medians", panels, [
    { label: "goal for 10 functions, 1 thread: 0.5 ms", value: 0.5 },
    { label: "libpulp ~2.1 ms", value: 2.1 },
    { label: "libcare ~4.4 ms", value: 4.4 },
  ], THREADS);
  // a partial run (BENCH_ONLY, BENCH_THREADS, BENCH_FUNCTIONS, BENCH_TRACER_ALT) leaves the README's plot alone
  const partial = ["BENCH_ONLY", "BENCH_THREADS", "BENCH_FUNCTIONS", "BENCH_TRACER_ALT"].some((k) => process.env[k]);
  const file = partial ? "build/bench/apply.svg" : "docs/bench-apply.svg";
  writeFileSync(file, svg);
  log(`wrote ${file}`);
}
cleanup();
restoreTracer();
rmSync(fx.dir, { recursive: true, force: true });
