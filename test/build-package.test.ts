// makePackage (src/build/make-package.ts): from two builds of a C (and a C++) fixture and
// the target linked from the original build, a package per kind of change. Each test
// checks the exact set of functions replaced and added, what moved into the package,
// and how each reference binds; addresses and PLT entries are compared with readelf
// and objdump on the target. Refusals are checked for their exact reason.
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { diffBuilds } from "../src/build/build-diff.js";
import { BuildError } from "../src/build/errors.js";
import { makePackage, type PackageRequest } from "../src/build/make-package.js";
import { pairObjects } from "../src/build/objects.js";
import { main } from "../src/cli/main.js";
import type { PatchPackage, Reference } from "../src/format/model.js";
import { decodePackage } from "../src/format/reader.js";
import { writePackageFile } from "../src/format/writer.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch, run } from "./helpers/gcc.js";
import { thrown } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

const FLAGS = ["-O2", "-g", "-fPIE", "-ffunction-sections", "-fdata-sections"];

const FIX = `#include <stdio.h>
#include <stdlib.h>
__thread int tls_counter;
int ext_global = 7;
static int counter;
static __attribute__((noinline, noclone)) int helper(int x, int y) { counter += y; return x * 3 + tls_counter; }
int table_switch(int x) {
  switch (x) { case 0: return 11; case 1: return helper(x, 2); case 2: return 37; case 3: return 41; case 4: return 5; case 5: return 99; case 6: return 12; default: return -1; }
}
static inline int inlined(int x) { return x + 1; }
int uses_inlined(int x) { return inlined(x) * 2; }
int stable_strings(void) { return puts("stable string"); }
int greet(const char *who) { return printf("hello %s\\n", who); }
int with_static_local(void) { static int hits; return ++hits; }
int (*pick(int k))(const char *) { return k == 1 ? greet : 0; }
__attribute__((cold, noinline)) void report(const char *m, int x) { fprintf(stderr, "error: %s %d\\n", m, x); }
int cold_split(int x) { if (x > 1000) { report("big", x); fprintf(stderr, "really %d %d\\n", x * 2, ext_global); ext_global++; return -1; } return x * 5 + ext_global; }
int tls_bump(void) { return ++tls_counter; }
int use_helper(int x) { return helper(x, x); }
`;
const MAIN = `int table_switch(int); int uses_inlined(int); int stable_strings(void); int greet(const char *); int with_static_local(void);
int (*pick(int))(const char *); int cold_split(int); int tls_bump(void); int use_helper(int);
int main(int argc, char **argv) {
  int (*f)(const char *) = pick(argc);
  if (f) f(argv[0]);
  return table_switch(argc) + uses_inlined(argc) + stable_strings() + with_static_local() + cold_split(argc) + tls_bump() + use_helper(argc);
}
`;

interface Program {
  original: string; // objects dir
  patched: string;
  target: string;
}

let n = 0;
/**
 * Compiles `orig` and `patched` ({ file: source }) in one build directory (the same paths
 * for both, as patchc build --source does), and links the target from the original objects
 * (or from `targetFiles`, a different build).
 */
function program(orig: Record<string, string>, fixed: Record<string, string>, o: { cxx?: boolean; targetFiles?: Record<string, string>; linkFlags?: string[] } = {}): Program {
  const id = ++n;
  const work = scratch.path("work");
  const compile = (files: Record<string, string>, out: string) => {
    fs.rmSync(work, { recursive: true, force: true });
    fs.mkdirSync(work);
    fs.mkdirSync(out, { recursive: true });
    for (const [f, text] of Object.entries(files)) {
      fs.writeFileSync(path.join(work, f), text);
      execFileSync(o.cxx ? "g++" : "gcc", [...FLAGS, "-c", f, "-o", path.join(out, f.replace(/\.\w+$/, ".o"))], { cwd: work, stdio: ["ignore", "pipe", "pipe"] });
    }
    return out;
  };
  const original = compile(orig, scratch.path(`p${id}/original`));
  const patched = compile(fixed, scratch.path(`p${id}/patched`));
  const linkFrom = o.targetFiles ? compile(o.targetFiles, scratch.path(`p${id}/other`)) : original;
  const target = scratch.path(`p${id}/target`);
  const objs = fs.readdirSync(linkFrom).map((f) => path.join(linkFrom, f));
  execFileSync(o.cxx ? "g++" : "gcc", ["-pie", "-Wl,--build-id", ...(o.linkFlags ?? []), ...objs, "-o", target], { stdio: ["ignore", "pipe", "pipe"] });
  return { original, patched, target };
}

function build(p: Program, extra: Partial<PackageRequest> = {}): { pkg: PatchPackage; notes: string[]; replaced: string[]; added: string[] } {
  const pairs = pairObjects(p.original, p.patched).pairs;
  const r = makePackage(core, { target: p.target, patchId: "fix-1", pairs, diff: diffBuilds(core, pairs), ...extra });
  // The package writes and reads back: every rule of the format holds.
  const file = `${p.target}.patch`;
  const bytes = writePackageFile(file, r.package);
  const pkg = decodePackage(core, bytes, file).model;
  return {
    pkg,
    notes: r.notes,
    replaced: pkg.functions.filter((f) => f.kind === "replace").map((f) => f.name).sort(),
    added: pkg.functions.filter((f) => f.kind === "add").map((f) => f.name).sort(),
  };
}

const refusal = (fn: () => unknown): BuildError => thrown(BuildError, fn);

/** The target's symbols as readelf shows them: name -> { value, file of a local }. */
function readelfSymbols(target: string): Map<string, Array<{ value: bigint; local: boolean; file: string; type: string }>> {
  const out = new Map<string, Array<{ value: bigint; local: boolean; file: string; type: string }>>();
  let file = "";
  for (const line of run("readelf", ["-sW", target]).split("\n")) {
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, value, type, bind, ndx, full] = m;
    const name = full.replace(/@.*$/, ""); // a copy of a library's object: "stderr@GLIBC_2.2.5"
    if (line.includes(".symtab")) continue;
    if (type === "FILE") {
      file = name;
      continue;
    }
    if (ndx === "UND") continue;
    const list = out.get(name) ?? [];
    list.push({ value: BigInt(`0x${value}`), local: bind === "LOCAL", file, type });
    out.set(name, list);
  }
  return out;
}

/** `n` bytes of the target's code at `addr`, as objdump -d shows them, in hex. */
function objdumpBytes(target: string, addr: bigint, n: number): string {
  const text = run("objdump", ["-d", `--start-address=0x${addr.toString(16)}`, `--stop-address=0x${(addr + BigInt(n)).toString(16)}`, target]);
  let hex = "";
  for (const line of text.split("\n")) {
    const m = /^\s+[0-9a-f]+:\t((?:[0-9a-f]{2} )+)/.exec(line);
    if (m) hex += m[1].replace(/ /g, "");
  }
  return hex.slice(0, 2 * n);
}

/** PLT entries as objdump labels them: name -> address. */
function pltEntries(target: string): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const line of run("objdump", ["-d", target]).split("\n")) {
    const x = /^([0-9a-f]+) <(\w+)@plt>:$/.exec(line);
    if (x) m.set(x[2], BigInt(`0x${x[1]}`));
  }
  return m;
}

function ref(pkg: PatchPackage, name: string): Reference {
  const r = pkg.references.filter((x) => x.name === name || x.name.startsWith(`${name}@`));
  expect(r, `reference ${name}`).toHaveLength(1);
  return r[0];
}

/** Every module reference's address is readelf's value for that symbol (and file, for a local). */
function checkModuleReferences(p: Program, pkg: PatchPackage): void {
  const syms = readelfSymbols(p.target);
  for (const r of pkg.references.filter((x) => x.scope === "module")) {
    const cands = (syms.get(r.name) ?? []).filter((s) => (r.local ? s.local && s.file === r.local.file : !s.local));
    expect(cands.length, `${r.name} in readelf`).toBeGreaterThan(0);
    const s = cands[r.local ? r.local.sympos - 1 : 0];
    expect(r.bind === "tls" ? r.tls!.offset : r.addr, r.name).toBe(s.value);
  }
}

const withFix = (from: string, to: string) => ({ "fix.c": FIX.replace(from, to), "main.c": MAIN });
const ORIG = { "fix.c": FIX, "main.c": MAIN };

describe("makePackage: one package per kind of change", () => {
  it("a body change with a .cold piece: the function, its old and new piece, proven against the target", () => {
    const p = program(ORIG, withFix("return x * 5 + ext_global;", "return x * 6 + ext_global;"));
    const { pkg, replaced, added } = build(p);
    expect(replaced).toEqual(["cold_split"]);
    expect(added).toEqual([]);
    const f = pkg.functions[0];
    const syms = readelfSymbols(p.target);
    expect(f.original!.addr).toBe(syms.get("cold_split")![0].value);
    expect(f.pieces).toHaveLength(1);
    expect(f.pieces[0]).toMatchObject({ kind: "cold", name: "cold_split.cold", local: { file: "fix.c", sympos: 1 }, original: { addr: syms.get("cold_split.cold")![0].value } });
    expect(pkg.symbols[f.pieces[0].symbol!].name).toBe("cold_split.cold");
    // The site bytes are the target's, and the FDEs of both pieces came along.
    expect(Buffer.from(f.original!.site).toString("hex")).toBe(objdumpBytes(p.target, f.original!.addr, f.original!.site.length));
    expect(f.original!.site.length).toBe(16);
    expect(f.fde).toBeDefined();
    expect(f.pieces[0].fde).toBeDefined();
    expect(ref(pkg, "ext_global")).toMatchObject({ bind: "direct", scope: "module", type: "object" });
    expect(ref(pkg, "report")).toMatchObject({ bind: "direct", scope: "module", type: "func" });
    checkModuleReferences(p, pkg);
  });

  it("a new static helper is added; the static local it uses stays, paired by file and position", () => {
    const p = program(ORIG, withFix("int with_static_local(void) { static int hits; return ++hits; }", "static __attribute__((noinline, noclone)) int bump_hits(int *h) { return *h += 2; }\nint with_static_local(void) { static int hits; return bump_hits(&hits); }"));
    const { pkg, replaced, added } = build(p);
    expect(replaced).toEqual(["with_static_local"]);
    expect(added).toEqual(["bump_hits"]);
    expect(ref(pkg, "hits.0")).toMatchObject({ bind: "direct", scope: "module", local: { file: "fix.c", sympos: 1 } });
    expect(pkg.sections.map((s) => s.name).filter((s) => s.startsWith(".bss"))).toEqual([]);
    checkModuleReferences(p, pkg);
  });

  it("a new global goes into the package; a changed string moves with the code, an unchanged function in the file is not flagged", () => {
    const p = program(ORIG, withFix('int greet(const char *who) { return printf("hello %s\\n", who); }', 'int greeted;\nint greet(const char *who) { greeted++; return printf("hi %s\\n", who); }'));
    const { pkg, replaced, added } = build(p);
    expect(replaced).toEqual(["greet"]);
    expect(added).toEqual([]);
    const names = pkg.sections.map((s) => s.name);
    expect(names).toContain(".bss.greeted");
    expect(pkg.symbols.find((s) => s.name === "greeted")).toMatchObject({ type: "object", bind: "global" });
    const str = pkg.sections.find((s) => s.name === ".rodata.greet.str1.1")!;
    expect(Buffer.from(str.data!).toString("latin1")).toBe("hi %s\n\0");
    expect(names.some((s) => s.includes("stable_strings"))).toBe(false);
    // printf through the target's own PLT entry, versioned as the target imports it.
    const printf = ref(pkg, "printf");
    expect(printf).toMatchObject({ bind: "plt", scope: "dynamic", version: "GLIBC_2.2.5", library: "libc.so.6" });
    expect(printf.pltEntry).toBe(pltEntries(p.target).get("printf"));
  });

  it("a changed static local's use: the reference is the target's hits.0", () => {
    const p = program(ORIG, withFix("return ++hits;", "return hits += 3;"));
    const { pkg, replaced } = build(p);
    expect(replaced).toEqual(["with_static_local"]);
    expect(pkg.references.map((r) => r.name)).toEqual(["hits.0"]);
    checkModuleReferences(p, pkg);
  });

  it("a change inside an inlined function replaces its caller", () => {
    const p = program(ORIG, withFix("return x + 1; }", "return x + 2; }"));
    expect(build(p).replaced).toEqual(["uses_inlined"]);
  });

  it("a switch with a jump table: the table moves with the code, proven equivalent in the target", () => {
    const p = program(ORIG, withFix("case 2: return 37;", "case 2: return 38;"));
    const { pkg, replaced } = build(p);
    expect(replaced).toEqual(["table_switch"]);
    const table = pkg.sections.find((s) => s.name === ".rodata.table_switch")!;
    expect(table.relocations.length).toBeGreaterThanOrEqual(7);
    expect(new Set(table.relocations.map((r) => pkg.symbols[r.symbol].section))).toEqual(new Set([pkg.sections.findIndex((s) => s.name === ".text.table_switch")]));
    expect(ref(pkg, "helper")).toMatchObject({ bind: "direct", scope: "module", type: "func", local: { file: "fix.c", sympos: 1 } });
    checkModuleReferences(p, pkg);
  });

  it("a function pointer taken: the target's function, by address", () => {
    const p = program(ORIG, withFix("k == 1 ? greet : 0", "k == 2 ? greet : 0"));
    const { pkg, replaced } = build(p);
    expect(replaced).toEqual(["pick"]);
    expect(ref(pkg, "greet")).toMatchObject({ bind: "direct", scope: "module", type: "func" });
    checkModuleReferences(p, pkg);
  });

  it("a TLS variable: bound with its model and its offset in the target's TLS block", () => {
    const p = program(ORIG, withFix("return ++tls_counter;", "return tls_counter += 2;"));
    const { pkg, replaced } = build(p);
    expect(replaced).toEqual(["tls_bump"]);
    const t = ref(pkg, "tls_counter");
    expect(t).toMatchObject({ bind: "tls", scope: "module", type: "tls", tls: { model: "le" } });
    checkModuleReferences(p, pkg);
  });

  it("a function the linker removed from the target comes with the new code, added", () => {
    const base = { "fix.c": FIX + "__attribute__((noinline)) int unused_global(int x) { return x * 7; }\n", "main.c": MAIN };
    const p = program(base, { ...base, "fix.c": base["fix.c"].replace("return helper(x, x); }", "return helper(x, x) + unused_global(x); }") }, { linkFlags: ["-Wl,--gc-sections"] });
    expect(readelfSymbols(p.target).has("unused_global")).toBe(false);
    const { pkg, replaced, added, notes } = build(p);
    expect(replaced).toEqual(["use_helper"]);
    expect(added).toEqual(["unused_global"]);
    expect(notes).toEqual(["fix.o: unused_global is added: the target has no copy of it (inlined everywhere or removed by the linker)"]);
    expect(pkg.references.map((r) => r.name)).toEqual(["helper"]);
  });

  it("a C++ method with try/catch: mangled names, its LSDA and FDE, the personality bound in the target", () => {
    const CXX = `struct A { int v; int get(int x); int safe(int x); };
int A::get(int x) { if (x < 0) throw x; return v + x; }
int A::safe(int x) { try { return get(x); } catch (int e) { return -e; } }
int main(int argc, char **) { A a{3}; return a.safe(argc) + a.safe(-argc); }
`;
    const p = program({ "a.cc": CXX }, { "a.cc": CXX.replace("catch (int e) { return -e; }", "catch (int e) { return -2 * e; }") }, { cxx: true });
    const { pkg, replaced } = build(p);
    expect(replaced).toEqual(["_ZN1A4safeEi"]);
    const f = pkg.functions[0];
    expect(f.fde).toBeDefined();
    expect(pkg.sections.map((s) => s.name)).toContain(".gcc_except_table._ZN1A4safeEi");
    // get() is called through the piece gcc split off it (partial inlining); the type info
    // and personality routine are reached through the target's DW.ref.* words.
    expect(pkg.references.map((r) => `${r.name} ${r.bind} ${r.scope}`).sort()).toEqual([
      "DW.ref._ZTIi direct module",
      "DW.ref.__gxx_personality_v0 direct module",
      "_Unwind_Resume plt dynamic",
      "_ZN1A3getEi.part.0 direct module",
      "__cxa_begin_catch plt dynamic",
      "__cxa_end_catch plt dynamic",
    ]);
    checkModuleReferences(p, pkg);
  });
});

describe("makePackage: refusals", () => {
  it("refuses a changed data layout, naming the variable", () => {
    const p = program(ORIG, withFix("static int counter;", "static long counter;"));
    const e = refusal(() => build(p));
    expect(e.message).toMatch(/^diff: refused:\n {2}fix\.o: counter: /);
  });

  it("refuses objects of another build: the proof of identity names the function and the difference", () => {
    // The running binary was built from a slightly different source than the objects claim.
    const p = program(ORIG, withFix("return helper(x, x); }", "return helper(x, x) + 1; }"), { targetFiles: withFix("return helper(x, x); }", "return helper(x, x + 1); }") });
    const e = refusal(() => build(p));
    expect(e.step).toBe("proof of identity");
    expect(e.message).toMatch(/^proof of identity: fix\.o: use_helper: (byte \+0x[0-9a-f]+ is 0x[0-9a-f]{2} in the object and 0x[0-9a-f]{2} in the target|\d+ bytes in the object, \d+ in the target \S+); the original objects are not the target's build/);
  });

  it("refuses a stripped target without its debug file, and uses the debug file found by build-id", () => {
    const p = program(ORIG, withFix("case 2: return 37;", "case 2: return 38;"));
    const stripped = `${p.target}.stripped`;
    execFileSync("strip", ["-o", stripped, p.target]);
    const debugRoot = scratch.path("debug");
    const id = /Build ID: ([0-9a-f]+)/.exec(run("readelf", ["-n", p.target]))![1];
    const e = refusal(() => build({ ...p, target: stripped }, { debugRoot }));
    expect(e.message).toBe(
      `target: ${stripped} has no .symtab (it is stripped) and its debug file ${debugRoot}/.build-id/${id.slice(0, 2)}/${id.slice(2)}.debug is not installed: the build needs the target's symbols (install its -dbgsym package, or give the unstripped binary)`,
    );
    fs.mkdirSync(path.join(debugRoot, ".build-id", id.slice(0, 2)), { recursive: true });
    execFileSync("objcopy", ["--only-keep-debug", p.target, path.join(debugRoot, ".build-id", id.slice(0, 2), `${id.slice(2)}.debug`)]);
    const fromDebug = build({ ...p, target: stripped }, { debugRoot }).pkg;
    const direct = build(p).pkg;
    expect(fromDebug.references).toEqual(direct.references);
    expect(fromDebug.functions).toEqual(direct.functions);
  });
});

describe("makePackage: replacement mode", () => {
  it("replaces the target's function by one written by hand, binding its references to the target", () => {
    const p = program(ORIG, ORIG);
    const src = scratch.write("greet_v2.c", '#include <stdio.h>\nextern int ext_global;\nint greet_v2(const char *who) { return printf("v2 %s %d\\n", who, ext_global); }\n');
    const obj = scratch.path("greet_v2.o");
    execFileSync("gcc", [...FLAGS, "-c", src, "-o", obj]);
    const r = makePackage(core, { target: p.target, patchId: "v2", replace: { object: obj, functions: [{ old: "greet", new: "greet_v2" }] } });
    const pkg = r.package;
    expect(pkg.functions.map((f) => [f.kind, f.name, pkg.symbols[f.symbol].name])).toEqual([["replace", "greet", "greet_v2"]]);
    expect(pkg.functions[0].original!.addr).toBe(readelfSymbols(p.target).get("greet")![0].value);
    expect(ref(pkg, "printf")).toMatchObject({ bind: "plt", pltEntry: pltEntries(p.target).get("printf") });
    expect(ref(pkg, "ext_global")).toMatchObject({ bind: "direct", scope: "module" });
    writePackageFile(scratch.path("v2.patch"), pkg);
  });

  it("refuses a clone or piece as the function to replace, and a name the target lacks", () => {
    const p = program(ORIG, ORIG);
    const obj = scratch.path("x.o");
    execFileSync("gcc", [...FLAGS, "-c", "-x", "c", "-", "-o", obj], { input: "int x(void) { return 1; }\n" });
    const e = refusal(() => makePackage(core, { target: p.target, patchId: "x", replace: { object: obj, functions: [{ old: "cold_split.cold", new: "x" }] } }));
    expect(e.message).toMatch(/^replace: cold_split\.cold is a piece or clone gcc made \(\.isra, \.constprop, \.part, \.cold\): its calling convention is the compiler's own/);
    expect(refusal(() => makePackage(core, { target: p.target, patchId: "x", replace: { object: obj, functions: [{ old: "nope", new: "x" }] } })).message).toBe(`replace: the target ${p.target} has no function nope`);
    expect(refusal(() => makePackage(core, { target: p.target, patchId: "x", replace: { object: obj, functions: [{ old: "greet", new: "y" }] } })).message).toBe(`replace: ${obj} defines no function y`);
  });
});

describe("patchc build through main()", () => {
  it("writes the package from two object directories; inspect reads it", async () => {
    const p = program(ORIG, withFix("case 2: return 37;", "case 2: return 38;"));
    const out = scratch.path("cli.patch");
    let err = "";
    let stdout = "";
    const io = { out: (t: string) => void (stdout += t), err: (t: string) => void (err += t), isTTY: false };
    expect(await main(["build", "--orig", p.original, "--patched", p.patched, "--target", p.target, "-o", out, "--description", "case 2"], io)).toBe(0);
    expect(err).toContain("replace table_switch (fix.o: ");
    expect(stdout).toMatch(/patch cli \(format 1\.0/);
    stdout = "";
    expect(await main(["inspect", out, "--json"], io)).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.functions.map((f: { name: string }) => f.name)).toEqual(["table_switch"]);
    expect(report.description).toBe("case 2");
    expect(report.signature.status).toBe("unsigned");

    // --sign KEY: the package carries an ed25519 signature that inspect --require-signed accepts.
    const key = generateKeyPairSync("ed25519");
    const priv = scratch.write("key.pem", key.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    const pub = scratch.write("pub.pem", key.publicKey.export({ type: "spki", format: "pem" }) as string);
    const signed = scratch.path("signed.patch");
    expect(await main(["build", "--orig", p.original, "--patched", p.patched, "--target", p.target, "-o", signed, "--sign", priv, "--json"], io)).toBe(0);
    stdout = "";
    expect(await main(["inspect", signed, "--json", "--require-signed", pub], io)).toBe(0);
    expect(JSON.parse(stdout).signature).toMatchObject({ status: "verified", algorithm: "ed25519" });
  });
});
