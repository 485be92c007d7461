// The decoder against objdump on real code: every function with a nonzero size in
// libc.so.6 and in the fixtures decodes to the same instruction lengths, branch
// targets and RIP-relative addresses as `objdump -d`, apart from the 0x66 near
// branches (AMBIGUOUS_ENCODING) and fwait, which objdump prints as part of the x87
// instruction after it. One objdump run per file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import { X86 } from "../src/core/x86.js";
import {
  compareWithObjdump, objdumpPieces, readFile, readFunctions, readSections, runObjdump, type Agreement,
} from "./x86-objdump.js";

const LIBC = "/lib/x86_64-linux-gnu/libc.so.6";
let x86: X86;
let dir: string;

beforeAll(() => {
  x86 = new X86(nodeCore());
  dir = mkdtempSync(join(tmpdir(), "patchc-x86-oracle-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function show(r: Agreement): string {
  return r.mismatches.slice(0, 20).map((m) => `${m.fn} @0x${m.addr.toString(16)}: ours ${m.ours} / objdump ${m.objdump}`).join("\n");
}

describe("x86 decoder against objdump -d", () => {
  it("libc.so.6: every function with a nonzero size, and all of .text symbol to symbol", () => {
    const L = runObjdump(LIBC);
    const sections = readSections(LIBC);
    const file = readFile(LIBC);
    const fns = readFunctions(LIBC);
    expect(fns.length).toBeGreaterThan(1000);
    const r = compareWithObjdump(x86, file, sections, fns, L);
    expect(show(r)).toBe("");
    expect(r.functions).toBe(fns.length);
    expect(r.instructions).toBeGreaterThan(50000);
    expect(r.branches).toBeGreaterThan(5000);
    expect(r.ripRel).toBeGreaterThan(1000);
    // the same over the whole of every executable section, as objdump walks it
    const all = compareWithObjdump(x86, file, sections, objdumpPieces(sections, L), L);
    expect(show(all)).toBe("");
    expect(all.instructions + all.ambiguous + all.fwaitMerged).toBe(L.addr.length - countOutside(L, sections));
  });

  for (const [name, flags] of [
    ["-O2", ["-O2"]],
    ["-O3 -fcf-protection=full", ["-O3", "-fcf-protection=full"]],
    ["-O2 -march=x86-64-v3 -fno-pic", ["-O2", "-march=x86-64-v3", "-fno-pic"]],
    ["-Os -fno-omit-frame-pointer -mno-red-zone", ["-Os", "-fno-omit-frame-pointer", "-mno-red-zone"]],
  ] as const) {
    it(`fixture x86-insns.c built with ${name}`, () => {
      const so = join(dir, `insns${name.replace(/[^a-z0-9]/gi, "_")}.so`);
      execFileSync("gcc", [...flags, "-fPIC", "-shared", "-w", "-o", so, "test/fixtures/x86-insns.c", "-Wl,--unresolved-symbols=ignore-all"]);
      const L = runObjdump(so);
      const sections = readSections(so);
      const fns = readFunctions(so);
      expect(fns.map((f) => f.name)).toEqual(expect.arrayContaining(["odd_insns", "dispatch", "saxpy_avx512", "ld_poly", "ambiguous_branches"]));
      const r = compareWithObjdump(x86, readFile(so), sections, fns, L);
      expect(show(r)).toBe("");
      expect(r.functions).toBe(fns.length);
      expect(r.ambiguous).toBe(4); // ambiguous_branches
      expect(r.fwaitMerged).toBeGreaterThanOrEqual(1);
      expect(r.instructions).toBeGreaterThan(300);
    });
  }
});

/** objdump instructions in executable sections that hold no symbol (none in libc; counted for the total). */
function countOutside(L: ReturnType<typeof runObjdump>, sections: ReturnType<typeof readSections>): number {
  let n = 0;
  for (const a of L.addr) if (!sections.some((s) => s.exec && !s.nobits && a >= s.addr && a < s.addr + s.size)) n++;
  return n;
}
