// The object diff on C++ (g++ -O2 -ffunction-sections -fdata-sections): mangled names,
// methods, static members, and exception tables (LSDA) compared with their functions.
import { afterAll, describe, expect, it } from "vitest";
import { Scratch } from "./helpers/gcc.js";
import { byStatus, diffSources } from "./helpers/diff.js";
import type { DiffResult } from "../src/core/diff.js";

const scratch: Scratch[] = [];
function pair(orig: string, patched: string): DiffResult {
  const s = new Scratch();
  scratch.push(s);
  return diffSources(s, orig, patched, { compiler: "g++", name: "fix.cc" });
}
afterAll(() => scratch.forEach((s) => s.remove()));

describe("object diff: C++", () => {
  it("a changed method: by its mangled name; a static member stays", () => {
    const orig = `struct Counter { int n; int bump(int by); int get() const; static int total; };\n` +
      `int Counter::total;\n` +
      `int Counter::bump(int by) { n += by; total += by; return n; }\n` +
      `int Counter::get() const { return n; }\n` +
      `namespace ns { int helper(int x) { return x * 2; } }\n`;
    const d = pair(orig, orig.replace("n += by;", "n += 2 * by;"));
    expect(byStatus(d)).toEqual({ changed: ["_ZN7Counter4bumpEi"], unchanged: ["_ZN2ns6helperEi", "_ZNK7Counter3getEv"] });
    const bump = d.functions.find((f) => f.name === "_ZN7Counter4bumpEi")!;
    expect(bump).toMatchObject({ kind: "function", bind: "global" });
    expect(bump.refs.map((r) => `${r.kind} ${r.name}`)).toEqual(["data _ZN7Counter5totalE"]);
    expect(d.refusals).toEqual([]);
  });

  it("a catch clause that changes only the exception table: changed through its LSDA", () => {
    const orig = `#include <stdexcept>\nint risky(int x);\n` +
      `int guarded(int x) { try { return risky(x); } catch (const std::out_of_range &) { return -1; } }\n` +
      `int other(int x) { try { return risky(x + 1); } catch (const std::out_of_range &) { return -2; } }\n`;
    const d = pair(orig, orig.replace("risky(x); } catch (const std::out_of_range &)", "risky(x); } catch (const std::invalid_argument &)"));
    expect(byStatus(d)).toEqual({ changed: ["_Z7guardedi", "_Z7guardedi.cold"], unchanged: ["_Z5otheri", "_Z5otheri.cold"] });
    const g = d.functions.find((f) => f.name === "_Z7guardedi")!;
    // The code is the same; what is caught is only in the LSDA's type table.
    expect(g.reason).toBe("exception-table");
    expect(g.refs.filter((r) => r.kind === "exception-table").map((r) => r.name)).toEqual([".gcc_except_table._Z7guardedi"]);
    // The type table refers to the type through a DW.ref cell (a hidden COMDAT pointer), new here.
    expect(g.refs.filter((r) => r.name.startsWith("DW.ref._ZTI")).map((r) => `${r.kind} ${r.name}`)).toEqual(["new-data DW.ref._ZTISt16invalid_argument"]);
  });

  it("a method that throws: its cold piece is a piece of it", () => {
    const orig = `#include <stdexcept>\nstruct A { int v; int get(int x); };\n` +
      `int A::get(int x) { if (x < 0) throw std::runtime_error("negative"); return v + x; }\n`;
    const d = pair(orig, orig.replace(`"negative"`, `"negative index"`));
    expect(byStatus(d)).toEqual({ changed: ["_ZN1A3getEi", "_ZN1A3getEi.cold"] });
    const cold = d.functions.find((f) => f.name === "_ZN1A3getEi.cold")!;
    expect(cold).toMatchObject({ kind: "cold", parent: "_ZN1A3getEi" });
  });
});
