// bench/shim: the shim beside plain one-by-one ptrace (bench/shim/onebyone.c), in
// the same run, on the same target (bench/shim/target.c): stop and resume every
// thread (1, 10, 100, 1000 threads, sleeping and busy), a remote mmap, writing
// 1 MiB. Ratios: shim time / one-by-one time (lower is better).
//
// The stop+resume figure of the shim is the pause as the tracer measures it, from
// its first PTRACE_INTERRUPT to its last PTRACE_CONT, and includes one round trip
// to JavaScript (stopWorld's reply, then the resumeAll request): what a caller that
// does nothing in between sees. Both read every thread's registers.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { printTable, type Row } from "../table.js";
import { MAP, PROT, Tracer } from "../../src/shim/index.js";

const dir = mkdtempSync(join(tmpdir(), "patchc-bench-shim-"));
function gcc(name: string, flags: string[] = []): string {
  const out = join(dir, name);
  execFileSync("gcc", ["-O2", "-Wall", ...flags, `bench/shim/${name}.c`, "-o", out], { stdio: "inherit" });
  return out;
}
const TARGET = gcc("target", ["-pthread"]);
const ONEBYONE = gcc("onebyone");

interface Target {
  proc: ChildProcess;
  pid: number;
  region: bigint;
}

async function start(kind: "sleep" | "busy", n: number): Promise<Target> {
  const proc = spawn(TARGET, [kind, String(n)], { stdio: ["pipe", "pipe", "inherit"] });
  const line: string = await new Promise((resolve, reject) => {
    let buf = "";
    proc.stdout!.on("data", (d) => {
      buf += d;
      if (buf.includes("\n")) resolve(buf);
    });
    proc.on("exit", (c) => reject(new Error(`target exited ${c}`)));
  });
  return { proc, pid: proc.pid!, region: BigInt("0x" + line.trim().split(" ")[1]) };
}

function stopTarget(t: Target): void {
  t.proc.kill("SIGKILL");
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The reference's samples (ns), or how far it got within its budget. */
function onebyone(args: string[], fifo = false): { samples: number[]; partial?: { stopped: number; ns: number } } {
  const env = fifo ? { ...process.env, ONEBYONE_FIFO: "1" } : process.env;
  const out = execFileSync(ONEBYONE, args, { encoding: "utf8", env }).trim();
  const w = out.split(" ");
  if (w[0] === "partial") return { samples: [], partial: { stopped: Number(w[1]), ns: Number(w[2]) } };
  return { samples: w.slice(1).map(Number) };
}

function fmt(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e3).toFixed(1)} us`;
}

const rows: Row[] = [];

/** "12.3x faster" / "2.1x slower": the ratio column rounds to 2 decimals. */
function speed(ours: number, theirs: number): string {
  return ours <= theirs ? `${(theirs / ours).toFixed(1)}x faster` : `${(ours / theirs).toFixed(1)}x slower`;
}

// The machine is shared and its load changes from second to second: the shim and
// the reference take turns, in blocks of a few rounds, and each side's median over
// all its rounds is compared.
async function stopResume(kind: "sleep" | "busy", n: number): Promise<void> {
  // one-by-one stops of busy threads take as long as the scheduler needs to give each
  // its turn: one round of 100 takes seconds, one of 1000 is cut short after 3 s
  const busyMany = kind === "busy" && n >= 100;
  const blocks = n >= 1000 || busyMany ? 1 : 5;
  const per = n >= 1000 ? 5 : busyMany ? 10 : 8;
  const refRounds = busyMany ? 1 : per;
  const budget = busyMany ? (n >= 1000 ? 3000 : 30000) : 60000;
  const tg = await start(kind, n);
  try {
    const pauses: number[] = [];
    const inTracer: number[] = [];
    const ref: number[] = [];
    const refFifo: number[] = [];
    let partial: { stopped: number; ns: number } | undefined;
    let partialFifo: { stopped: number; ns: number } | undefined;
    for (let b = 0; b < blocks; b++) {
      const t = Tracer.open();
      await t.attach(tg.pid);
      for (let i = 0; i < per + 1; i++) {
        const w = await t.stopWorld();
        const r = await t.resumeAll();
        if (i >= 1) {
          pauses.push(r.pauseNs);
          inTracer.push(w.interruptNs + w.waitNs + w.readNs + r.resumeNs);
        }
        await new Promise((res) => setTimeout(res, 5));
      }
      await t.close();
      const o = onebyone(["stop", String(tg.pid), String(refRounds), String(budget)]);
      ref.push(...o.samples);
      partial ??= o.partial;
      const f = onebyone(["stop", String(tg.pid), String(refRounds), String(budget)], true);
      refFifo.push(...f.samples);
      partialFifo ??= f.partial;
    }
    const fifoNote = partialFifo
      ? `one-by-one at the tracer's SCHED_FIFO: ${partialFifo.stopped} threads in ${fmt(partialFifo.ns)}, cut short`
      : `one-by-one at the tracer's SCHED_FIFO: ${fmt(median(refFifo))}`;
    const ours = median(pauses);
    const input = `${n} ${kind === "sleep" ? "sleeping" : "busy"} thread${n > 1 ? "s" : ""} (+ main)`;
    const tracerNote = `in the tracer alone ${fmt(median(inTracer))}`;
    if (partial) {
      rows.push({
        what: "stop + resume all threads",
        input,
        wasm: fmt(ours),
        native: `> ${fmt(partial.ns)}`,
        ratio: ours / partial.ns,
        note: `more than ${speed(ours, partial.ns)}; ${tracerNote}; one-by-one stopped ${partial.stopped} of ${n + 1} threads in ${fmt(partial.ns)} and was cut short (ratio: an upper bound); ${fifoNote}; ${pauses.length} rounds`,
      });
      return;
    }
    const theirs = median(ref);
    rows.push({
      what: "stop + resume all threads",
      input,
      wasm: fmt(ours),
      native: fmt(theirs),
      ratio: ours / theirs,
      note: `${speed(ours, theirs)}; ${tracerNote} (${speed(median(inTracer), theirs)}); ${fifoNote}; ${pauses.length} rounds, reference ${ref.length}`,
    });
  } finally {
    stopTarget(tg);
  }
}

async function remoteMmap(): Promise<void> {
  const tg = await start("sleep", 4);
  try {
    const t = Tracer.open();
    await t.attach(tg.pid);
    const site = await t.syscallSite();
    await t.stopWorld();
    const v: number[] = [];
    for (let i = 0; i < 42; i++) {
      const s = process.hrtime.bigint();
      const a = await t.mmap(tg.pid, { length: 4096, prot: PROT.READ | PROT.EXEC, flags: MAP.PRIVATE | MAP.ANONYMOUS });
      const e = process.hrtime.bigint();
      await t.munmap(tg.pid, a, 4096);
      if (i >= 2) v.push(Number(e - s));
    }
    await t.resumeAll();
    await t.close();
    const ref = median(onebyone(["mmap", String(tg.pid), site.toString(16), "40"]).samples);
    const ours = median(v);
    rows.push({
      what: "remote mmap (stopped thread)",
      input: "4 KiB, R+X, anonymous",
      wasm: fmt(ours),
      native: fmt(ref),
      ratio: ours / ref,
      note: `${speed(ours, ref)}; shim: a request from JavaScript, the thread's seccomp state re-read in the tracer; reference: registers, single step, registers, in C`,
    });
  } finally {
    stopTarget(tg);
  }
}

async function write1MiB(): Promise<void> {
  const tg = await start("sleep", 4);
  try {
    const t = Tracer.open();
    await t.attach(tg.pid);
    const buf = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 131) & 0xff);
    const v: number[] = [];
    for (let i = 0; i < 7; i++) {
      const s = process.hrtime.bigint();
      await t.writeText(tg.region, buf);
      const e = process.hrtime.bigint();
      if (i >= 2) v.push(Number(e - s));
    }
    const back = await t.read(tg.region, 1 << 20);
    if (!back.every((b, i) => b === buf[i])) throw new Error("write 1 MiB: read back differs");
    await t.close();
    const ref = median(onebyone(["write", String(tg.pid), tg.region.toString(16), String(1 << 20)]).samples);
    const ours = median(v);
    rows.push({
      what: "write 1 MiB into R+X memory",
      input: "1 MiB",
      wasm: fmt(ours),
      native: fmt(ref),
      ratio: ours / ref,
      note: `${speed(ours, ref)}; shim: /proc/PID/mem pwrite, from JavaScript; reference: PTRACE_POKEDATA x 131072`,
    });
  } finally {
    stopTarget(tg);
  }
}

// BENCH_ONLY=sleep,busy,mmap,write picks parts; progress goes to stderr
const only = process.env.BENCH_ONLY?.split(",");
const want = (k: string) => !only || only.includes(k);
for (const kind of ["sleep", "busy"] as const) {
  if (!want(kind)) continue;
  for (const n of [1, 10, 100, 1000]) {
    process.stderr.write(`bench/shim: stop+resume, ${n} ${kind}\n`);
    await stopResume(kind, n);
  }
}
if (want("mmap")) await remoteMmap();
if (want("write")) await write1MiB();
printTable("shim", rows);
