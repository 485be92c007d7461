// The perf map apply appends to (src/apply/perf-map.ts): the line format, existing
// content kept, a symlink refused, and perf itself naming code in anonymous memory
// from the lines we wrote (the oracle).
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { appendPerfMap, formatPerfMap, perfMapPath } from "../src/apply/perf-map.js";
import { Scratch } from "./helpers/gcc.js";

const scratch = new Scratch();
const children: ChildProcess[] = [];
const maps: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  for (const m of maps.splice(0)) fs.rmSync(m, { force: true });
});
afterAll(() => scratch.remove());

// Copies a counting loop into an anonymous page, makes it R+X, prints its address and
// runs it forever: code perf can only name through the perf map.
const SPIN = `
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static const unsigned char code[] = {
  0x48, 0x31, 0xc0,       /* xor rax, rax   */
  0x48, 0xff, 0xc0,       /* 1: inc rax     */
  0x48, 0x39, 0xf8,       /* cmp rax, rdi   */
  0x75, 0xf8,             /* jne 1b         */
  0xc3,                   /* ret            */
};
int main(void) {
  unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 1;
  memcpy(p, code, sizeof code);
  if (mprotect(p, 4096, PROT_READ | PROT_EXEC)) return 1;
  printf("%lx\\n", (unsigned long)p);
  fflush(stdout);
  long (*f)(long) = (long (*)(long))p;
  for (;;) f(1000000);
}
`;

function start(exe: string): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(exe, [], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout!.on("data", (d) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve({ child, line: buf.slice(0, nl) });
    });
    child.on("exit", (code) => reject(new Error(`fixture exited (${code})`)));
  });
}

function sleeper(): ChildProcess {
  const c = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(c);
  return c;
}

describe("perf map", () => {
  it("formats ADDR SIZE NAME in lowercase hex without 0x", () => {
    expect(
      formatPerfMap(
        [
          { lo: 0x7f2a3c001040n, hi: 0x7f2a3c00109an, name: "parse" },
          { lo: 0x10n, hi: 0x10n, name: "empty" },
          { lo: 0xabcdef00n, hi: 0xabcdef10n, name: "odd\nname" },
        ],
        "fix-1",
      ),
    ).toBe("7f2a3c001040 5a patchc:fix-1:parse\nabcdef00 10 patchc:fix-1:odd?name\n");
    expect(formatPerfMap([{ lo: 0xan, hi: 0xbn, name: "as given" }])).toBe("a 1 as given\n");
  });

  it("creates the map when absent and appends without truncating an existing one", () => {
    const pid = sleeper().pid!;
    const file = perfMapPath(pid);
    expect(file).toBe(`/proc/${pid}/root/tmp/perf-${pid}.map`);
    maps.push(`/tmp/perf-${pid}.map`);
    fs.rmSync(file, { force: true });
    appendPerfMap(pid, [{ lo: 0x1000n, hi: 0x1020n, name: "a" }], "p1");
    expect(fs.readFileSync(file, "utf8")).toBe("1000 20 patchc:p1:a\n");
    // A JIT's lines already there (without a final newline even: it may be mid-write).
    const jit = "7f0000000000 40 LazyCompile:*foo bar.js:1\n7f0000000040 10 Stub:x";
    fs.writeFileSync(file, jit);
    appendPerfMap(pid, [{ lo: 0x2000n, hi: 0x2100n, name: "b" }, { lo: 0x2100n, hi: 0x2180n, name: "b.cold" }], "p2");
    expect(fs.readFileSync(file, "utf8")).toBe(jit + "2000 100 patchc:p2:b\n2100 80 patchc:p2:b.cold\n");
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
  });

  it("refuses a symbolic link in the map's place and names the process and the file", () => {
    const pid = sleeper().pid!;
    const file = `/tmp/perf-${pid}.map`;
    const victim = scratch.write("victim", "keep me\n");
    maps.push(file);
    fs.rmSync(file, { force: true });
    fs.symlinkSync(victim, file);
    expect(() => appendPerfMap(pid, [{ lo: 0x1000n, hi: 0x1010n, name: "a" }], "p")).toThrow(new RegExp(`process ${pid}: cannot open its perf map .*perf-${pid}.map: a symbolic link`));
    expect(fs.readFileSync(victim, "utf8")).toBe("keep me\n");
  });

  it("names a dead process in the error", () => {
    const c = spawn("true");
    return new Promise<void>((done) =>
      c.on("exit", () => {
        expect(() => appendPerfMap(c.pid!, [{ lo: 1n, hi: 2n, name: "a" }], "p")).toThrow(new RegExp(`process ${c.pid}`));
        done();
      }),
    );
  });

  it("makes perf name code in anonymous memory (perf record + perf report)", async () => {
    const exe = scratch.gcc(SPIN, "spin", ["-O2"]);
    const { child, line } = await start(exe);
    const pid = child.pid!;
    const addr = BigInt("0x" + line);
    maps.push(`/tmp/perf-${pid}.map`);
    fs.rmSync(`/tmp/perf-${pid}.map`, { force: true });
    appendPerfMap(pid, [{ lo: addr, hi: addr + 12n, name: "spin" }], "t1");
    const data = scratch.path("perf.data");
    execFileSync("perf", ["record", "-q", "-F", "999", "-p", String(pid), "-o", data, "--", "sleep", "0.5"], { stdio: "ignore" });
    const report = execFileSync("perf", ["report", "-i", data, "--stdio", "--sort", "sym"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const top = report.split("\n").find((l) => /^\s+\d/.test(l));
    expect(top).toMatch(/patchc:t1:spin/);
  });
});
