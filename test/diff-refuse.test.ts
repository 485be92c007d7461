// What the object diff refuses, each with its exact reason: whole objects (thrown:
// missing -ffunction-sections / -fdata-sections, LTO, not ET_REL) and parts of a diff
// (listed: changed data layout or initial value, new TLS, new constructors).
import { afterAll, describe, expect, it } from "vitest";
import { Scratch, run } from "./helpers/gcc.js";
import { byStatus, compilePair, diffFiles, diffSources } from "./helpers/diff.js";
import { CoreError } from "../src/core/instance.js";
import { DiffError, type DiffResult } from "../src/core/diff.js";

const scratch: Scratch[] = [];
function pair(orig: string, patched: string, flags?: string[], compiler?: string): DiffResult {
  const s = new Scratch();
  scratch.push(s);
  return diffSources(s, orig, patched, { flags, compiler, name: compiler === "g++" ? "fix.cc" : "fix.c" });
}
afterAll(() => scratch.forEach((s) => s.remove()));

function thrown(f: () => unknown): CoreError {
  try {
    f();
  } catch (e) {
    if (e instanceof CoreError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

describe("object diff refusals", () => {
  it("a data-layout change (size) of an existing global", () => {
    const orig = `struct config { int a; int b; };\nstruct config cfg = { 1, 2 };\nint get(void) { return cfg.a + cfg.b; }\n`;
    const patched = `struct config { int a; int b; int c; };\nstruct config cfg = { 1, 2, 3 };\nint get(void) { return cfg.a + cfg.b + cfg.c; }\n`;
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ changed: ["get"] });
    expect(d.refusals.map((r) => [r.code, r.reason, r.message])).toEqual([[
      DiffError.DATA_CHANGED, "data-changed",
      "data object `cfg` (global) changes size from 8 to 12 bytes: existing data stays in the running program as it is (its size, place and current value), so a patch cannot change its layout or re-initialize it",
    ]]);
    expect(d.data[d.refusals[0].data!]).toMatchObject({ name: "cfg", status: "changed", reason: "size", originalSize: 8, patchedSize: 12 });
  });

  it("a changed initial value of a static, and of a pointer to a string", () => {
    const orig = `static int limit = 10;\nconst char *banner = "v1";\nint over(int x) { return x > limit; }\n` +
      `void set_limit(int v) { limit = v; }\nconst char *ban(void) { return banner; }\n`;
    const d = pair(orig, orig.replace("limit = 10", "limit = 20").replace(`"v1"`, `"v2"`));
    expect(byStatus(d)).toEqual({ unchanged: ["ban", "over", "set_limit"] });
    expect(d.refusals.map((r) => r.message).sort()).toEqual([
      "data object `banner` (global) changes its initial value: existing data stays in the running program as it is (its size, place and current value), so a patch cannot change its layout or re-initialize it",
      "data object `limit` (file-local) changes its initial value: existing data stays in the running program as it is (its size, place and current value), so a patch cannot change its layout or re-initialize it",
    ]);
    // The same string at another place of .rodata.str1.1 is the same value.
    const s = new Scratch();
    scratch.push(s);
    const p = compilePair(s, orig, orig + `const char *other = "padding first";\n`);
    const at = (o: string) => run("readelf", ["-rW", o]).split(/\n\n/).find((t) => t.includes("'.rela.data.rel.local.banner'"))!.match(/\.rodata\.str1\.1 \+ (\w+)/)![1];
    expect([at(p.orig), at(p.patched)]).toEqual(["0", "e"]);
    const e = diffFiles(p.orig, p.patched);
    expect(e.refusals).toEqual([]);
    expect(byStatus(e)).toEqual({ unchanged: ["ban", "over", "set_limit"] });
    expect(e.data.map((x) => `${x.name} ${x.status}`).sort()).toEqual(["banner unchanged", "limit unchanged", "other added"]);
  });

  it("a new TLS variable", () => {
    const orig = `__thread int depth;\nint enter(void) { return ++depth; }\n`;
    const patched = `__thread int depth;\n__thread int peak;\nint enter(void) { if (++depth > peak) peak = depth; return depth; }\n`;
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ changed: ["enter"] });
    expect(d.refusals.map((r) => [r.code, r.message])).toEqual([[
      DiffError.NEW_TLS,
      "new thread-local variable `peak` (global): the running program's threads have their TLS blocks laid out already, so a patch cannot add thread-local storage",
    ]]);
    expect(d.functions.find((f) => f.name === "enter")!.refs.map((r) => `${r.kind} ${r.name} ${r.threadLocal}`).sort()).toEqual(["data depth true", "new-data peak true"]);
  });

  it("a new global that needs a constructor (C, constructor attribute)", () => {
    const orig = `int table[4];\nint get(int i) { return table[i]; }\n`;
    const patched = `int table[4];\nint ready;\n__attribute__((constructor)) static void init(void) { ready = 1; }\nint get(int i) { return ready ? table[i] : -1; }\n`;
    const d = pair(orig, patched);
    expect(byStatus(d)).toEqual({ added: ["init"], changed: ["get"] });
    expect(d.refusals.map((r) => [r.code, r.message])).toEqual([[
      DiffError.CONSTRUCTOR,
      "function `init` runs from .init_array (a constructor, run once at program start) and is new: the new global `ready` would never be initialized in the running program",
    ]]);
    expect(d.functions[d.refusals[0].function!].name).toBe("init");
  });

  it("a new C++ global with a dynamic initializer", () => {
    const orig = `int compute(int x) { return x * 3 + 1; }\nint base = 7;\nint value(void) { return base; }\n`;
    const patched = `int compute(int x) { return x * 3 + 1; }\nint base = 7;\nint derived = compute(base);\nint value(void) { return base + derived; }\n`;
    const d = pair(orig, patched, ["-O1", "-ffunction-sections", "-fdata-sections"], "g++");
    const ctor = d.functions.find((f) => f.name.startsWith("_GLOBAL__sub_I_"))!;
    expect(ctor.status).toBe("added");
    expect(d.refusals.map((r) => [r.code, r.message])).toEqual([[
      DiffError.CONSTRUCTOR,
      `function \`${ctor.name}\` runs from .init_array (a constructor, run once at program start) and is new: the new global \`derived\` would never be initialized in the running program`,
    ]]);
  });

  it("an object without -ffunction-sections", () => {
    const src = `int a(int x) { return x + 1; }\nint b(int x) { return x + 2; }\n`;
    const e = thrown(() => pair(src, src.replace("x + 2", "x + 3"), ["-O2"]));
    expect(e.code).toBe(DiffError.NO_FUNCTION_SECTIONS);
    expect(e.message).toMatch(/\/orig\/fix\.o: original object: section \.text holds functions `a` and `b`: the object was not compiled with -ffunction-sections, so a function cannot be taken out alone; compile with -ffunction-sections -fdata-sections$/);
    // Only the patched one without: it is the one named.
    const s = new Scratch();
    scratch.push(s);
    const p = diffSources(s, src, src, {});
    expect(p.functions.length).toBe(2);
    const q = thrown(() => diffSources(new Scratch(), src, src, { patchedFlags: ["-O2", "-fdata-sections"] }));
    expect(q.message).toMatch(/\/patched\/fix\.o: patched object: section \.text holds functions `a` and `b`/);
  });

  it("an object without -fdata-sections", () => {
    const src = `int x = 1, y = 2;\nint get(void) { return x + y; }\n`; // y comes first in .symtab
    const e = thrown(() => pair(src, src, ["-O2", "-ffunction-sections"]));
    expect(e.code).toBe(DiffError.NO_DATA_SECTIONS);
    expect(e.message).toMatch(/original object: section \.data holds data object `y`: the object was not compiled with -fdata-sections, so its data objects share sections and a reference cannot be told apart from its neighbours; compile with -ffunction-sections -fdata-sections$/);
  });

  it("an LTO object", () => {
    const src = `int a(int x) { return x + 1; }\n`;
    const e = thrown(() => pair(src, src, ["-O2", "-flto", "-ffunction-sections", "-fdata-sections"]));
    expect(e.code).toBe(DiffError.LTO);
    expect(e.message).toMatch(/original object: section \.gnu\.lto_[^ ]+ holds GCC's intermediate code \(an -flto object\): its machine code only exists after link-time optimization, so functions cannot be compared or taken out; build the objects without -flto$/);
  });

  it("a linked file instead of an object", () => {
    const s = new Scratch();
    scratch.push(s);
    const exe = s.gcc(`int main(void) { return 0; }\n`, "prog", ["-O2"]);
    const e = thrown(() => diffFiles(exe, exe));
    expect(e.code).toBe(DiffError.NOT_RELOCATABLE);
    expect(e.message).toMatch(/original object: ELF type 3 is not ET_REL \(a relocatable object, as gcc -c writes it\)$/);
  });
});
