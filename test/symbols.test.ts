// The symbol index by name, by address and by source file, against readelf and nm, on
// a gcc -O2 program of three files (two `static int helper()`, a .cold split, .part
// clones), its objects, and libc.so.6.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { SymbolIndex, SymbolTable } from "../src/core/symbols.js";
import { LIBC, Scratch, run } from "./helpers/gcc.js";
import { nmAddresses, readelfSymbols, type ReadelfSymbol } from "./helpers/readelf.js";
import { imageOf } from "./helpers/elf-image.js";

const A_C = `
#include <stdio.h>
#include <stdlib.h>
static int __attribute__((noinline)) helper(int x) { return x * 3 + 1; }
int a_entry(int x) { return helper(x) + 1; }
void __attribute__((cold, noinline)) report(const char *m, int x) { fprintf(stderr, "%s %d\\n", m, x); }
/* The unlikely branch goes to foo.cold. */
int foo(int x, int *p) {
  int s = 0;
  for (int i = 0; i < x; i++) {
    if (__builtin_expect(p[i] == 42, 0)) { report("bad", i); s += p[i + 1] * 7; fprintf(stderr, "x %d %d\\n", s, i); }
    s += p[i];
  }
  return s;
}
static int table[256];
/* A likely early return and a long body: partial inlining outlines the body as NAME.part.0. */
#define BODY(K) \\
  if (__builtin_expect(!p, 1)) return 0; \\
  int s = 0; \\
  for (int i = 0; i < n; i++) { s += p[i] * table[i & 255] * K; if (s > 1000) s ^= p[i / 2]; } \\
  for (int i = 0; i < n; i++) { s -= p[n - 1 - i] / 3; table[i & 255] += s; } \\
  printf("%d %d %d\\n", s, table[3], table[s & 255]); \\
  for (int i = 0; i < n; i++) { s -= p[n - 1 - i] / 7; table[(i * 7) & 255] += s; } \\
  printf("%d %d %d\\n", s, table[3], table[s & 255]); \\
  return s;
static int big(int *p, int n) { BODY(3) }
static int lone(int *p, int n) { BODY(5) }
int (*keep_big)(int *, int) = big; /* big survives beside big.part.0; lone does not */
int use_big1(int *p) { return big(p, 10) + 1; }
int use_big2(int *p) { return big(p, 20) + 2; }
int use_lone1(int *p) { return lone(p, 10) + 1; }
int use_lone2(int *p, int n) { return lone(p, n) + 3; }
`;
const B_C = `
static int __attribute__((noinline)) helper(int x) { return x * 5 + 2; }
int b_entry(int x) { return helper(x) + 2; }
`;
const M_C = `
int a_entry(int); int b_entry(int); int foo(int, int *); int use_big1(int *); int use_big2(int *);
int use_lone1(int *); int use_lone2(int *, int);
int main(int c, char **v) {
  int p[32] = {c};
  return a_entry(c) + b_entry(c) + foo(c, p) + use_big1(c > 5 ? p : 0) + use_big2(p) + use_lone1(p) + use_lone2(p, c);
}
`;

let scratch: Scratch;
const core = nodeCore();
const files: Record<string, string> = {};
const open: Array<{ close(): void }> = [];

beforeAll(() => {
  scratch = new Scratch();
  const a = scratch.write("a.c", A_C);
  const b = scratch.write("b.c", B_C);
  const m = scratch.write("m.c", M_C);
  files.aObj = scratch.path("a.o");
  run("gcc", ["-O2", "-c", a, "-o", files.aObj], { cwd: scratch.dir });
  files.prog = scratch.path("prog");
  run("gcc", ["-O2", "a.c", "b.c", "m.c", "-o", files.prog], { cwd: scratch.dir });
  void b;
  void m;
});
afterAll(() => {
  for (const o of open.reverse()) o.close();
  scratch?.remove();
});

function index(path: string, table = SymbolTable.BEST): SymbolIndex {
  const elf = new ElfReader(core, readFileSync(path), path);
  const x = new SymbolIndex(core, elf, table);
  open.push(elf, x);
  return x;
}

/** Rows readelf lists under a name (its base name, without @version), in table order. */
function byBase(rows: ReadelfSymbol[]): Map<string, ReadelfSymbol[]> {
  const m = new Map<string, ReadelfSymbol[]>();
  for (const r of rows) {
    if (!r.base || r.type === "FILE" || r.type === "SECTION") continue;
    const l = m.get(r.base) ?? [];
    l.push(r);
    m.set(r.base, l);
  }
  return m;
}

describe("symbol index of a linked program", () => {
  it("the fixture has what the tests are about (nm shows the pieces)", () => {
    const nm = nmAddresses(files.prog);
    expect(nm.get("helper")?.length).toBe(2);
    for (const n of ["foo", "foo.cold", "big", "big.part.0", "lone.part.0"]) expect(nm.has(n), n).toBe(true);
    expect(nm.has("lone")).toBe(false);
  });

  it("finds every named symbol of .symtab by name, all of a name in table order", () => {
    const x = index(files.prog);
    const rows = readelfSymbols(files.prog, ".symtab");
    expect(x.count).toBe(rows.length);
    for (const [base, list] of byBase(rows)) {
      expect(x.findAll(base), base).toEqual(list.map((r) => r.index));
      for (const r of list) {
        const s = x.get(r.index);
        expect(s.name).toBe(r.name);
        expect(s.baseName).toBe(base);
        expect(s.value).toBe(r.value);
      }
    }
    expect(x.find("no_such_symbol")).toBeUndefined();
    expect(x.find("hel")).toBeUndefined();
    expect(x.find("helper2")).toBeUndefined();
  });

  it("tells the two static helpers apart by source file and sympos", () => {
    const x = index(files.prog);
    const rows = readelfSymbols(files.prog, ".symtab").filter((r) => r.name === "helper");
    expect(rows.map((r) => r.file).sort()).toEqual(["a.c", "b.c"]);
    const nm = nmAddresses(files.prog).get("helper")!;
    rows.forEach((r, i) => {
      const id = x.findLocal("helper", { file: r.file })!;
      expect(id).toBe(r.index);
      const s = x.get(id);
      expect(s.sympos).toBe(i + 1); // 1-based, in table order
      expect(x.get(s.file).name).toBe(r.file);
      expect(nm).toContain(s.value);
      expect(x.findLocal("helper", { sympos: i + 1 })).toBe(r.index);
      expect(x.findLocal("helper", { file: r.file, sympos: i + 1 })).toBe(r.index);
    });
    expect(x.findLocal("helper", { file: "src/b.c" })).toBe(rows.find((r) => r.file === "b.c")!.index);
    expect(x.findLocal("helper", { file: "xb.c" })).toBeUndefined();
    expect(x.findLocal("helper", { file: "a.c", sympos: 2 })).toBeUndefined();
    expect(x.findLocal("helper", { file: "c.c" })).toBeUndefined();
    expect(x.findLocal("a_entry")).toBeUndefined(); // global
    expect(x.get(x.find("a_entry")!).sympos).toBe(0);
  });

  it("finds the function containing an address, unsized ones up to the next function", () => {
    const x = index(files.prog);
    const rows = readelfSymbols(files.prog, ".symtab");
    const funcs = rows.filter((r) => (r.type === "FUNC" || r.type === "IFUNC") && r.ndx !== "UND" && r.ndx !== "ABS");
    expect(funcs.some((r) => r.size === 0n)).toBe(true); // crtstuff's deregister_tm_clones & co
    const starts = [...new Set(funcs.map((r) => r.value))].sort((a, b) => (a < b ? -1 : 1));
    for (const r of funcs) {
      const hit = x.at(r.value)!;
      expect(hit, r.name).toBeDefined();
      expect(hit.start).toBe(r.value);
      if (r.size > 0n) {
        expect(x.get(hit.id).value).toBe(r.value);
        expect(hit.end).toBe(r.value + r.size);
        expect(x.at(r.value + r.size - 1n)!.id).toBe(hit.id);
        expect(hit.guessedEnd).toBe(false);
      } else {
        // The next function's start, or the end of its section (_init, _fini).
        const sec = x.elf.sections()[Number(r.ndx)];
        const next = starts.find((s) => s > r.value) ?? sec.addr + sec.size;
        const end = next < sec.addr + sec.size ? next : sec.addr + sec.size;
        expect(hit.guessedEnd).toBe(true);
        expect(hit.end, r.name).toBe(end);
        expect(x.at(end - 1n)!.id).toBe(hit.id);
      }
    }
    expect(x.at(0n)).toBeUndefined();
    expect(x.at(0xffff_ffff_ffffn)).toBeUndefined();
    // Every probe address (each function's end, and one byte before its start) is in a
    // function exactly when readelf's ranges (unsized ones as above) cover it.
    const secs = x.elf.sections();
    const ranges = funcs.map((r) => {
      if (r.size > 0n) return [r.value, r.value + r.size];
      const sec = secs[Number(r.ndx)];
      const next = starts.find((s) => s > r.value) ?? sec.addr + sec.size;
      return [r.value, next < sec.addr + sec.size ? next : sec.addr + sec.size];
    });
    let uncovered = 0;
    for (const r of funcs) {
      for (const probe of [r.value + r.size, r.value - 1n]) {
        const covered = ranges.some(([s, e]) => s <= probe && probe < e);
        if (!covered) uncovered++;
        expect(x.at(probe) !== undefined, `0x${probe.toString(16)}`).toBe(covered);
      }
    }
    expect(uncovered).toBeGreaterThan(0); // padding between functions exists and is nobody's
  });

  it("reports .cold and .part pieces as pieces of their parent", () => {
    const x = index(files.prog);
    const foo = x.find("foo")!;
    const cold = x.get(x.find("foo.cold")!);
    expect(cold.piece).toBe("cold");
    expect(cold.root).toBe(foo);
    expect(cold.rootName).toBe("foo");
    const hit = x.at(cold.value + 1n)!;
    expect(hit.id).toBe(cold.id);
    expect(hit.piece).toBe("cold");
    expect(hit.root).toBe(foo);
    expect(x.at(x.get(foo).value)!.root).toBe(foo); // a whole function is its own root

    const part = x.get(x.find("big.part.0")!);
    expect(part.piece).toBe("part");
    expect(part.root).toBe(x.find("big"));
    expect(x.at(part.value + part.size / 2n)!.root).toBe(x.find("big"));
    // lone was inlined everywhere: its piece has no parent left, only the parent's name.
    const lone = x.get(x.find("lone.part.0")!);
    expect(lone.piece).toBe("part");
    expect(lone.root).toBe(-1);
    expect(lone.rootName).toBe("lone");
    expect(x.get(x.find("a_entry")!).piece).toBe("whole");
  });

  it("indexes versioned names of a linked .symtab under their base name", () => {
    const x = index(files.prog);
    const rows = readelfSymbols(files.prog, ".symtab").filter((r) => r.base === "printf");
    expect(rows.length).toBe(1);
    expect(rows[0].name).toMatch(/^printf@GLIBC_/);
    const s = x.get(x.find("printf")!);
    expect(s.name).toBe(rows[0].name);
    expect(s.defined).toBe(false);
  });
});

describe("symbol index of an ET_REL object", () => {
  it("finds functions by section and offset, pieces with their parent", () => {
    const x = index(files.aObj);
    expect(x.isRelocatable).toBe(true);
    const rows = readelfSymbols(files.aObj, ".symtab");
    const funcs = rows.filter((r) => r.type === "FUNC" && r.ndx !== "UND");
    expect(new Set(funcs.map((r) => r.ndx)).size).toBeGreaterThan(1); // .text and .text.unlikely
    for (const r of funcs) {
      const shndx = Number(r.ndx);
      const hit = x.at(r.value + r.size - 1n, shndx)!;
      expect(hit.id, r.name).toBe(r.index);
      expect(hit.start).toBe(r.value);
      expect(hit.end).toBe(r.value + r.size);
      // The same offset in another section is another function or none.
      const other = x.at(r.value, shndx === 1 ? 2 : 1);
      if (other) expect(x.get(other.id).shndx).not.toBe(shndx);
    }
    const cold = x.get(x.find("foo.cold")!);
    expect(cold.root).toBe(x.find("foo"));
    expect(x.get(cold.file).name).toBe("a.c");
    expect(x.findLocal("helper", { file: "a.c", sympos: 1 })).toBe(x.find("helper"));
  });
});

describe("symbol index of libc.so.6 (.dynsym)", () => {
  const rows = readelfSymbols(LIBC, ".dynsym");

  it("finds every name, each version of it in table order", () => {
    const x = index(LIBC, SymbolTable.DYNSYM);
    expect(x.table).toBe(SymbolTable.DYNSYM);
    expect(x.count).toBe(rows.length);
    let checked = 0;
    for (const [base, list] of byBase(rows)) {
      expect(x.findAll(base), base).toEqual(list.map((r) => r.index));
      checked++;
    }
    expect(checked).toBeGreaterThan(2500);
    const memcpy = x.findAll("memcpy").map((id) => x.get(id));
    expect(memcpy.length).toBe(2);
    const ids = x.findMany(["memcpy", "strlen", "nope", ""]);
    expect([...ids]).toEqual([x.find("memcpy"), x.find("strlen"), -1, -1]);
  });

  it("finds the function at each function's start; aliases share the range", () => {
    const x = index(LIBC, SymbolTable.DYNSYM);
    const funcs = rows.filter((r) => (r.type === "FUNC" || r.type === "IFUNC") && r.ndx !== "UND" && r.size > 0n);
    const addrs = funcs.map((r) => r.value);
    const ids = x.atMany(addrs);
    funcs.forEach((r, i) => {
      expect(ids[i], r.name).toBeGreaterThanOrEqual(0);
      const s = x.get(ids[i]);
      expect(s.value).toBe(r.value);
      const hit = x.at(r.value)!;
      expect(hit.end <= r.value + r.size || hit.guessedEnd).toBe(true);
    });
    // Aliases: memcpy@GLIBC_2.2.5 and its twins share one address; the global, fewest-underscore name wins.
    const memmove = rows.find((r) => r.name.startsWith("memmove@@"))!;
    const hit = x.get(x.at(memmove.value)!.id);
    const same = rows.filter((r) => r.value === memmove.value && r.size === memmove.size && r.type !== "OBJECT");
    expect(same.map((r) => r.index)).toContain(hit.id);
    expect(hit.baseName.startsWith("_")).toBe(same.every((r) => r.base.startsWith("_")));
  });
});

describe("symbol index of an image (program headers only)", () => {
  it("libc as mapped: the same names, functions and slots as the file, no PLT entries", () => {
    const file = readFileSync(LIBC);
    const { image, firstVaddr } = imageOf(file);
    const base = 0x7f1234560000n;
    const elf = new ElfReader(core, image, "libc image", base + BigInt(firstVaddr));
    const x = new SymbolIndex(core, elf);
    open.push(elf, x);
    const y = index(LIBC, SymbolTable.DYNSYM);
    expect(x.table).toBe(SymbolTable.DYNSYM);
    expect(x.count).toBe(y.count);
    expect(x.functionCount).toBe(y.functionCount);
    for (const n of ["memcpy", "strlen", "malloc", "__libc_start_main", "stdout"]) expect(x.findAll(n)).toEqual(y.findAll(n));
    const rows = readelfSymbols(LIBC, ".dynsym").filter((r) => (r.type === "FUNC" || r.type === "IFUNC") && r.ndx !== "UND" && r.size > 0n);
    expect([...x.atMany(rows.map((r) => r.value))]).toEqual([...y.atMany(rows.map((r) => r.value))]);
    const a = x.slots();
    const b = y.slots();
    expect(a.map((s) => [s.address, s.type, s.symbol, s.addend])).toEqual(b.map((s) => [s.address, s.type, s.symbol, s.addend]));
    expect(a.every((s) => s.plt === undefined)).toBe(true);
    expect(b.some((s) => s.plt !== undefined)).toBe(true);
  });
});

describe("symbol index errors", () => {
  it("fails on a closed ELF handle, a missing table and a bad id", () => {
    const elf = new ElfReader(core, readFileSync(files.aObj), files.aObj);
    expect(() => new SymbolIndex(core, elf, SymbolTable.DYNSYM)).toThrow(/no \.dynsym/);
    const x = new SymbolIndex(core, elf, SymbolTable.SYMTAB);
    expect(() => x.get(1 << 20)).toThrow(/symbol 1048576 is not in a table of/);
    expect(() => x.slots()).toThrow(/\.symtab/);
    elf.close();
    expect(() => x.find("foo")).toThrow(/ELF handle \d+ of symbol index \d+ was closed/);
    x.close();
    expect((core.exports as unknown as { sym_find(h: number, p: number, l: number): number }).sym_find(x.handle, 0, 0)).toBe(-1);
    expect(core.exports.core_error_code()).toBe(1); // BAD_HANDLE
  });
});
