// Helpers of the shim tests: compile the C fixtures with gcc -O2 into a temp dir,
// run test/fixtures/shim/target.c and talk to it (it reports its own invariants).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";
import { rejected } from "./thrown.js";
import type { Core } from "../../src/core/instance.js";
import { ShimError, Tracer } from "../../src/shim/index.js";
import { LineProcess } from "./line-process.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = join(ROOT, "test/fixtures/shim");

const scratch = mkdtempSync(join(tmpdir(), "patchc-shim-"));
const built = new Map<string, string>();

/** gcc -O2 of test/fixtures/shim/<name>.c (or an absolute source path), once per process. */
export function compile(name: string, flags: string[] = []): string {
  const key = name + " " + flags.join(" ");
  const have = built.get(key);
  if (have) return have;
  const src = name.startsWith("/") ? name : join(FIXTURES, `${name}.c`);
  const dir = join(scratch, String(built.size));
  mkdirSync(dir);
  const out = join(dir, name.replace(/^.*\//, "").replace(/\.c$/, ""));
  execFileSync("gcc", ["-O2", "-pthread", "-Wall", ...flags, src, "-o", out], { stdio: ["ignore", "pipe", "pipe"] });
  built.set(key, out);
  return out;
}

export function scratchPath(name: string): string {
  return join(scratch, name);
}

export function cleanupScratch(): void {
  rmSync(scratch, { recursive: true, force: true });
}

export interface Ready {
  pid: number;
  version: bigint;
  slow: bigint;
  slow_ret: bigint;
  roles: Record<string, number>;
}

export interface Report {
  violations: number;
  messages: string[];
  elapsed: number;
  [counter: string]: number | string[];
}

/** A running target.c with a line reader on its stdout. */
export class Target extends LineProcess {
  ready!: Ready;

  private constructor(args: string[]) {
    super(compile("target"), args);
  }

  /** The next line starting with `tag ` (its rest), waiting up to timeoutMs. */
  async line(tag: string, timeoutMs = 10000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(tag + " ") || l === tag);
      if (i >= 0) return this.lines.splice(i, 1)[0].slice(tag.length + 1);
      if (this.exited) throw new Error(`target exited (${this.proc.exitCode ?? this.proc.signalCode}) before "${tag}"; stderr: ${this.stderr}`);
      if (Date.now() > end) throw new Error(`no "${tag}" line from the target within ${timeoutMs} ms`);
      await this.nextChange(end);
    }
  }

  static async start(args: string[] = [], waitReady = true): Promise<Target> {
    const t = new Target(args);
    if (waitReady) {
      const j = JSON.parse(await t.line("ready"));
      t.ready = {
        pid: j.pid,
        version: BigInt(j.version),
        slow: BigInt(j.slow),
        slow_ret: BigInt(j.slow_ret),
        roles: j.roles,
      };
    }
    return t;
  }

  send(cmd: string): void {
    this.proc.stdin!.write(cmd + "\n");
  }

  async report(): Promise<Report> {
    this.send("report");
    return JSON.parse(await this.line("report"));
  }

  async wakeBlocked(): Promise<Report> {
    this.send("wake");
    return JSON.parse(await this.line("woke", 15000));
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.proc.kill("SIGKILL");
    await new Promise<void>((r) => (this.exited ? r() : this.proc.once("exit", () => r())));
  }
}

/** Fields of /proc/PID/status. */
export function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
    const i = l.indexOf(":");
    if (i > 0) out[l.slice(0, i)] = l.slice(i + 1).trim();
  }
  return out;
}

/** TracerPid of a process; -1 when it is gone. */
export function tracerPidOf(pid: number): number {
  try {
    return Number(procStatus(pid).TracerPid);
  } catch {
    return -1;
  }
}

/** The threads of a process that have a tracer (TracerPid not 0), each with its tracer. */
export function tracedThreads(pid: number): Array<{ tid: number; tracer: number }> {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out = [];
  for (const t of tids) {
    let tracer = 0;
    try {
      tracer = Number(/^TracerPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${t}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      continue; /* exited meanwhile */
    }
    if (tracer !== 0) out.push({ tid: Number(t), tracer });
  }
  return out;
}

export function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !/^Z/.test(procStatus(pid).State ?? "Z");
}

export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The executable mappings of a process: [lo, hi, path]. */
export function execMaps(pid: number): Array<{ lo: bigint; hi: bigint; off: bigint; path: string }> {
  const out = [];
  for (const l of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(l);
    if (m && m[3][2] === "x") out.push({ lo: BigInt("0x" + m[1]), hi: BigInt("0x" + m[2]), off: BigInt("0x" + m[4]), path: m[5] });
  }
  return out;
}

/** Every mapping of a process. */
export function maps(pid: number): Array<{ lo: bigint; hi: bigint; perms: string; path: string }> {
  const out = [];
  for (const l of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ \S+ \d+\s*(.*)$/.exec(l);
    if (m) out.push({ lo: BigInt("0x" + m[1]), hi: BigInt("0x" + m[2]), perms: m[3], path: m[4] });
  }
  return out;
}

/**
 * Tracers and targets of a test, closed and stopped after each test: call once at the
 * top level of a test file.
 */
export function perTest(opts: { core?: Core } = {}): { tracer(): Tracer; target(args: string[], waitReady?: boolean): Promise<Target> } {
  const tracers: Tracer[] = [];
  const targets: Target[] = [];
  afterEach(async () => {
    for (const t of tracers.splice(0)) await t.close();
    for (const t of targets.splice(0)) await t.stop();
  });
  return {
    tracer() {
      const t = Tracer.open(opts.core ? { core: opts.core } : undefined);
      tracers.push(t);
      return t;
    },
    async target(args: string[], waitReady = true) {
      const t = await Target.start(args, waitReady);
      targets.push(t);
      return t;
    },
  };
}

/** The ShimError `p` rejects with (fails the test when it resolves or throws anything else). */
export const rejects = (p: Promise<unknown>): Promise<ShimError> => rejected(ShimError, p);
