// The object diff on C fixture pairs compiled by gcc -O2 -ffunction-sections
// -fdata-sections at test time: one pair per kind of change, each checked for the exact
// set of changed and added functions and for what the changed code refers to.
import { afterAll, describe, expect, it } from "vitest";
import { Scratch, run } from "./helpers/gcc.js";
import { byStatus, compilePair, diffFiles, diffSources } from "./helpers/diff.js";
import type { DiffFunction, DiffResult } from "../src/core/diff.js";

const scratch: Scratch[] = [];
function pair(orig: string, patched: string, flags?: string[]): DiffResult {
  const s = new Scratch();
  scratch.push(s);
  return diffSources(s, orig, patched, flags ? { flags } : {});
}
afterAll(() => scratch.forEach((s) => s.remove()));

function fn(d: DiffResult, name: string): DiffFunction {
  const f = d.functions.find((x) => x.name === name);
  if (!f) throw new Error(`no function ${name} in ${d.functions.map((x) => x.name).join(", ")}`);
  return f;
}

/** References of a function as "kind name" strings, sorted. */
function refs(d: DiffResult, name: string): string[] {
  return fn(d, name).refs.map((r) => `${r.kind} ${r.name}`).sort();
}

describe("object diff: one kind of change per fixture", () => {
  it("a body change: only that function", () => {
    const orig = `int add(int a, int b) { return a + b; }\nint mul(int a, int b) { return a * b; }\n`;
    const d = pair(orig, orig.replace("return a + b;", "return a + b + 1;"));
    expect(byStatus(d)).toEqual({ changed: ["add"], unchanged: ["mul"] });
    expect(fn(d, "add")).toMatchObject({ kind: "function", bind: "global", reason: "size" });
    expect(d.refusals).toEqual([]);
  });

  it("identical sources: nothing changed", () => {
    const src = `static int h(int x) { return x ^ 0x5a; }\nint f(int x) { return h(x) + 2; }\n`;
    const d = pair(src, src);
    expect(byStatus(d)).toEqual({ unchanged: ["f"] });
  });

  it("a new static helper: the caller changed, the helper added", () => {
    const orig = `int calc(int x) { return x * 3; }\nint other(int x) { return x - 1; }\n`;
    const patched = `static __attribute__((noinline)) int clamp(int x) { return x > 100 ? 100 : x; }\n` +
      `int calc(int x) { return clamp(x) * 3; }\nint other(int x) { return x - 1; }\n`;
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ added: ["clamp"], changed: ["calc"], unchanged: ["other"] });
    expect(fn(d, "clamp")).toMatchObject({ bind: "local", kind: "function" });
    expect(refs(d, "calc")).toEqual(["function clamp"]);
    const r = fn(d, "calc").refs[0];
    expect(d.functions[r.function!].name).toBe("clamp");
    expect(r.originalSymbol).toBe(0);
  });

  it("a new global: new data into the package, the existing one stays", () => {
    const orig = `int hits;\nint count(void) { return ++hits; }\nint peek(void) { return hits; }\n`;
    const patched = `int hits;\nint misses;\nint count(void) { ++misses; return ++hits; }\nint peek(void) { return hits; }\n`;
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ changed: ["count"], unchanged: ["peek"] });
    expect(refs(d, "count")).toEqual(["data hits", "new-data misses"]);
    expect(d.data.map((x) => `${x.name} ${x.status}`).sort()).toEqual(["hits unchanged", "misses added"]);
    expect(d.data.find((x) => x.name === "misses")).toMatchObject({ bind: "global", zeroInit: true, threadLocal: false });
    expect(d.refusals).toEqual([]);
  });

  it("a changed string literal: that function only, not one whose string moved in the same section", () => {
    // gcc puts both strings in .rodata.s1.str1.1 and s2 refers to "shared text" there
    // (.LC3 at offset 6); the longer "alpha" moves it, the content stays.
    const orig = `const char *s1(int x) { return x ? "alpha" : "shared text"; }\n` +
      `const char *s2(void) { return "shared text"; }\n` +
      `const char *s3(void) { return "third"; }\n`;
    const d = pair(orig, orig.replace(`"alpha"`, `"alpha, longer"`));
    expect(byStatus(d)).toEqual({ changed: ["s1"], unchanged: ["s2", "s3"] });
    expect(fn(d, "s1")).toMatchObject({ reason: "relocation-target" });
    expect(refs(d, "s1")).toEqual(["strings .rodata.s1.str1.1"]);
    // The fixture does what it says: s2's string is in s1's section and moved.
    const p = compilePair(new Scratch(), orig, orig.replace(`"alpha"`, `"alpha, longer"`));
    const rel = (o: string) => run("readelf", ["-rW", o]).split(/\n\n/).find((t) => t.includes("'.rela.text.s2'"))!;
    expect(rel(p.orig)).toMatch(/\.LC\d+ - 4/);
    const sym = (o: string) => run("readelf", ["-sW", o]).split("\n").find((l) => /\.LC\d+$/.test(l.trim()) && l.includes(rel(o).match(/(\.LC\d+) - 4/)![1]))!;
    expect(parseInt(sym(p.orig).trim().split(/\s+/)[1], 16)).toBe(6);
    expect(parseInt(sym(p.patched).trim().split(/\s+/)[1], 16)).toBe(14);
  });

  it("a static local kept: paired through its function, not by its number", () => {
    const orig = `int tick(void) { static int n; return ++n; }\nint tock(void) { static int n; return n += 2; }\n`;
    // gcc numbers block-scope statics from the end of the file: the new one in tail()
    // renumbers tock's n.0 to n.1, the name tick's had in the original.
    const patched = `int tick(void) { static int calls; static int n; calls++; return ++n + calls; }\n` +
      `int tock(void) { static int n; return n += 2; }\nint tail(void) { static int t; return t--; }\n`;
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ added: ["tail"], changed: ["tick"], unchanged: ["tock"] });
    const kept = fn(d, "tick").refs.filter((r) => r.kind === "data");
    expect(kept.map((r) => r.name.replace(/\.\d+$/, ""))).toEqual(["n"]);
    expect(fn(d, "tick").refs.filter((r) => r.kind === "new-data").map((r) => r.name.replace(/\.\d+$/, ""))).toEqual(["calls"]);
    // tick's n is the original tick's n (which tock's is not), whatever gcc numbered them.
    const a = compilePair(new Scratch(), orig, orig);
    const origNames = run("objdump", ["-dr", a.orig]);
    const tickN = origNames.split(/\n\n/).find((t) => t.includes("<tick>:"))!.match(/\.bss\.(n\.\d+)/)![1];
    expect(kept[0].originalName).toBe(tickN);
    // And gcc did renumber something, so pairing by name would have been wrong.
    const renamed = d.data.filter((x) => x.status === "unchanged" && x.originalName !== x.name);
    expect(renamed.length).toBe(2);
    expect(d.data.filter((x) => x.status === "added").map((x) => x.name.replace(/\.\d+$/, "")).sort()).toEqual(["calls", "t"]);
  });

  it("a change inside an inlined function: its callers are changed", () => {
    const orig = `static inline int scale(int x) { return x * 7 + 1; }\n` +
      `int f1(int a) { return scale(a) + 2; }\nint f2(int a, int b) { return scale(a) * scale(b); }\nint f3(int a) { return a - 5; }\n`;
    const d = pair(orig, orig.replace("x * 7 + 1", "x * 9 + 1"));
    expect(byStatus(d)).toEqual({ changed: ["f1", "f2"], unchanged: ["f3"] });
  });

  it("a switch with a jump table: the table moves with the code, another one is compared as equal", () => {
    const sw = (name: string, k: number) => `int ${name}(int x, int y) { switch (x) { case 0: return y + 11; case 1: return y * 22; case 2: return y - 35;` +
      ` case 3: return y / ${k}; case 4: return y ^ 59; case 5: return y << 3; case 6: return y | 73; default: return -1; } }\n`;
    const orig = sw("first", 47) + sw("second", 47);
    const d = pair(orig, sw("first", 48) + sw("second", 47));
    expect(byStatus(d)).toEqual({ changed: ["first", "first.cold"], unchanged: ["second", "second.cold"] });
    expect(refs(d, "first")).toEqual(["function first.cold", "private .rodata.first"]);
    expect(fn(d, "first.cold")).toMatchObject({ kind: "cold", parent: "first", reason: "piece" });
  });

  it("a .cold piece changed alone: its parent changes with it", () => {
    const sw = (dflt: number) => `int pick(int x, int y) { switch (x) { case 0: return y + 11; case 1: return y * 22; case 2: return y - 35;` +
      ` case 3: return y / 47; case 4: return y ^ 59; case 5: return y << 3; case 6: return y | 73; default: return ${dflt}; } }\n`;
    const d = pair(sw(-1000), sw(-2000));
    expect(byStatus(d)).toEqual({ changed: ["pick", "pick.cold"] });
    expect(fn(d, "pick.cold")).toMatchObject({ kind: "cold", parent: "pick", bind: "local", reason: "bytes" });
    expect(fn(d, "pick")).toMatchObject({ kind: "function", reason: "piece" });
    expect(fn(d, "pick.cold").parentIndex).toBe(fn(d, "pick").index);
    expect(refs(d, "pick")).toEqual(["function pick.cold", "private .rodata.pick"]);
  });

  it("a function pointer taken: the function changes, the code taking its address does not", () => {
    const orig = `static int cb_a(int x) { return x + 1; }\nstatic int cb_b(int x) { return x * 2; }\n` +
      `__attribute__((noinline)) int apply(int (*f)(int), int v) { return f(v); }\n` +
      `int run(int v) { return apply(cb_a, v) + apply(cb_b, v); }\n` +
      `int (*handlers[2])(int) = { cb_a, cb_b };\n`;
    const d = pair(orig, orig.replace("return x + 1;", "return x + 3;"));
    expect(byStatus(d)).toEqual({ changed: ["cb_a"], unchanged: ["apply", "cb_b", "run"] });
    expect(d.data.map((x) => `${x.name} ${x.status}`)).toEqual(["handlers unchanged"]);
    expect(d.refusals).toEqual([]);
  });

  it("a clone (.constprop) is reported as such, with its parent", () => {
    const orig = `static __attribute__((noinline)) int weigh(int x, int k) { return x * k + (x >> k); }\n` +
      `int w1(int a) { return weigh(a, 5) + 1; }\nint w2(int a) { return weigh(a + 1, 5) - 1; }\n`;
    const d = pair(orig, orig.replace("(x >> k)", "(x >> (k - 1))"));
    const clone = d.functions.find((f) => f.kind === "clone")!;
    expect(clone.name).toMatch(/^weigh\.constprop\.\d+$/);
    expect(clone).toMatchObject({ parent: "weigh", status: "changed", bind: "local" });
    expect(byStatus(d)).toEqual({ changed: [clone.name], unchanged: ["w1", "w2"] });
  });

  it("a TLS variable used: it stays, thread-local", () => {
    const orig = `__thread int depth;\nint enter(void) { return ++depth; }\nint level(void) { return depth; }\n`;
    const d = pair(orig, orig.replace("++depth", "depth += 2"));
    expect(byStatus(d)).toEqual({ changed: ["enter"], unchanged: ["level"] });
    expect(fn(d, "enter").refs).toMatchObject([{ kind: "data", name: "depth", threadLocal: true }]);
    expect(d.refusals).toEqual([]);
    // The same in PIC code (general-dynamic TLS through __tls_get_addr).
    const p = pair(orig, orig.replace("++depth", "depth += 2"), ["-O2", "-fPIC", "-ffunction-sections", "-fdata-sections"]);
    expect(byStatus(p)).toEqual({ changed: ["enter"], unchanged: ["level"] });
    expect(refs(p, "enter")).toEqual(["data depth", "external __tls_get_addr"]);
  });

  it("calls into libc: external references by name", () => {
    const orig = `#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n` +
      `size_t measure(const char *s) { return strlen(s); }\n` +
      `void show(int x) { printf("%d\\n", x); }\n` +
      `void *dup(const void *p, size_t n) { void *q = malloc(n); if (q) memcpy(q, p, n); return q; }\n`;
    const patched = orig.replace(`printf("%d\\n", x)`, `printf("value %d\\n", x)`).replace("malloc(n)", "calloc(1, n)");
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ changed: ["dup", "show"], unchanged: ["measure"] });
    expect(refs(d, "dup")).toEqual(["external calloc", "external memcpy"]);
    expect(refs(d, "show")).toEqual(["external printf", "strings .rodata.show.str1.1"]);
  });

  it("a constant in .rodata.cst8 elsewhere changing does not change a function using another constant", () => {
    const orig = `double f1(double x) { return x * 3.5; }\ndouble f2(double x) { return x * 2.25; }\n`;
    const d = pair(orig, orig.replace("x * 3.5", "x * 3.75"));
    expect(byStatus(d)).toEqual({ changed: ["f1"], unchanged: ["f2"] });
    expect(refs(d, "f1")).toEqual(["constants .rodata.cst8"]);
    const e = pair(orig, orig.replace("x * 3.5", "(x + 1.5) * 3.5"));
    expect(byStatus(e)).toEqual({ changed: ["f1"], unchanged: ["f2"] });
  });

  it("a removed function and a renamed one", () => {
    const orig = `int keep(int x) { return x + 1; }\nint gone(int x) { return x * 5; }\n`;
    const d = pair(orig, `int keep(int x) { return x + 1; }\nint fresh(int x) { return x * 5; }\n`);
    expect(byStatus(d)).toEqual({ added: ["fresh"], removed: ["gone"], unchanged: ["keep"] });
  });
});
