// The GD/LD TLS packages of build-tls.test.ts applied to a running PIE executable (the
// non-PIE form is proven and bound in build-tls.test.ts; apply does not open a non-PIE
// module yet, 2026-11-27): the new code, which reaches the variables through
// __tls_get_addr, must read and write the very variables the old code used (bound by
// model gd/ld and their offset in the executable's TLS block). The oracle is the program's output: the counters go on
// from where the old code left them, now in steps of 1000.
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { applyPatch } from "../src/apply/index.js";
import { nodeCore } from "../src/node/core-file.js";
import { buildPackage, Running, engineSuite } from "./apply-engine-helpers.js";

const core = nodeCore();
const { scratch, running } = engineSuite();

const SRC = `#include <stdio.h>
#include <unistd.h>
__thread int gvar = 3;
static __thread int svar;
__attribute__((noinline)) int use(int x) { gvar += x; return gvar; }
__attribute__((noinline)) int uses(int x) { svar += x; return svar; }
int main(void) { for (;;) { int g = use(1); int s = uses(1); printf("g %d s %d\\n", g, s); fflush(stdout); usleep(5000); } }
`;
const FIXED = SRC.replace("gvar += x;", "gvar += x * 1000;").replace("svar += x;", "svar += x * 1000;");

describe("GD/LD TLS packages on live executables", () => {
  for (const [kind, link] of [["PIE", "-pie"]] as const) {
    it(`${kind}: the new code works on the same thread-local variables`, async () => {
      const dir = scratch.path(kind);
      for (const d of ["orig", "fixed"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
      const cc = (text: string, out: string) => {
        fs.writeFileSync(path.join(dir, "tls.c"), text);
        execFileSync("gcc", ["-O2", "-g", "-fPIC", "-ffunction-sections", "-fdata-sections", "-c", "tls.c", "-o", out], { cwd: dir });
      };
      cc(SRC, "orig/tls.o");
      cc(FIXED, "fixed/tls.o");
      const target = path.join(dir, "prog");
      execFileSync("gcc", [link, "-Wl,--build-id", path.join(dir, "orig/tls.o"), "-o", target]);
      const pkg = buildPackage(core, { original: path.join(dir, "orig"), patched: path.join(dir, "fixed"), target, patchId: "tls-fix", out: path.join(dir, "tls.patch") });
      expect(pkg.model.references.filter((r) => r.bind === "tls").map((r) => `${r.name} ${r.tls!.model}`).sort()).toEqual(["gvar gd", "svar ld"]);
      const r = new Running(target);
      running.push(r);
      await r.waitLine(/^g 10 s 7$/);
      await applyPatch(r.pid, pkg, { core });
      const at = r.lines.length;
      await r.waitLine(/^g \d{4,} s \d{4,}$/, 10000, at);
      // Two consecutive lines after the jump: both counters step by 1000 from their old values.
      const i = await r.waitLine(/^g \d{4,} s \d{4,}$/, 10000, at + 1);
      const [g0, s0] = r.lines[i - 1].split(" ").filter((_, k) => k % 2).map(Number);
      const [g1, s1] = r.lines[i].split(" ").filter((_, k) => k % 2).map(Number);
      expect(g1 - g0).toBe(1000);
      expect(s1 - s0).toBe(1000);
      expect(g0 - s0).toBe(3); // gvar started at 3, svar at 0: the same variables, stepped alike
    });
  }
});
