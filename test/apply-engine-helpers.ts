// Fixtures of the apply engine tests: a C program built twice (original and fixed), the
// target linked from the original objects, packages made by the real build
// (makePackage, as `patchc build --orig --patched` does), and the running target with a
// line reader on its stdout.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Core } from "../src/core/instance.js";
import { diffBuilds } from "../src/build/build-diff.js";
import { makePackage } from "../src/build/make-package.js";
import { pairObjects } from "../src/build/objects.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { writePackageFile } from "../src/format/writer.js";
import type { PatchPackage } from "../src/format/model.js";
import { afterAll, afterEach } from "vitest";
import { Scratch } from "./helpers/gcc.js";
import { LineProcess } from "./helpers/line-process.js";

/**
 * A test file's scratch directory and the targets it starts: each target killed after
 * its test, the directory removed after the file. Call once at the file's top level.
 */
export function engineSuite(): { scratch: Scratch; running: Running[] } {
  const scratch = new Scratch();
  const running: Running[] = [];
  afterEach(() => {
    for (const r of running.splice(0)) r.kill();
  });
  afterAll(() => scratch.remove());
  return { scratch, running };
}

export const FLAGS = ["-O2", "-g", "-fPIE", "-ffunction-sections", "-fdata-sections", "-pthread"];

/** Compiles every file of `files` into `dir` (objects named after the sources). */
export function compileObjects(scratch: Scratch, files: Record<string, string>, dir: string, flags: string[] = FLAGS): string {
  // The same source paths for every build (as a --source build has them).
  const work = scratch.path("work");
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(work, f), text);
    execFileSync("gcc", [...flags, "-c", f, "-o", path.join(dir, f.replace(/\.c$/, ".o"))], { cwd: work, stdio: ["ignore", "pipe", "pipe"] });
  }
  return dir;
}

/** Links the target from a directory of objects. */
export function linkTarget(dir: string, out: string, flags: string[] = ["-pie"]): string {
  const objs = fs.readdirSync(dir).filter((f) => f.endsWith(".o")).map((f) => path.join(dir, f));
  execFileSync("gcc", [...flags, "-pthread", "-Wl,--build-id", ...objs, "-o", out], { stdio: ["ignore", "pipe", "pipe"] });
  return out;
}

/**
 * A package from two directories of objects against `target` (`after`: the earlier
 * package it stacks on, as `patchc build --after`); `edit` may change the model first.
 */
export function buildPackage(core: Core, o: { original: string; patched: string; target: string; patchId: string; out: string; after?: string; edit?: (m: PatchPackage) => void }): ReadPackage {
  const pairs = pairObjects(o.original, o.patched).pairs;
  const r = makePackage(core, { target: o.target, patchId: o.patchId, pairs, diff: diffBuilds(core, pairs), after: o.after });
  o.edit?.(r.package);
  writePackageFile(o.out, r.package);
  return readPackageFile(core, o.out);
}

/** A running program whose stdout is read line by line. */
export class Running extends LineProcess {
  constructor(exe: string, args: string[] = []) {
    super(exe, args, { stdin: "ignore" });
  }

  /** Waits for a line matching `re` after line `from`; returns its index. */
  async waitLine(re: RegExp, timeoutMs = 10000, from = 0): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.lines.length; i++) if (re.test(this.lines[i])) return i;
      if (this.exited) throw new Error(`the target exited waiting for ${re}; stderr: ${this.stderr}; lines: ${this.lines.slice(-5).join(" | ")}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no line ${re} within ${timeoutMs} ms; last lines: ${this.lines.slice(-5).join(" | ")}`);
      await this.nextChange(end);
    }
  }

  /** Kills it and removes the perf map an apply wrote for it. */
  kill(): void {
    if (!this.exited) this.proc.kill("SIGKILL");
    if (this.proc.pid) fs.rmSync(`/tmp/perf-${this.proc.pid}.map`, { force: true });
  }
}

/** /proc/PID/maps text and the bytes at the given ranges: what a refusal must leave unchanged. */
export function snapshot(pid: number, ranges: Array<{ addr: bigint; len: number }>): { maps: string; bytes: string[] } {
  const maps = fs.readFileSync(`/proc/${pid}/maps`, "utf8");
  const fd = fs.openSync(`/proc/${pid}/mem`, "r");
  try {
    const bytes = ranges.map((r) => {
      const b = Buffer.alloc(r.len);
      fs.readSync(fd, b, 0, r.len, r.addr);
      return b.toString("hex");
    });
    return { maps, bytes };
  } finally {
    fs.closeSync(fd);
  }
}
