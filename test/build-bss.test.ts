// The proof of identity for references into .bss (src/build/identity.ts): a zero-initialised
// variable's section is SHT_NOBITS, with no bytes in the object nor in the target's file, so
// its reference is proven by the variable itself: the target's symbol of that name (a
// static by its STT_FILE and position, as the package binds it), at the address the target's
// code uses. Non-PIE code takes the address with R_X86_64_32 (section + 0), PIE code with
// R_X86_64_PC32. readelf is the oracle for the addresses; a target whose code refers to
// another variable is refused.
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { diffBuilds } from "../src/build/build-diff.js";
import { BuildError } from "../src/build/errors.js";
import { makePackage } from "../src/build/make-package.js";
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

const SRC = `int gcount;
static int other;
int *bump(void) { static int hits; hits++; return &hits; }
int *bumpg(void) { gcount++; return &gcount; }
int *peek(void) { return &other; }
`;
const MAIN = `int *bump(void); int *bumpg(void); int *peek(void);
int main(void) { return *bump() + *bumpg() + *peek(); }
`;
const FIXED = SRC.replace("hits++;", "hits += 2;").replace("gcount++;", "gcount += 2;");

let n = 0;
function program(pie: boolean) {
  const dir = scratch.path(`b${++n}`);
  for (const d of ["original", "patched"]) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const cflags = ["-O2", "-g", pie ? "-fPIE" : "-fno-PIE", "-ffunction-sections", "-fdata-sections"];
  const compile = (text: string, d: string) => {
    fs.writeFileSync(path.join(dir, "m.c"), text);
    fs.writeFileSync(path.join(dir, "main.c"), MAIN);
    for (const f of ["m", "main"]) execFileSync("gcc", [...cflags, "-c", `${f}.c`, "-o", path.join(d, `${f}.o`)], { cwd: dir });
  };
  compile(SRC, path.join(dir, "original"));
  compile(FIXED, path.join(dir, "patched"));
  const target = path.join(dir, "target");
  const objs = ["m.o", "main.o"].map((f) => path.join(dir, "original", f));
  execFileSync("gcc", [pie ? "-pie" : "-no-pie", "-Wl,--build-id", ...objs, "-o", target]);
  return { dir, original: path.join(dir, "original"), patched: path.join(dir, "patched"), target };
}

function build(p: { original: string; patched: string; target: string }): PatchPackage {
  const pairs = pairObjects(p.original, p.patched).pairs;
  const r = makePackage(core, { target: p.target, patchId: "bss-1", pairs, diff: diffBuilds(core, pairs) });
  const file = `${p.target}.patch`;
  return decodePackage(core, writePackageFile(file, r.package), file).model;
}

/** readelf's value and section of a symbol (a local: the first of that name). */
function symbol(target: string, name: string): { value: bigint; section: string } {
  const sections = new Map<string, string>();
  for (const line of run("readelf", ["-SW", target]).split("\n")) {
    const m = /^\s*\[\s*(\d+)\]\s+(\S+)/.exec(line);
    if (m) sections.set(m[1], m[2]);
  }
  for (const line of run("readelf", ["-sW", target]).split("\n")) {
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+OBJECT\s+\w+\s+\w+\s+(\d+)\s+(\S+)$/.exec(line);
    if (m && m[3] === name) return { value: BigInt(`0x${m[1]}`), section: sections.get(m[2]) ?? m[2] };
  }
  throw new Error(`no object ${name} in ${target}`);
}

function relocs(obj: string, fn: string): string {
  const text = run("objdump", ["-dr", obj]);
  const at = text.indexOf(`<${fn}>:\n`);
  return text.slice(at, text.indexOf("\n\n", at));
}

describe("proof of identity: references into .bss", () => {
  for (const pie of [false, true]) {
    const kind = pie ? "PIE (R_X86_64_PC32)" : "non-PIE (R_X86_64_32)";
    it(`${kind}: a static local and a global in .bss are proven by the variable; the package binds them`, () => {
      const p = program(pie);
      // The oracle: the object does refer to the sections of the variables, which are in .bss.
      const reloc = pie ? "R_X86_64_PC32" : "R_X86_64_32";
      expect(relocs(path.join(p.original, "m.o"), "bump")).toMatch(new RegExp(`${reloc}\\s+\\.bss\\.hits\\.0`));
      expect(relocs(path.join(p.original, "m.o"), "bumpg")).toMatch(new RegExp(`${reloc}S?\\s+gcount`));
      expect(symbol(p.target, "hits.0").section).toBe(".bss");
      expect(symbol(p.target, "gcount").section).toBe(".bss");
      const pkg = build(p);
      expect(pkg.functions.map((f) => `${f.kind} ${f.name}`).sort()).toEqual(["replace bump", "replace bumpg"]);
      const hits = pkg.references.find((r) => r.name === "hits.0")!;
      expect(hits).toMatchObject({ scope: "module", addr: symbol(p.target, "hits.0").value, local: { file: "m.c", sympos: 1 } });
      expect(pkg.references.find((r) => r.name === "gcount")).toMatchObject({ scope: "module", addr: symbol(p.target, "gcount").value });
    });
  }

  for (const pie of [false, true]) {
    it(`${pie ? "PIE" : "non-PIE"}: a target whose code refers to another .bss variable is refused, naming both addresses`, () => {
      const p = program(pie);
      const hits = symbol(p.target, "hits.0").value;
      const other = symbol(p.target, "other").value;
      // The target's bump() refers to `other` where the object refers to hits.0: rewrite
      // the first field that holds hits.0's address (absolute, or rip-relative) in the file.
      const bytes = fs.readFileSync(p.target);
      const target = new TargetImage(core, p.target);
      const fn = target.find("bump", false, undefined)!;
      const fileOff = target.elf.addrToOffset(fn.sym.value, fn.sym.size);
      target.close();
      const code = bytes.subarray(fileOff, fileOff + Number(fn.sym.size));
      let at = -1;
      let end = 0n; // P - A for the field: the end of the instruction for rip-relative
      for (let i = 0; i + 4 <= code.length && at < 0; i++) {
        const v = BigInt(code.readInt32LE(i));
        if (!pie && BigInt(code.readUInt32LE(i)) === hits) at = i;
        for (const tail of [4n, 5n, 8n]) {
          if (pie && at < 0 && v + fn.sym.value + BigInt(i) + tail === hits) {
            at = i;
            end = tail;
          }
        }
      }
      expect(at).toBeGreaterThan(0);
      if (pie) code.writeInt32LE(Number(other - fn.sym.value - BigInt(at) - end), at);
      else code.writeUInt32LE(Number(other), at);
      fs.writeFileSync(p.target, bytes);
      const err = thrown(BuildError, () => build(p));
      expect(err.message).toMatch(
        new RegExp(
          `^proof of identity: m\\.o: bump: at \\+0x${at.toString(16)}: ${pie ? "R_X86_64_PC32" : "R_X86_64_32"} to \\.bss\\.hits\\.0 [+-] \\d+: the target has 0x${other.toString(16)} there, not 0x${hits.toString(16)} \\(\\.bss\\.hits\\.0 with hits\\.0 at 0x${hits.toString(16)}\\); the original objects are not the target's build`,
        ),
      );
    });
  }
});
