// `patchc apply --all`: which processes it finds (src/apply/all.ts), on real processes
// compiled here, and how it runs the applies (bounded parallelism, every outcome kept).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import type { Core } from "../src/core/instance.js";
import { ancestry, applyAll, binaryIdentity, execModules, findProcesses, mapsDevice, parentOf, processGone, readBuildIdNote, scanNotes } from "../src/apply/all.js";
import { parseMaps } from "../src/apply/maps.js";
import { listModules, readModuleImage } from "../src/apply/modules.js";
import { ProcMemory } from "../src/apply/proc-memory.js";
import { ApplyError } from "../src/apply/errors.js";
import { Tracer } from "../src/shim/index.js";
import type { ApplyReport } from "../src/apply/contract.js";
import { LIBC, Scratch, run } from "./helpers/gcc.js";

// Prints "ready" once running (ld.so done); with "fork", first starts a child
// (sleep) and prints its pid once the child has exec'd (the close-on-exec pipe reads
// EOF), so a test can pose as a descendant of this process: a child still between fork
// and exec would be this very program.
const SOURCE = `
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
extern int in_lib(int);
int main(int argc, char **argv) {
#ifdef USE_LIB
  if (in_lib(1) != 2) return 3;
#endif
  if (argc > 1 && strcmp(argv[1], "fork") == 0) {
    int p[2];
    char b;
    if (pipe2(p, O_CLOEXEC) != 0) return 4;
    pid_t c = fork();
    if (c == 0) { execlp("sleep", "sleep", "60", (char *)0); _exit(127); }
    close(p[1]);
    while (read(p[0], &b, 1) > 0) {}
    close(p[0]);
    printf("%d\\n", (int)c);
  }
  printf("ready " WHO "\\n");
  fflush(stdout);
  for (;;) pause();
}
`;

const scratch = new Scratch();
let core: Core;
let fix: string; // the fixture binary
let copy: string; // the same file at another path and inode
let other: string; // another build, same name
let lib: string; // a shared library
let uselib: string; // a binary loading it

beforeAll(() => {
  core = nodeCore();
  fs.mkdirSync(scratch.path("other"));
  fs.mkdirSync(scratch.path("copy"));
  fs.mkdirSync(scratch.path("lib"));
  const flags = ["-O2", "-Wl,--build-id"];
  fix = scratch.gcc(SOURCE, "fix", [...flags, '-DWHO="fix"']);
  copy = scratch.path("copy/fix");
  fs.copyFileSync(fix, copy);
  fs.chmodSync(copy, 0o755);
  other = scratch.gcc(scratch.write("other/fix.c", SOURCE), "other/fix", [...flags, '-DWHO="other"']);
  lib = scratch.gcc(scratch.write("lib/x.c", "int in_lib(int x) { return x + 1; }\n"), "lib/libx.so", [...flags, "-shared", "-fPIC"]);
  uselib = scratch.gcc(scratch.write("uselib.c", SOURCE), "uselib", [...flags, "-DUSE_LIB", '-DWHO="uselib"', `-L${scratch.path("lib")}`, `-Wl,-rpath,${scratch.path("lib")}`], ["-lx"]);
});

const children: ChildProcess[] = [];
const extraPids: number[] = [];
const tracers: Tracer[] = [];
afterEach(async () => {
  for (const t of tracers.splice(0)) await t.close();
  for (const p of extraPids.splice(0)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const c of children.splice(0)) c.kill("SIGKILL");
});
afterAll(() => scratch.remove());

/** Starts `exe` and waits for its "ready" line; returns it with the lines before. */
function start(exe: string, args: string[] = []): Promise<{ pid: number; lines: string[] }> {
  const child = spawn(exe, args, { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d) => {
      buf += d;
      const lines = buf.split("\n");
      if (lines.some((l) => l.startsWith("ready"))) resolve({ pid: child.pid!, lines });
    });
    child.on("exit", (code) => reject(new Error(`${exe} exited (${code})`)));
  });
}

const readelfBuildId = (file: string): string => /Build ID: ([0-9a-f]+)/.exec(run("readelf", ["-n", file]))![1];

describe("apply --all: finding the processes", () => {
  it("reads BINARY's build-id, device and inode", () => {
    const id = binaryIdentity(core, fix);
    expect(id.buildId).toBe(readelfBuildId(fix));
    expect(id.executable).toBe(true); // a PIE: DF_1_PIE
    expect(binaryIdentity(core, lib).executable).toBe(false);
    expect(binaryIdentity(core, LIBC).executable).toBe(false); // runnable, and a library
    const nopie = scratch.gcc(scratch.write("nopie.c", "int main(void){return 0;}\n"), "nopie", ["-no-pie", "-Wl,--build-id"]);
    expect(binaryIdentity(core, nopie).executable).toBe(true);
    expect(binaryIdentity(core, other).buildId).not.toBe(id.buildId);
    // The device as /proc/PID/maps prints it: our own executable's line.
    const self = parseMaps(fs.readFileSync("/proc/self/maps", "utf8"), "self").find((m) => m.path === fs.realpathSync(process.execPath))!;
    const st = fs.statSync(process.execPath, { bigint: true });
    expect(mapsDevice(st.dev)).toBe(self.dev);
    expect(Number(st.ino)).toBe(self.inode);
    expect(mapsDevice(0x801n)).toBe("08:01");
    expect(mapsDevice((259n << 8n) | 1n)).toBe("103:01"); // major 259 (nvme), minor 1
    expect(mapsDevice((8n << 8n) | 0x11n | (0x100n << 12n))).toBe("08:111"); // minor above 255
    expect(() => binaryIdentity(core, scratch.path("nope"))).toThrow(/nope: cannot read the binary: ENOENT/);
    const noId = scratch.gcc(scratch.write("noid.c", "int main(void){return 0;}\n"), "noid", ["-Wl,--build-id=none"]);
    expect(() => binaryIdentity(core, noId)).toThrow(/has no GNU build-id note/);
  });

  it("finds exactly the processes running the build: same file, a copy, a deleted copy; not another build of the same name", async () => {
    const deleted = scratch.path("copy/fix-deleted");
    fs.copyFileSync(fix, deleted);
    fs.chmodSync(deleted, 0o755);
    const a = await start(fix);
    const b = await start(copy);
    const c = await start(deleted);
    fs.rmSync(deleted);
    const o = await start(other);
    const u = await start(uselib);
    const id = binaryIdentity(core, fix);
    const scan = findProcesses(core, id);
    expect(scan.matches.map((m) => m.pid).sort()).toEqual([a.pid, b.pid, c.pid].sort());
    // The program's file (/proc/PID/exe) and the modules in the maps say the same.
    const viaMaps = findProcesses(core, { ...id, executable: false });
    expect([viaMaps.matches, viaMaps.excluded]).toEqual([scan.matches, scan.excluded]);
    const by = Object.fromEntries(scan.matches.map((m) => [m.pid, m]));
    expect(by[a.pid]).toEqual({ pid: a.pid, path: fix, deleted: false, by: "inode" });
    expect(by[b.pid]).toEqual({ pid: b.pid, path: copy, deleted: false, by: "build-id" });
    expect(by[c.pid]).toEqual({ pid: c.pid, path: deleted, deleted: true, by: "build-id" });
    expect(scan.excluded).toEqual([]);
    expect(scan.scanned).toBeGreaterThan(5);
    // The other build and the library user are not matches; the library's are exactly its user.
    expect(scan.matches.map((m) => m.pid)).not.toContain(o.pid);
    const libScan = findProcesses(core, binaryIdentity(core, lib));
    expect(libScan.matches).toEqual([{ pid: u.pid, path: lib, deleted: false, by: "inode" }]);
  });

  it("never patchc, its ancestors or its children, even when they have the library loaded", async () => {
    const a = await start(fix);
    const tracer = Tracer.open(); // a tracer process, as apply spawns them
    tracers.push(tracer);
    await tracer.hello();
    const scan = findProcesses(core, binaryIdentity(core, LIBC));
    const matched = new Set(scan.matches.map((m) => m.pid));
    const up = ancestry(process.pid);
    expect(up.has(process.ppid)).toBe(true);
    for (const p of up) expect(matched.has(p)).toBe(false);
    expect(scan.excluded).toContainEqual({ pid: process.pid, why: "patchc" });
    expect(scan.excluded).toContainEqual({ pid: process.ppid, why: "ancestor" });
    expect(scan.excluded).toContainEqual({ pid: tracer.pid, why: "tracer" });
    expect(matched.has(a.pid)).toBe(true);
    // Posing as the grandchild of a fixture process: that process is an ancestor.
    const f = await start(fix, ["fork"]);
    const grandchild = Number(f.lines[0]);
    extraPids.push(grandchild);
    expect(parentOf(grandchild)).toBe(f.pid);
    const posed = findProcesses(core, binaryIdentity(core, fix), { self: grandchild });
    expect(posed.matches.map((m) => m.pid)).toEqual([a.pid]);
    expect(posed.excluded).toEqual([{ pid: f.pid, why: "ancestor" }]);
  });

  it("reads the same build-id from a live image's note as the core's ELF reader does from the whole image", async () => {
    const u = await start(uselib);
    let compared = 0;
    for (const pid of [u.pid, process.pid]) {
      const mem = new ProcMemory(pid);
      try {
        for (const mod of listModules(parseMaps(fs.readFileSync(`/proc/${pid}/maps`, "utf8"), "maps"))) {
          if (mod.path === "[vdso]" || !mod.mappings.some((m) => m.exec)) continue;
          if (mod.end - mod.start > 1n << 30n) continue; // a file mapped twice at distant addresses: not one image
          const head = mod.mappings[0];
          const cheap = readBuildIdNote((at, len) => mem.read(at, len), mod.start, head.end - head.start, "image");
          const image = readModuleImage(core, mem, pid, mod);
          try {
            expect(cheap, mod.path).toBe(image.info.buildId);
          } finally {
            image.close();
          }
          compared++;
        }
      } finally {
        mem.close();
      }
    }
    expect(compared).toBeGreaterThanOrEqual(6); // uselib, libx, libc, ld.so; node, its libraries
  });

  it("finds the same executable modules in a maps text as modules.ts listModules", async () => {
    const u = await start(uselib);
    for (const pid of [u.pid, process.pid, process.ppid]) {
      const text = fs.readFileSync(`/proc/${pid}/maps`, "utf8");
      const lean = execModules(text);
      const full = listModules(parseMaps(text, "maps")).filter((m) => m.path !== "[vdso]" && m.mappings.some((x) => x.exec));
      expect(lean.map((m) => [m.path, m.deleted, m.start, m.headSize, m.key])).toEqual(
        full.map((m) => [m.path, m.deleted, m.start, m.mappings[0].end - m.mappings[0].start, `${m.mappings[0].dev}:${m.inode}`]),
      );
    }
    expect(execModules("")).toEqual([]);
    expect(() => execModules("garbage\n")).toThrow(/not a maps line: "garbage"/);
  });

  it("scans notes totally: padding, other notes first, truncation", () => {
    const note = (name: string, type: number, desc: number[], align = 4) => {
      const nb = Buffer.from(name + "\0");
      const pad = (n: number) => (n + align - 1) & ~(align - 1);
      const at = pad(12 + nb.length);
      const b = Buffer.alloc(pad(at + desc.length));
      b.writeUInt32LE(nb.length, 0);
      b.writeUInt32LE(desc.length, 4);
      b.writeUInt32LE(type, 8);
      nb.copy(b, 12);
      Buffer.from(desc).copy(b, at);
      return b;
    };
    const abi = note("GNU", 1, [0, 0, 0, 0, 3, 2, 0, 0]);
    const id = note("GNU", 3, [0xde, 0xad, 0xbe, 0xef, 1]);
    expect(scanNotes(Buffer.concat([abi, id]), 4)).toBe("deadbeef01");
    expect(scanNotes(Buffer.concat([note("GNU", 5, [1, 2, 3, 4, 5, 6, 7, 8], 8), note("GNU", 3, [7, 7], 8)]), 8)).toBe("0707");
    expect(scanNotes(abi, 4)).toBeUndefined();
    expect(scanNotes(note("FOO", 3, [1, 2]), 4)).toBeUndefined();
    expect(scanNotes(Buffer.concat([abi, id]).subarray(0, abi.length + 14), 4)).toBeNull();
    const huge = Buffer.from(id);
    huge.writeUInt32LE(0xffffffff, 4);
    expect(scanNotes(huge, 4)).toBeNull();
  });
});

describe("apply --all: running the applies", () => {
  const report = (pid: number) => ({ pid }) as unknown as ApplyReport;

  it("keeps at most `jobs` applies running, and all of them busy", async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    const pids = Array.from({ length: 20 }, (_, i) => 1000 + i);
    const progress: number[] = [];
    const out = await applyAll(
      pids,
      async (pid, slot) => {
        expect(slot).toBeLessThan(4);
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5 + (pid % 3) * 5));
        running--;
        seen.push(pid);
        return report(pid);
      },
      { jobs: 4, onProgress: (p) => progress.push(p.done) },
    );
    expect(peak).toBe(4);
    expect(seen.sort()).toEqual(pids);
    expect(out.map((o) => o.pid)).toEqual(pids); // in the order given
    expect(out.every((o) => o.ok)).toBe(true);
    expect(progress).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it("keeps each failure as that process's outcome, with its reason", async () => {
    const out = await applyAll(
      [1, 2, 3],
      async (pid) => {
        if (pid === 2) throw new ApplyError("BUSY", "process 2, function parse", "thread 7 stayed in parse for 5000 ms", 7);
        if (pid === 3) throw new TypeError("x is undefined");
        return report(pid);
      },
      { jobs: 8 },
    );
    expect(out[0]).toMatchObject({ pid: 1, ok: true, report: { pid: 1 } });
    expect(out[1]).toMatchObject({ pid: 2, ok: false, error: { code: "BUSY", subject: "process 2, function parse", reason: "thread 7 stayed in parse for 5000 ms", tid: 7 } });
    expect(out[1]).toMatchObject({ gone: false });
    expect(out[2]).toMatchObject({ pid: 3, ok: false, gone: false, error: { code: "INTERNAL", subject: "process 3", reason: "internal error: x is undefined" } });
    // NO_PROCESS of a process that is no more: it exited meanwhile; of a live one (not permitted): a failure.
    const dead = spawnSync("true").pid!;
    const refused = await applyAll([dead, process.pid], async (pid) => Promise.reject(new ApplyError("NO_PROCESS", `process ${pid}`, "gone or not permitted")), { jobs: 2 });
    expect(refused.map((o) => !o.ok && o.gone)).toEqual([true, false]);
    expect(processGone(dead)).toBe(true);
    expect(processGone(process.pid)).toBe(false);
    expect(await applyAll([], async () => report(0), { jobs: 4 })).toEqual([]);
  });
});
