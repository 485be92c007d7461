// Where the pause goes: the bench wraps (in its own bundle, nothing changed in src/) the
// steps of the successful stop of an apply and splits ApplyReport.pauseNs into
//   stop       Tracer.stopCheckPatch (or stopWorld), in the tracer: first PTRACE_INTERRUPT
//              to its reply, or to the scan when the scan proved the stop
//   scan       the tracer's word scan of every stack (shim/proof.c), inside the stop
//   proven     1 when the scan proved the stop (patched and resumed in the same request:
//              no check, no transit), 0 when the precise check decided
//   check      ProcessUnwind.check as JavaScript sees it (its stack reads through the tracer included)
//   other JS   the rest of the JavaScript between stopWorld's reply and the patchAndResume request
//   patch      Tracer.patchAndResume, in the tracer: site check, write, resume of every thread
//   transit    what remains: the reply's trip to JavaScript and the request's trip back
//              (socket, wakeups of the JavaScript thread and of the tracer)
// All in nanoseconds. process.hrtime and the tracer read the same CLOCK_MONOTONIC.
import { ProcessUnwind } from "../../src/apply/safety.js";
import { Tracer, type World } from "../../src/shim/index.js";

export interface PauseSplit {
  stop: number;
  scan: number;
  /** bytes of stack the scan read */
  scanned: number;
  proven: number;
  /** of which reading registers and stack windows */
  stopRead: number;
  check: number;
  otherJs: number;
  patch: number;
  transit: number;
  pause: number;
  /** tracer requests made by the check (stack reads) */
  reads: number;
}

interface Open {
  stopNs: number;
  scanNs: number;
  scanned: number;
  readNs: number;
  stoppedAt: number;
  checkNs: number;
  reads: number;
  inCheck: boolean;
}

const now = () => Number(process.hrtime.bigint());
let recording = false;
let open: Open | undefined;
let last: PauseSplit | undefined;

const stopWorld = Tracer.prototype.stopWorld;
Tracer.prototype.stopWorld = async function (this: Tracer, ...args: Parameters<Tracer["stopWorld"]>): Promise<World> {
  const w = await stopWorld.apply(this, args);
  if (recording) open = { stopNs: w.totalNs, scanNs: 0, scanned: 0, readNs: w.readNs, stoppedAt: now(), checkNs: 0, reads: 0, inCheck: false };
  return w;
};

const stopCheckPatch = Tracer.prototype.stopCheckPatch;
Tracer.prototype.stopCheckPatch = async function (this: Tracer, ...args: Parameters<Tracer["stopCheckPatch"]>) {
  const r = await stopCheckPatch.apply(this, args);
  if (!recording) return r;
  if (r.proven) {
    const x = r.resumed;
    const patch = x.checkNs + x.writeNs + x.resumeNs;
    last = { stop: x.pauseNs - patch - r.scanNs, scan: r.scanNs, scanned: r.scanned, proven: 1, stopRead: 0, check: 0, otherJs: 0, patch, transit: 0, pause: x.pauseNs, reads: 0 };
    open = undefined;
  } else {
    const w = r.world;
    open = { stopNs: w.totalNs - r.scanNs, scanNs: r.scanNs, scanned: r.scanned, readNs: w.readNs - r.scanNs, stoppedAt: now(), checkNs: 0, reads: 0, inCheck: false };
  }
  return r;
};

const readMemory = Tracer.prototype.readMemory;
Tracer.prototype.readMemory = function (this: Tracer, ...args: Parameters<Tracer["readMemory"]>) {
  if (open?.inCheck) open.reads++;
  return readMemory.apply(this, args);
};

const check = ProcessUnwind.prototype.check;
ProcessUnwind.prototype.check = async function (this: ProcessUnwind, ...args: Parameters<ProcessUnwind["check"]>) {
  const o = open;
  const t = now();
  if (o) o.inCheck = true;
  try {
    return await check.apply(this, args);
  } finally {
    if (o) {
      o.inCheck = false;
      o.checkNs += now() - t;
    }
  }
};

const patchAndResume = Tracer.prototype.patchAndResume;
Tracer.prototype.patchAndResume = async function (this: Tracer, ...args: Parameters<Tracer["patchAndResume"]>) {
  const o = open;
  const calledAt = now();
  const r = await patchAndResume.apply(this, args);
  if (recording && o) {
    const js = calledAt - o.stoppedAt;
    const patch = r.checkNs + r.writeNs + r.resumeNs;
    last = { stop: o.stopNs, scan: o.scanNs, scanned: o.scanned, proven: 0, stopRead: o.readNs, check: o.checkNs, otherJs: js - o.checkNs, patch, transit: r.pauseNs - o.stopNs - o.scanNs - js - patch, pause: r.pauseNs, reads: o.reads };
  }
  open = undefined;
  return r;
};

/** Runs `fn` (one apply) and returns the split of its successful stop, if it had one. */
export async function splitPause<T>(fn: () => Promise<T>): Promise<{ value: T; split?: PauseSplit }> {
  recording = true;
  last = undefined;
  open = undefined;
  try {
    const value = await fn();
    return { value, split: last };
  } finally {
    recording = false;
    open = undefined;
  }
}

// Time spent in the shim's requests and in the unwind tables' preparation during one
// apply, by name (wall time as JavaScript sees it; concurrent requests of --all overlap).
export type CallTimes = Record<string, { ns: number; calls: number }>;
let calls: CallTimes | undefined;

function wrap<T extends object>(obj: T, name: string, label: string | ((args: unknown[]) => string)): void {
  const o = obj as Record<string, unknown>;
  const f = o[name] as (...a: unknown[]) => unknown;
  o[name] = function (this: unknown, ...args: unknown[]) {
    const c = calls;
    if (!c) return f.apply(this, args);
    const t = now();
    const done = () => {
      const l = typeof label === "string" ? label : label(args);
      const e = (c[l] ??= { ns: 0, calls: 0 });
      e.ns += now() - t;
      e.calls++;
    };
    const r = f.apply(this, args);
    if (r instanceof Promise) return r.finally(done);
    done();
    return r;
  };
}

wrap(Tracer, "open", "Tracer.open (start the tracer process)");
// leaves only (read() calls readMemory(), mmap() and the others call syscall())
for (const m of ["attach", "detach", "begin", "commit", "writeText", "writeData", "readMemory", "call", "syscallSite", "stopWorld", "stopCheckPatch", "patchAndResume", "resumeAll", "waitReturn", "close"])
  if (typeof (Tracer.prototype as unknown as Record<string, unknown>)[m] === "function") wrap(Tracer.prototype, m, `tracer ${m}`);
const SYSCALLS: Record<number, string> = { 3: "close", 9: "mmap", 10: "mprotect", 11: "munmap", 77: "ftruncate", 319: "memfd_create" };
wrap(Tracer.prototype, "syscall", (a) => `tracer remote ${SYSCALLS[Number(a[1])] ?? "syscall " + String(a[1])}`);
wrap(ProcessUnwind, "prepare", "ProcessUnwind.prepare (unwind tables of every module)");

/** Runs `fn` and returns the time of each wrapped call made while it ran. */
export async function timeCalls<T>(fn: () => Promise<T>): Promise<{ value: T; calls: CallTimes }> {
  const mine: CallTimes = {};
  calls = mine;
  try {
    return { value: await fn(), calls: mine };
  } finally {
    calls = undefined;
  }
}
