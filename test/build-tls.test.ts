// General- and local-dynamic TLS in an executable (src/build/identity.ts): objects compiled
// with -fPIC access __thread variables through __tls_get_addr (GD for a global, LD for
// statics); linked into an executable, PIE or not, the linker rewrites those sequences to
// LE (and GD of a library's variable to IE). The proof accepts the rewritten forms,
// checking the thread-pointer offset against the target's TLS symbol (readelf is the
// oracle), and the package binds the variables with the model its code uses and their
// offset in the target's TLS block.
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { diffBuilds } from "../src/build/build-diff.js";
import { BuildError } from "../src/build/errors.js";
import { proveIdentity } from "../src/build/identity.js";
import { makePackage } from "../src/build/make-package.js";
import { ObjectFile } from "../src/build/object-file.js";
import { pairObjects } from "../src/build/objects.js";
import { TargetImage } from "../src/build/target.js";
import type { PatchPackage } from "../src/format/model.js";
import { decodePackage } from "../src/format/reader.js";
import { writePackageFile } from "../src/format/writer.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch, run } from "./helpers/gcc.js";
import { thrown } from "./helpers/thrown.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

const SRC = `__thread int gvar = 3;
static __thread int svar;
static __thread int svar2;
int use(int x) { gvar += x; return gvar; }
int uses(int x) { svar += x; svar2 += 2 * x; return svar * svar2; }
int main(int c, char **v) { (void)v; return use(c) + uses(c); }
`;
const FIXED = SRC.replace("gvar += x;", "gvar += x + 1;").replace("svar2 += 2 * x;", "svar2 += 3 * x;");

let n = 0;
function program(link: string[], cflags: string[] = []) {
  const dir = scratch.path(`t${++n}`);
  for (const d of ["original", "patched"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const compile = (text: string, d: string) => {
    fs.writeFileSync(path.join(dir, "tls.c"), text);
    execFileSync("gcc", ["-O2", "-g", "-fPIC", "-ffunction-sections", "-fdata-sections", ...cflags, "-c", "tls.c", "-o", path.join(d, "tls.o")], { cwd: dir });
  };
  compile(SRC, path.join(dir, "original"));
  compile(FIXED, path.join(dir, "patched"));
  const target = path.join(dir, "target");
  execFileSync("gcc", [...link, "-Wl,--build-id", path.join(dir, "original", "tls.o"), "-o", target]);
  return { dir, original: path.join(dir, "original"), patched: path.join(dir, "patched"), target };
}

function build(p: { original: string; patched: string; target: string }): PatchPackage {
  const pairs = pairObjects(p.original, p.patched).pairs;
  const r = makePackage(core, { target: p.target, patchId: "tls-1", pairs, diff: diffBuilds(core, pairs) });
  const file = `${p.target}.patch`;
  return decodePackage(core, writePackageFile(file, r.package), file).model;
}

/** readelf's value of a TLS symbol (its offset in the TLS block). */
function tlsValue(target: string, name: string): bigint {
  for (const line of run("readelf", ["-sW", target]).split("\n")) {
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+TLS\s+\w+\s+\w+\s+\d+\s+(\S+)$/.exec(line);
    if (m && m[2] === name) return BigInt(`0x${m[1]}`);
  }
  throw new Error(`no TLS symbol ${name} in ${target}`);
}

/** The thread-pointer offset of a TLS symbol: st_value - the TLS segment's size rounded up to its alignment. */
function tpoff(target: string, name: string): bigint {
  const m = /^\s*TLS\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+\S+\s+(0x[0-9a-f]+)/m.exec(run("readelf", ["-lW", target]));
  const memsz = BigInt(m![1]);
  const align = BigInt(m![2]);
  return tlsValue(target, name) - ((memsz + align - 1n) / align) * align;
}

function objdump(target: string, fn: string): string {
  const text = run("objdump", ["-d", "--no-show-raw-insn", target]);
  const at = text.indexOf(`<${fn}>:\n`);
  return text.slice(at, text.indexOf("\n\n", at));
}

describe("GD/LD TLS rewritten by the linker in an executable", () => {
  for (const [kind, link, cflags] of [
    ["PIE", ["-pie"], []],
    ["non-PIE", ["-no-pie"], []],
    ["PIE, -fno-plt", ["-pie"], ["-fno-plt"]],
  ] as const) {
    it(`${kind}: the proof accepts GD -> LE and LD -> LE; the references say gd/ld and the block offset`, () => {
      const p = program([...link], [...cflags]);
      // The oracle: the linker did rewrite both sequences (no call of __tls_get_addr left).
      expect(objdump(p.target, "use")).toMatch(/mov\s+%fs:0x0,%rax\n.*lea\s+-0x[0-9a-f]+\(%rax\),%rax/);
      expect(objdump(p.target, "uses")).toMatch(/data16 data16 data16 (data16 )?mov %fs:0x0,%rax/);
      expect(run("objdump", ["-dr", path.join(p.original, "tls.o")])).toMatch(/R_X86_64_TLSGD\s+gvar-0x4[\s\S]*R_X86_64_TLSLD\s+svar-0x4/);
      const pkg = build(p);
      expect(pkg.functions.map((f) => `${f.kind} ${f.name}`).sort()).toEqual(["replace use", "replace uses"]);
      const tls = pkg.references.filter((r) => r.bind === "tls").map((r) => ({ name: r.name, model: r.tls!.model, offset: r.tls!.offset, scope: r.scope }));
      expect(tls.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
        { name: "gvar", model: "gd", offset: tlsValue(p.target, "gvar"), scope: "module" },
        { name: "svar", model: "ld", offset: tlsValue(p.target, "svar"), scope: "module" },
        { name: "svar2", model: "ld", offset: tlsValue(p.target, "svar2"), scope: "module" },
      ]);
      // The static variables are named by file and position, as every local.
      expect(pkg.references.find((r) => r.name === "svar")!.local).toEqual({ file: "tls.c", sympos: 1 });
      // The new code calls __tls_get_addr: bound by name in the process (ld.so defines it).
      expect(pkg.references.find((r) => r.name === "__tls_get_addr")).toMatchObject({ scope: "dynamic" });
    });
  }

  it("a thread-pointer offset that is not the variable's is refused, naming the function and both offsets", () => {
    const p = program(["-pie"]);
    // Change the displacement of the rewritten lea x@tpoff(%rax),%rax in the target's use().
    const bytes = fs.readFileSync(p.target);
    const target = new TargetImage(core, p.target);
    const use = target.find("use", false, undefined)!;
    const fileOff = target.elf.addrToOffset(use.sym.value, use.sym.size);
    target.close();
    const code = bytes.subarray(fileOff, fileOff + Number(use.sym.size));
    const at = Buffer.from(code).indexOf(Buffer.from([0x48, 0x8d, 0x80]));
    expect(at).toBeGreaterThan(0);
    const want = tpoff(p.target, "gvar");
    expect(BigInt(code.readInt32LE(at + 3))).toBe(want);
    code.writeInt32LE(Number(want) - 4, at + 3);
    fs.writeFileSync(p.target, bytes);
    const err = thrown(BuildError, () => build(p));
    expect(err.message).toBe(
      `proof of identity: tls.o: use: at +0x${(at - 9 + 4).toString(16)}: R_X86_64_TLSGD to gvar - 4: GD -> LE: the thread-pointer offset ${want - 4n} is not gvar's (${want}); the original objects are not the target's build (other sources, flags or version)`,
    );
  });

  it("GD of a shared library's variable becomes IE: the proof finds the TPOFF64 slot of it", () => {
    const dir = scratch.path("ie");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "lib.c"), "__thread int libvar = 5;\n");
    fs.writeFileSync(path.join(dir, "main.c"), "extern __thread int libvar;\nint get(int x) { return libvar + x; }\nint main(int c, char **v) { (void)v; return get(c); }\n");
    execFileSync("gcc", ["-O2", "-fPIC", "-shared", "lib.c", "-o", "libt.so"], { cwd: dir });
    execFileSync("gcc", ["-O2", "-fPIC", "-ffunction-sections", "-c", "main.c", "-o", "main.o"], { cwd: dir });
    execFileSync("gcc", ["-pie", "-Wl,--build-id", "main.o", "-L.", "-lt", "-o", "target"], { cwd: dir });
    expect(objdump(path.join(dir, "target"), "get")).toMatch(/mov\s+%fs:0x0,%rax\n.*add\s+0x[0-9a-f]+\(%rip\),%rax/);
    const target = new TargetImage(core, path.join(dir, "target"));
    const obj = new ObjectFile(core, path.join(dir, "main.o"), "main.o");
    try {
      const fn = obj.symbols.find((s) => s.name === "get")!;
      const t = target.find("get", false, undefined)!;
      const proof = proveIdentity(target, obj, fn, t.sym.value, t.sym.size);
      expect(proof.sha256).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      obj.close();
      target.close();
    }
  });
});
