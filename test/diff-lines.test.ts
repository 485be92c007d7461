// __LINE__-only changes (assert, logging macros) are reported apart as "line-only" when
// the line tables of both objects prove them, and as changed otherwise.
import { afterAll, describe, expect, it } from "vitest";
import { Scratch } from "./helpers/gcc.js";
import { byStatus, diffSources } from "./helpers/diff.js";
import type { DiffResult } from "../src/core/diff.js";

const G = ["-O2", "-g", "-ffunction-sections", "-fdata-sections"];
const NOG = ["-O2", "-ffunction-sections", "-fdata-sections"];
const scratch: Scratch[] = [];
function pair(orig: string, patched: string, flags: string[]): DiffResult {
  const s = new Scratch();
  scratch.push(s);
  return diffSources(s, orig, patched, { flags });
}
afterAll(() => scratch.forEach((s) => s.remove()));

const LOG = `#include <assert.h>\n#include <stdio.h>\n` +
  `void log_at(const char *file, int line, const char *msg);\n` +
  `#define LOG(msg) log_at(__FILE__, __LINE__, msg)\n`;
const FIRST = `int first(int x) { return x + 1; }\n`;
const FIRST_FIXED = `int first(int x) {\n  return x + 2;\n}\n`; // one line longer
const REST = `int checked(int x) {\n  assert(x > 0);\n  return x * 2;\n}\n` +
  `void logged(int x) {\n  if (x > 3)\n    LOG("big");\n}\n` +
  `int plain(int x) { return x - 4; }\n`;

describe("object diff: __LINE__-only changes", () => {
  it("a line shift above assert and a logging macro: line-only, proven by .debug_line", () => {
    const d = pair(LOG + FIRST + REST, LOG + FIRST_FIXED + REST, G);
    expect(byStatus(d)).toEqual({ changed: ["first"], "line-only": ["checked", "logged"], unchanged: ["plain"] });
    const checked = d.functions.find((f) => f.name === "checked")!;
    // assert(x > 0) is on line 7 of the original, 9 of the patched: first() grew by two lines.
    expect(checked.lineSites.map((s) => [s.oldValue, s.newValue, s.oldLine, s.newLine])).toEqual([[7, 9, 7, 9]]);
    const logged = d.functions.find((f) => f.name === "logged")!;
    expect(logged.lineSites.map((s) => [s.oldValue, s.newValue, s.oldLine, s.newLine])).toEqual([[12, 14, 12, 14]]);
    // What a line-only function needs is listed too, so the user can include it.
    expect(checked.refs.map((r) => r.kind).sort()).toEqual(["external", "private", "strings"]);
    expect(d.originalHasLines && d.patchedHasLines).toBe(true);
  });

  it("without line tables the same change cannot be proven: changed, with the reason", () => {
    const d = pair(LOG + FIRST + REST, LOG + FIRST_FIXED + REST, NOG);
    expect(byStatus(d)).toEqual({ changed: ["checked", "first", "logged"], unchanged: ["plain"] });
    const checked = d.functions.find((f) => f.name === "checked")!;
    expect(checked.reason).toBe("no-line-table");
    expect(checked.at).toBeGreaterThan(0);
  });

  it("a constant argument the fix changed is not a line number, even with a line shift", () => {
    const orig = `void fill(char *b, int n);\nint first(int x) { return x + 1; }\nvoid buf(char *b) {\n  fill(b, 100);\n}\n`;
    const patched = `void fill(char *b, int n);\nint first(int x) {\n  return x + 2;\n}\nvoid buf(char *b) {\n  fill(b, 101);\n}\n`;
    const d = pair(orig, patched, G);
    expect(byStatus(d)).toEqual({ changed: ["buf", "first"] });
    expect(d.functions.find((f) => f.name === "buf")!.reason).toBe("line-mismatch");
    // Nor is one that changes while its code's line does not move.
    const e = pair(orig, orig.replace("fill(b, 100)", "fill(b, 5)"), G);
    expect(byStatus(e)).toEqual({ changed: ["buf"], unchanged: ["first"] });
  });

  it("an assert inlined into its callers: the callers are line-only too", () => {
    const src = (pad: string) => `#include <assert.h>\nint first(int x) { return x${pad}; }\n` +
      `static inline __attribute__((always_inline)) int half(int x) {\n  assert(x % 2 == 0);\n  return x / 2;\n}\n` +
      `int quarter(int x) { return half(half(x)); }\nint eighth(int x) { return half(quarter(x)); }\n`;
    const d = pair(src(" + 1"), src(" +\n 2"), G);
    // gcc may also split a partial-inlining clone (quarter.part.0): line-only as well.
    const s = byStatus(d);
    expect(s.changed).toEqual(["first"]);
    expect(s.unchanged).toBeUndefined();
    expect(s["line-only"].filter((n) => !/\.part\.\d+$/.test(n))).toEqual(["eighth", "quarter"]);
  });

  it("line shifts inside a function that also really changed: changed", () => {
    const orig = LOG + `int both(int x) {\n  assert(x > 0);\n  return x * 2;\n}\n`;
    const patched = LOG + `int both(int x) {\n\n  assert(x > 0);\n  return x * 3;\n}\n`;
    const d = pair(orig, patched, G);
    expect(byStatus(d)).toEqual({ changed: ["both"] });
  });
});
