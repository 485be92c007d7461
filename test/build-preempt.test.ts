// Preemptible symbols of a shared-library target (src/build/target.ts, "Preemption";
// src/build/assemble.ts bindPreemptible): a global of default visibility that a library
// exports may be defined elsewhere at run time (the executable's COPY of a variable,
// LD_PRELOAD), and the library reaches it through its GOT slot or PLT entry. The package
// must bind the new code's references the same way, never to the library's own
// definition; hidden symbols and every symbol of a -Bsymbolic library bind directly.
// Oracles: readelf -r (the GLOB_DAT / JUMP_SLOT / COPY relocations), readelf -s (the
// symbols' values), objdump -d (the PLT entry); the bindings read with `patchc inspect --json`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../src/cli/main.js";
import { Scratch, run } from "./helpers/gcc.js";

const scratch = new Scratch();
afterAll(() => scratch.remove());

const LIB = `int lib_calls;
__attribute__((visibility("hidden"))) int lib_hidden;
__attribute__((noinline)) int lib_helper(int x) { return x + 3; }
__attribute__((noinline)) int lib_other(int x) { return x - 3; }
__attribute__((noinline)) int lib_answer(int x) {
  lib_calls++;
  lib_hidden++;
  return lib_helper(x) * 2 + 1;
}
`;
// The fix also calls lib_other, which the library never called: it has no slot for it.
const FIXED = LIB.replace("* 2 + 1;", "* 2 + lib_other(1000);");
const MAIN = `extern int lib_calls;
int lib_answer(int x);
int main(void) { return lib_answer(lib_calls); }
`;
const FLAGS = ["-O2", "-g0", "-ffunction-sections", "-fdata-sections"];

async function patchc(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t), isTTY: false });
  return { code, out, err };
}

interface Lib {
  dir: string;
  lib: string;
  original: string;
  patched: string;
}

/** libfix.so from LIB (objects in original/, FIXED's in patched/), linked with `ldflags`. */
function library(name: string, ldflags: string[], patchedFlags = ["-fPIC"]): Lib {
  const dir = scratch.path(name);
  for (const d of ["original", "patched"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(path.join(dir, "original", "libfix.c"), LIB);
  fs.writeFileSync(path.join(dir, "patched", "libfix.c"), FIXED);
  execFileSync("gcc", [...FLAGS, "-fPIC", "-c", "libfix.c", "-o", "libfix.o"], { cwd: path.join(dir, "original") });
  execFileSync("gcc", [...FLAGS, ...patchedFlags, "-c", "libfix.c", "-o", "libfix.o"], { cwd: path.join(dir, "patched") });
  fs.rmSync(path.join(dir, "original", "libfix.c"));
  fs.rmSync(path.join(dir, "patched", "libfix.c"));
  const lib = path.join(dir, "libfix.so");
  execFileSync("gcc", ["-shared", "-Wl,--build-id", "-Wl,-soname,libfix.so", ...ldflags, path.join(dir, "original", "libfix.o"), "-o", lib]);
  return { dir, lib, original: path.join(dir, "original"), patched: path.join(dir, "patched") };
}

async function build(l: Lib): Promise<{ code: number; err: string; refs: Array<Record<string, unknown>> }> {
  const out = path.join(l.dir, "fix.patch");
  const b = await patchc("build", "--orig", l.original, "--patched", l.patched, "--target", l.lib, "-o", out, "--id", "fix-1");
  if (b.code !== 0) return { code: b.code, err: b.err, refs: [] };
  const i = await patchc("inspect", "--json", out);
  expect(i.code).toBe(0);
  return { code: 0, err: "", refs: JSON.parse(i.out).references };
}

/** readelf -rW: the r_offset of the `type` relocation naming `name`. */
function dynReloc(file: string, type: string, name: string): string | undefined {
  for (const line of run("readelf", ["-rW", file]).split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[2] === type && f[4] === name) return `0x${BigInt(`0x${f[0]}`).toString(16)}`;
  }
  return undefined;
}

/** readelf -sW (.symtab): the value of `name`. */
function symValue(file: string, name: string): string {
  for (const line of run("readelf", ["-sW", file]).split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[7] === name && f[6] !== "UND") return `0x${BigInt(`0x${f[1]}`).toString(16)}`;
  }
  throw new Error(`no symbol ${name} in ${file}`);
}

/** objdump -d: the address of `<name@plt>`. */
function pltEntry(file: string, name: string): string | undefined {
  const m = new RegExp(`^([0-9a-f]+) <${name}@plt>:`, "m").exec(run("objdump", ["-d", file]));
  return m ? `0x${BigInt(`0x${m[1]}`).toString(16)}` : undefined;
}

const ref = (refs: Array<Record<string, unknown>>, name: string) => refs.filter((r) => r.name === name).map(({ relocations: _, ...r }) => r);

describe("a shared-library target: preemptible symbols bind as the library reaches them", () => {
  let plain: Lib;
  let built: Awaited<ReturnType<typeof build>>;
  beforeAll(async () => {
    plain = library("plain", []);
    built = await build(plain);
  });

  it("a variable the executable COPY-relocates: through the library's GLOB_DAT slot, never its own definition", () => {
    // The run-time situation: the executable's COPY takes lib_calls, the library's GOT slot points there.
    fs.writeFileSync(path.join(plain.dir, "main.c"), MAIN);
    execFileSync("gcc", ["-O2", "-fno-PIE", "-no-pie", "main.c", "-L.", "-lfix", "-o", "main"], { cwd: plain.dir });
    expect(dynReloc(path.join(plain.dir, "main"), "R_X86_64_COPY", "lib_calls")).toBeDefined();
    expect(built.code).toBe(0);
    const slot = dynReloc(plain.lib, "R_X86_64_GLOB_DAT", "lib_calls");
    expect(slot).toBeDefined();
    expect(ref(built.refs, "lib_calls")).toEqual([{ name: "lib_calls", bind: "got", scope: "dynamic", type: "object", library: "libfix.so", gotSlot: slot }]);
  });

  it("a hidden variable of the library: directly, at its definition (a local of the linked file after ld's unnamed STT_FILE: found by name, checked at its address)", () => {
    expect(ref(built.refs, "lib_hidden")).toEqual([{ name: "lib_hidden", bind: "direct", scope: "module", type: "object", addr: symValue(plain.lib, "lib_hidden") }]);
  });

  it("a preemptible function the new code calls: through the library's PLT entry (its JUMP_SLOT)", () => {
    const plt = pltEntry(plain.lib, "lib_helper");
    expect(plt).toBeDefined();
    expect(ref(built.refs, "lib_helper")).toEqual([
      { name: "lib_helper", bind: "plt", scope: "dynamic", type: "func", library: "libfix.so", pltEntry: plt, gotSlot: dynReloc(plain.lib, "R_X86_64_JUMP_SLOT", "lib_helper") },
    ]);
  });

  it("a library linked with -Bsymbolic: its own definitions are final, bound directly", async () => {
    const l = library("symbolic", ["-Wl,-Bsymbolic"]);
    expect(run("readelf", ["-dW", l.lib])).toMatch(/\(FLAGS\)\s+SYMBOLIC|\(SYMBOLIC\)/);
    expect(dynReloc(l.lib, "R_X86_64_GLOB_DAT", "lib_calls")).toBeUndefined();
    const b = await build(l);
    expect(b.err).toBe("");
    expect(ref(b.refs, "lib_calls")).toEqual([{ name: "lib_calls", bind: "direct", scope: "module", type: "object", addr: symValue(l.lib, "lib_calls") }]);
    expect(ref(b.refs, "lib_helper")).toEqual([{ name: "lib_helper", bind: "direct", scope: "module", type: "func", addr: symValue(l.lib, "lib_helper") }]);
    expect(ref(b.refs, "lib_other")).toEqual([{ name: "lib_other", bind: "direct", scope: "module", type: "func", addr: symValue(l.lib, "lib_other") }]);
  });

  it("a preemptible function the library has no slot for: looked up by name (and its version) in the process's search order", async () => {
    expect(dynReloc(plain.lib, "R_X86_64_JUMP_SLOT", "lib_other")).toBeUndefined();
    expect(dynReloc(plain.lib, "R_X86_64_GLOB_DAT", "lib_other")).toBeUndefined();
    expect(ref(built.refs, "lib_other")).toEqual([{ name: "lib_other", bind: "direct", scope: "dynamic", type: "func", library: "libfix.so" }]);
    const dir = scratch.path("versioned");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "v.map"), "FIX_1 { global: lib_*; local: *; };\n");
    const l = library("versioned", [`-Wl,--version-script=${path.join(dir, "v.map")}`]);
    expect(run("readelf", ["--dyn-syms", "-W", l.lib])).toMatch(/lib_other@@FIX_1/);
    const b = await build(l);
    expect(b.err).toBe("");
    expect(ref(b.refs, "lib_other")).toEqual([{ name: "lib_other", bind: "direct", scope: "dynamic", type: "func", version: "FIX_1", library: "libfix.so" }]);
    const slot = dynReloc(l.lib, "R_X86_64_GLOB_DAT", "lib_calls@@FIX_1");
    expect(slot).toBeDefined();
    expect(ref(b.refs, "lib_calls")).toEqual([{ name: "lib_calls", bind: "got", scope: "dynamic", type: "object", version: "FIX_1", library: "libfix.so", gotSlot: slot }]);
  });

  it("new code reaching a preemptible variable PC-relative (compiled -fPIE, not -fPIC): refused with the reason", async () => {
    const l = library("pie", [], ["-fPIE"]);
    const b = await build(l);
    expect(b.code).toBe(1);
    expect(b.err).toContain(
      `libfix.o: lib_calls is preemptible in the shared library ${l.lib} (global, default visibility, exported, no -Bsymbolic): at run time its live definition may be another module's (the executable's COPY, an LD_PRELOAD object), which the library reaches through its GOT; the new code refers to it with a direct PC-relative R_X86_64_PC32, which cannot go through that slot`,
    );
    expect(fs.existsSync(path.join(l.dir, "fix.patch"))).toBe(false);
  });
});
