// Helpers of the live apply tests (test/apply-live*.test.ts): build a fixture of
// test/fixtures/apply twice (without and with -DPATCHED) into object directories, link
// the target module from the original objects, make the package with the real
// `patchc build --orig --patched --target`, run targets with their stdout read through a
// pipe, and take snapshots of a process (its maps and the bytes of every executable
// mapping) to prove a refusal changed nothing.
import { copyFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { LineProcess } from "./line-process.js";
import { expect } from "vitest";
import { main } from "../../src/cli/main.js";
import type { Scratch } from "./gcc.js";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../fixtures/apply");

/** -ffunction-sections -fdata-sections: the build packages sections, one per function and variable. */
export const CFLAGS = ["-O2", "-g0", "-pthread", "-Wall", "-ffunction-sections", "-fdata-sections"];

export interface ModuleSpec {
  /** the linked module's file name: "pair", "libfix.so" */
  name: string;
  /** files of test/fixtures/apply compiled into the module */
  sources: string[];
  /** more compiler flags (both builds), e.g. -fPIC, -no-pie's -fno-pie */
  cflags?: string[];
  /** link flags, e.g. -shared, -no-pie, -Wl,--build-id=0x... */
  ldflags?: string[];
  /** libraries after the objects, e.g. -L DIR -lfix */
  libs?: string[];
  /** compiler flags of the original build only (a variant of the running binary) */
  originalOnly?: string[];
  /** a directory name under the scratch (default: name) */
  dir?: string;
}

export interface BuiltModule {
  spec: ModuleSpec;
  /** the linked module (executable or shared library) from the original objects */
  path: string;
  original: string;
  patched: string;
}

/**
 * Compiles each source twice into DIR/original and DIR/patched (same relative names, the
 * same source path, the second with -DPATCHED) and links the module from the originals.
 */
export function buildModule(scratch: Scratch, spec: ModuleSpec): BuiltModule {
  const dir = scratch.path(spec.dir ?? spec.name.replace(/[^\w.-]/g, "_"));
  const src = join(dir, "src");
  const original = join(dir, "original");
  const patched = join(dir, "patched");
  for (const d of [src, original, patched]) mkdirSync(d, { recursive: true });
  copyFileSync(join(FIXTURES, "cmd.h"), join(src, "cmd.h"));
  for (const s of spec.sources) copyFileSync(join(FIXTURES, s), join(src, s));
  const cflags = [...CFLAGS, ...(spec.cflags ?? [])];
  for (const s of spec.sources) {
    const obj = s.replace(/\.c$/, ".o");
    gcc(src, [...cflags, ...(spec.originalOnly ?? []), "-c", s, "-o", join(original, obj)]);
    gcc(src, [...cflags, "-DPATCHED", "-c", s, "-o", join(patched, obj)]);
  }
  const path = join(dir, spec.name);
  const objects = readdirSync(original).map((f) => join(original, f));
  gcc(dir, ["-pthread", "-Wl,--build-id", ...(spec.ldflags ?? []), ...objects, "-o", path, ...(spec.libs ?? [])]);
  return { spec, path, original, patched };
}

/** A program that is not part of a patch (the target's main of a library fixture, a preload library). */
export function compileProgram(scratch: Scratch, source: string, out: string, flags: string[] = [], libs: string[] = []): string {
  const dir = dirname(scratch.path(out));
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `${basename(out)}-src`);
  mkdirSync(src, { recursive: true });
  copyFileSync(join(FIXTURES, "cmd.h"), join(src, "cmd.h"));
  copyFileSync(join(FIXTURES, source), join(src, source));
  const path = scratch.path(out);
  gcc(src, [...CFLAGS, ...flags, source, "-o", path, ...libs]);
  return path;
}

function gcc(cwd: string, args: string[]): void {
  try {
    execFileSync("gcc", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    throw new Error(`gcc ${args.join(" ")}: ${(e as { stderr?: Buffer }).stderr?.toString() ?? e}`);
  }
}

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** The patchc command line, run in this process (src/cli/main.ts). */
export async function patchc(...argv: string[]): Promise<CliResult> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t), isTTY: false });
  return { code, out, err };
}

/** `patchc build --orig --patched --target` of a built module; returns the package path. */
export async function buildPatch(m: BuiltModule, id: string, extra: string[] = []): Promise<string> {
  const file = join(dirname(m.path), `${id}.patch`);
  const r = await patchc("build", "--orig", m.original, "--patched", m.patched, "--target", m.path, "-o", file, "--id", id, ...extra);
  if (r.code !== 0) throw new Error(`patchc build of ${m.spec.name} failed (${r.code}): ${r.err}`);
  return file;
}

/** `patchc inspect --json` of a package. */
export async function inspect(file: string): Promise<{ functions: Array<{ name: string; kind: string }>; references: Array<Record<string, unknown>>; target: Record<string, unknown> } & Record<string, unknown>> {
  const r = await patchc("inspect", "--json", file);
  if (r.code !== 0) throw new Error(`patchc inspect ${file}: ${r.err}`);
  return JSON.parse(r.out);
}

// ---- running targets ----

const running = new Set<LiveTarget>();

/** A running fixture with a line reader on its stdout; commands go to its stdin. */
export class LiveTarget extends LineProcess {
  constructor(path: string, args: string[] = [], env: Record<string, string> = {}) {
    super(path, args, { env });
    running.add(this);
  }

  protected override onExit(): void {
    running.delete(this);
  }

  /** Starts `path` and waits for its "ready ..." line (its fields, key=value). */
  static async start(path: string, args: string[] = [], env: Record<string, string> = {}): Promise<{ t: LiveTarget; ready: Record<string, string> }> {
    const t = new LiveTarget(path, args, env);
    try {
      return { t, ready: fields(await t.line("ready")) };
    } catch (e) {
      await t.stop();
      throw e;
    }
  }

  /** The next line starting with `tag` (its rest), waiting up to timeoutMs. */
  async line(tag: string, timeoutMs = 15000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(tag + " ") || l === tag);
      if (i >= 0) return this.lines.splice(i, 1)[0].slice(tag.length + 1);
      const err = this.lines.find((l) => l.startsWith("error "));
      if (err) throw new Error(`target ${this.pid}: ${err}`);
      if (this.exited) throw new Error(`target ${this.pid} exited (${this.proc.exitCode ?? this.proc.signalCode}) before "${tag}"; stderr: ${this.stderr}`);
      if (Date.now() > end) throw new Error(`no "${tag}" line from target ${this.pid} within ${timeoutMs} ms (unread: ${JSON.stringify(this.lines)})`);
      await this.nextChange(end);
    }
  }

  send(cmd: string): void {
    this.proc.stdin!.write(cmd + "\n");
  }

  /** Sends `cmd` and returns the fields of the answer line tagged `tag`. */
  async ask(cmd: string, tag: string, timeoutMs?: number): Promise<Record<string, string>> {
    this.send(cmd);
    return fields(await this.line(tag, timeoutMs));
  }

  /** Lines not consumed yet. */
  pending(): string[] {
    return [...this.lines];
  }

  async stop(): Promise<void> {
    if (this.exited || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.proc.once("exit", () => r()));
    this.proc.kill("SIGKILL");
    await gone;
  }
}

/** Kills every target still running (afterEach/afterAll of each file). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((t) => t.stop()));
}

/** "a=1 b=two" -> { a: "1", b: "two" } (a value runs to the next " key="). */
export function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /(\w+)=(.*?)(?= \w+=|$)/g;
  let m;
  while ((m = re.exec(line))) out[m[1]] = m[2];
  return out;
}

// ---- what a refusal must leave unchanged ----

export interface Snapshot {
  pid: number;
  maps: string;
  /** every executable mapping's bytes, by "lo-hi path" */
  text: Map<string, Buffer>;
}

/** /proc/PID/maps and the bytes of every executable mapping, read through /proc/PID/mem. */
export function snapshot(pid: number): Snapshot {
  const maps = readFileSync(`/proc/${pid}/maps`, "utf8");
  const text = new Map<string, Buffer>();
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    for (const l of maps.split("\n")) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ \S+ \d+\s*(.*)$/.exec(l);
      if (!m || m[3][2] !== "x" || m[4] === "[vsyscall]") continue;
      const lo = Number.parseInt(m[1], 16);
      const hi = Number.parseInt(m[2], 16);
      const buf = Buffer.alloc(hi - lo);
      let done = 0;
      while (done < buf.length) {
        const n = readSync(fd, buf, done, buf.length - done, lo + done);
        if (n <= 0) throw new Error(`short read of ${m[1]}-${m[2]} ${m[4]} in /proc/${pid}/mem`);
        done += n;
      }
      text.set(`${m[1]}-${m[2]} ${m[4]}`, buf);
    }
  } finally {
    closeSync(fd);
  }
  return { pid, maps, text };
}

/** The process's maps and every byte of its executable mappings are as in `before`. */
export function expectUnchanged(before: Snapshot): void {
  const after = snapshot(before.pid);
  expect(after.maps, `process ${before.pid}: /proc/PID/maps changed`).toBe(before.maps);
  expect([...after.text.keys()]).toEqual([...before.text.keys()]);
  for (const [k, b] of before.text) {
    const a = after.text.get(k)!;
    if (!a.equals(b)) {
      let i = 0;
      while (a[i] === b[i]) i++;
      throw new Error(`process ${before.pid}: text of ${k} changed at +0x${i.toString(16)}: ${b.subarray(i, i + 8).toString("hex")} -> ${a.subarray(i, i + 8).toString("hex")}`);
    }
  }
}

/** The address of `name` in the process: its module's load base + the symbol's value (nm). */
export function runtimeAddress(pid: number, module: string, name: string): bigint {
  const nm = execFileSync("nm", [module], { encoding: "utf8" });
  const m = new RegExp(`^([0-9a-f]+) [tTwW] ${name}$`, "m").exec(nm);
  if (!m) throw new Error(`nm ${module}: no function ${name}`);
  const value = BigInt(`0x${m[1]}`);
  const type = readFileSync(module).readUInt16LE(16); // e_type: 2 EXEC, 3 DYN
  if (type === 2) return value;
  const real = realpathOf(module);
  for (const l of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
    const f = /^([0-9a-f]+)-[0-9a-f]+ \S{4} ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(l);
    if (f && f[3] === real && BigInt(`0x${f[2]}`) === 0n) return BigInt(`0x${f[1]}`) + value;
  }
  throw new Error(`process ${pid} has no mapping of ${module}`);
}

function realpathOf(p: string): string {
  return execFileSync("realpath", [p], { encoding: "utf8" }).trim();
}

/** Bytes of the process's memory. */
export function readMemory(pid: number, addr: bigint, n: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, Number(addr));
    return b;
  } finally {
    closeSync(fd);
  }
}

/** The syscall number a thread is blocked in (/proc/PID/task/TID/syscall), -1 when running. */
export function blockedIn(pid: number, tid: number): number {
  const path = `/proc/${pid}/task/${tid}/syscall`;
  if (!existsSync(path)) return -2;
  const s = readFileSync(path, "utf8").trim();
  return s === "running" ? -1 : Number(s.split(" ")[0]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
