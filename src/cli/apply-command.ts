// `patchc apply`: a package into running processes (README, "patchc apply").
//
//   patchc apply PID FILE [--consistency=function|entry] [--timeout MS] [--require-signed KEY] [--json]
//   patchc apply --all BINARY FILE [--jobs N] [same options]
//       every process running BINARY or having it loaded, matched by build-id (src/apply/all.ts)
//
// planApply() turns the command line into a plan and the format*() functions turn reports
// into text: pure, tested without a process. run() reads and checks the package before
// touching any process (a bad package, a signature required and missing, a package for
// another build than BINARY: exit 1 with the target untouched), then calls the library
// (src/apply/index.ts). A refusal (ApplyError) is one line naming the process, the
// function and the reason, exit 1; with --json also {"error": ...} on stdout.
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { Command, Output } from "./command.js";
import { EXIT_FAILED, EXIT_INTERNAL, EXIT_OK } from "./exit-codes.js";
import { choice, pidArg, positiveInteger, UsageError, type ParsedArgs } from "./options.js";
import { nodeCore } from "../node/core-file.js";
import type { Core } from "../core/instance.js";
import { readPackageFile, type ReadPackage } from "../format/reader.js";
import { readVerifyingKey, requireSignature } from "../format/verify.js";
import type { ApplyOptions, ApplyReport, Consistency } from "../apply/contract.js";
import { ApplyError, processSubject } from "../apply/errors.js";
import { applyAllPooled, binaryIdentity, findProcesses, type BinaryIdentity, type ProcessOutcome, type ProcessScan, type Progress } from "../apply/all.js";
import * as engine from "../apply/index.js";
import { Tracer } from "../shim/index.js";

/** The library the commands call (src/apply/index.ts); a parameter so the CLI's plumbing can be tested alone. */
export type ApplyLibrary = Pick<typeof engine, "applyPatch" | "revertPatch" | "readStatus">;

/**
 * Processes `apply --all` patches at a time: the CPUs. Measured with 50 targets on 2 CPUs,
 * 8 at a time took 15% less time than 2, but stretched the longest pause of a target from
 * 2-6 ms to 14-20 ms: concurrent applies compete with the stopped target's tracer.
 */
export const DEFAULT_JOBS = Math.max(1, availableParallelism());

interface Common {
  file: string;
  consistency: Consistency;
  timeoutMs?: number;
  requireSigned?: string;
  json: boolean;
}

export type ApplyPlan = (Common & { mode: "one"; pid: number }) | (Common & { mode: "all"; binary: string; jobs: number });

export function planApply(args: ParsedArgs): ApplyPlan {
  const o = args.options;
  if (args.args.length !== 2) {
    throw new UsageError(o.all ? "`patchc apply --all` needs BINARY FILE (the executable or library, and the package)" : "`patchc apply` needs PID FILE (or --all BINARY FILE)");
  }
  const common: Common = {
    file: args.args[1],
    consistency: choice(o.consistency, "consistency", ["function", "entry"] as const) ?? "function",
    timeoutMs: positiveInteger(o.timeout as number | undefined, "timeout", "a time in milliseconds"),
    requireSigned: o["require-signed"] as string | undefined,
    json: o.json === true,
  };
  if (o.all) return { mode: "all", binary: args.args[0], jobs: positiveInteger(o.jobs as number | undefined, "jobs", "a count of processes") ?? DEFAULT_JOBS, ...common };
  if (o.jobs !== undefined) throw new UsageError("--jobs goes with --all");
  return { mode: "one", pid: pidArg(args.args[0], "apply"), ...common };
}

// ---- output ---------------------------------------------------------------------

/** JSON for tools: bigints (addresses) as "0x..." strings, dates as ISO strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v), 2) + "\n";
}

export const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** A duration for people: 45.2 us, 0.31 ms, 12.3 ms, 1.25 s. */
export function duration(ns: number): string {
  if (ns < 10_000) return `${(ns / 1e3).toFixed(1)} us`;
  if (ns < 1_000_000) return `${Math.round(ns / 1e3)} us`;
  if (ns < 10_000_000) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns < 1_000_000_000) return `${(ns / 1e6).toFixed(1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

export function size(n: bigint): string {
  return n % 1024n === 0n && n >= 1024n ? `${n / 1024n} KiB` : `${n} bytes`;
}

/** The table of a report's functions: name, site -> new address (size), what it supersedes. */
function functionLines(fs: ApplyReport["functions"]): string[] {
  const w = Math.max(...fs.map((f) => f.name.length));
  return fs.map((f) => `  ${f.name.padEnd(w)}  ${hex(f.site)} -> ${hex(f.newAddr)} (${f.newSize} bytes${f.previous ? `, over ${f.previous}` : ""})`);
}

export function formatApply(r: ApplyReport): string {
  const lines = [`process ${r.pid}: applied ${r.patchId} (${r.hash.slice(0, 12)}) to ${r.module.path} (build-id ${r.module.buildId.slice(0, 16)})`, ...functionLines(r.functions)];
  // The name as /proc/PID/maps shows it ("/memfd:patchc:fix (deleted)"): what an operator greps for.
  const name = r.region.name ? ` ${JSON.stringify(r.region.name)}` : "";
  lines.push(`region ${hex(r.region.base)} (${size(r.region.size)})${name} (${r.region.memfd ? "memfd" : "anonymous: memfd execution refused"})`);
  if (r.consistency === "entry") {
    lines.push("consistency entry: calls already running in these functions finish in the old code; new calls run the new code");
  }
  const tries = r.attempts > 1 ? ` (${r.attempts} attempts: stopped ${duration(r.pauseTotalNs)} in all, waited ${duration(r.waitedNs)} for threads to leave)` : "";
  lines.push(`target stopped for ${duration(r.pauseNs)}${tries}; total ${duration(r.totalNs)}`);
  return lines.join("\n") + "\n";
}

/** One line for an ApplyError: the process (and function), the reason, and the stable code. */
export function formatError(e: ApplyError): string {
  return `${e.subject}: ${e.reason} [${e.code}]`;
}

export const errorJson = (e: ApplyError) => ({ error: { code: e.code, subject: e.subject, reason: e.reason, tid: e.tid } });

/** Shows an ApplyError (and with --json, the error as JSON on stdout); exit code 1. */
export function reportFailure(e: ApplyError, json: boolean, io: Output): number {
  if (json) io.out(toJson(errorJson(e)));
  io.err(`patchc: ${formatError(e)}\n`);
  return EXIT_FAILED;
}

export function formatProgress(patchId: string, p: Progress): string {
  return `applying ${patchId}: ${p.done}/${p.total} processes, ${p.patched} patched, ${p.failed} failed`;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Up to this many processes, the summary has a line for each. */
const LIST_MAX = 20;

/** The summary of `apply --all`: how many patched and failed (each with its reason), times. */
export function formatAllSummary(pkg: { patchId: string }, id: BinaryIdentity, scan: ProcessScan, outcomes: ProcessOutcome[], totalNs: number): string {
  const lines: string[] = [];
  const ok = outcomes.filter((o) => o.ok);
  const failed = outcomes.filter((o): o is Extract<ProcessOutcome, { ok: false }> => !o.ok && !o.gone);
  const gone = outcomes.filter((o) => !o.ok && o.gone).length;
  const what = `${id.path} (build-id ${id.buildId.slice(0, 16)})`;
  if (outcomes.length === 0) {
    lines.push(`no process runs or has loaded ${what}: nothing to patch`);
  } else {
    lines.push(`${pkg.patchId} on ${outcomes.length} process${outcomes.length === 1 ? "" : "es"} with ${what}: ${ok.length} patched, ${failed.length} failed${gone ? `, ${gone} exited meanwhile` : ""}`);
    if (outcomes.length <= LIST_MAX) {
      // One line per process; a failure with its reason (the function, when it concerns one).
      for (const o of outcomes) {
        const pid = String(o.pid).padStart(7);
        if (o.ok) lines.push(`  ${pid}  patched  stopped ${duration(o.report.pauseNs)}, ${duration(o.ms * 1e6)}`);
        else {
          const fn = o.error.subject.replace(new RegExp(`^process ${o.pid}(, )?`), "");
          lines.push(`  ${pid}  ${o.gone ? "exited " : "failed "}  ${fn ? `${fn}: ` : ""}${o.error.reason} [${o.error.code}]`);
        }
      }
    } else {
      for (const f of failed) lines.push(`failed: ${f.error.subject}: ${f.error.reason} [${f.error.code}]`);
    }
    const pauses = ok.map((o) => o.report.pauseNs);
    const per = outcomes.map((o) => o.ms * 1e6);
    lines.push(
      `total ${duration(totalNs)}, ${duration(totalNs / outcomes.length)} per process` +
        ` (each apply: median ${duration(median(per))}, max ${duration(Math.max(...per))})` +
        (pauses.length ? `; target stopped: median ${duration(median(pauses))}, max ${duration(Math.max(...pauses))}` : ""),
    );
  }
  const skipped = scan.excluded.map((x) => `${x.pid} (${x.why === "patchc" ? "patchc itself" : x.why === "ancestor" ? "an ancestor of patchc" : "a patchc tracer"})`);
  if (skipped.length) lines.push(`not touched: ${skipped.join(", ")}`);
  if (scan.unreadable.length) lines.push(`not readable (another user's, not permitted): ${scan.unreadable.length} process${scan.unreadable.length === 1 ? "" : "es"}`);
  return lines.join("\n") + "\n";
}

// ---- running --------------------------------------------------------------------

/** Reads the package and checks a required signature: before anything is touched. */
export function loadPackage(core: Core, file: string, requireSigned?: string): ReadPackage {
  const pkg = readPackageFile(core, file);
  if (requireSigned !== undefined) requireSignature(pkg, readVerifyingKey(requireSigned), requireSigned);
  return pkg;
}

/** A dead or never-existing PID, refused before the library is called. */
export function requireProcess(pid: number): void {
  if (!existsSync(`/proc/${pid}`)) throw new ApplyError("NO_PROCESS", processSubject(pid), "no such process");
}

export function applyCommandWith(lib: ApplyLibrary): Command {
  return {
    spec: {
      name: "apply",
      summary: "apply a patch package to a running process (or --all processes having a binary)",
      usage: "PID FILE | --all BINARY FILE",
      minArgs: 0,
      maxArgs: 2,
      options: [
        { name: "all", kind: "boolean", help: "every process running BINARY or having it loaded (matched by build-id)" },
        { name: "consistency", kind: "string", value: "MODE", help: "function (default): no thread inside a replaced function; entry: running calls finish in the old code" },
        { name: "timeout", kind: "number", value: "MS", help: "how long to wait for threads to leave the replaced functions (default 5000)" },
        { name: "require-signed", kind: "string", value: "KEY", help: "refuse the package unless signed by this ed25519 key (PEM)" },
        { name: "jobs", kind: "number", value: "N", help: `with --all: processes patched at a time (default: the CPUs, ${DEFAULT_JOBS})` },
      ],
    },
    async run(args, io) {
      const plan = planApply(args);
      const core = nodeCore();
      const pkg = loadPackage(core, plan.file, plan.requireSigned);
      const opts: ApplyOptions = { consistency: plan.consistency, timeoutMs: plan.timeoutMs };
      if (plan.mode === "one") {
        try {
          requireProcess(plan.pid);
          const report = await lib.applyPatch(plan.pid, pkg, { ...opts, core });
          io.out(plan.json ? toJson(report) : formatApply(report));
          return EXIT_OK;
        } catch (e) {
          if (e instanceof ApplyError) return reportFailure(e, plan.json, io);
          throw e;
        }
      }
      return runAll(lib, plan, pkg, core, opts, io);
    },
  };
}

async function runAll(lib: ApplyLibrary, plan: Extract<ApplyPlan, { mode: "all" }>, pkg: ReadPackage, core: Core, opts: ApplyOptions, io: Output): Promise<number> {
  const t0 = process.hrtime.bigint();
  let id: BinaryIdentity;
  try {
    id = binaryIdentity(core, plan.binary);
    if (id.buildId !== pkg.model.target.buildId) {
      throw new ApplyError("WRONG_BUILD", plan.binary, `its build-id is ${id.buildId}, and ${plan.file} patches build-id ${pkg.model.target.buildId} (${pkg.model.target.path})`);
    }
  } catch (e) {
    if (e instanceof ApplyError) return reportFailure(e, plan.json, io);
    throw e;
  }
  const scan = findProcesses(core, id);
  const progress = io.isTTY && !plan.json;
  let shown = 0;
  const cores = [core];
  const outcomes = await applyAllPooled(
    scan.matches.map((m) => m.pid),
    (pid, slot, tracer) => lib.applyPatch(pid, pkg, { ...opts, core: (cores[slot] ??= nodeCore()), tracer }),
    {
      jobs: plan.jobs,
      open: (slot) => Tracer.open({ core: (cores[slot] ??= nodeCore()) }),
      onProgress: progress
        ? (p) => {
            const now = performance.now();
            if (p.done === p.total || now - shown > 50) {
              shown = now;
              io.out(`\r\x1b[K${formatProgress(pkg.model.patchId, p)}`);
            }
          }
        : undefined,
    },
  );
  if (progress && outcomes.length) io.out("\r\x1b[K");
  const totalNs = Number(process.hrtime.bigint() - t0);
  if (plan.json) {
    io.out(toJson(outcomes.map((o) => (o.ok ? { pid: o.pid, ok: true, ms: o.ms, report: o.report } : { pid: o.pid, ok: false, gone: o.gone, ms: o.ms, error: o.error }))));
  } else {
    io.out(formatAllSummary(pkg.model, id, scan, outcomes, totalNs));
  }
  if (outcomes.some((o) => !o.ok && o.error.code === "INTERNAL")) return EXIT_INTERNAL;
  // A process that exited meanwhile runs nothing to patch: not a failure.
  return outcomes.some((o) => !o.ok && !o.gone) ? EXIT_FAILED : EXIT_OK;
}

export const applyCommand: Command = applyCommandWith(engine);
