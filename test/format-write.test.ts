// Writing packages: every rule of the model refused with the file, the function (or
// reference, section, symbol) and the reason; atomic writes that leave nothing behind on
// any error, and never a partial file at the destination.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { encodePackage, writePackageFile, type WriteFs } from "../src/format/writer.js";
import { PackageError } from "../src/format/errors.js";
import type { PatchPackage } from "../src/format/model.js";
import { buildFixture, type Fixture } from "./helpers/package-fixture.js";
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { thrown as thrownBy } from "./helpers/thrown.js";

const core = nodeCore();
let fx: Fixture;
let dir: string;

beforeAll(() => {
  fx = buildFixture(core);
  dir = fx.scratch.path("out");
  mkdirSync(dir);
});
afterAll(() => fx?.scratch.remove());

const thrown = (fn: () => unknown): PackageError => thrownBy(PackageError, fn);

/** fx.model changed by `change`. */
function variant(change: (m: PatchPackage) => void): PatchPackage {
  const m = structuredClone(fx.model);
  change(m);
  return m;
}

describe("the writer refuses a bad model, naming the file, what is wrong and why", () => {
  const sym = (m: PatchPackage, name: string) => m.symbols.findIndex((s) => s.name === name);
  const cases: Array<[string, (m: PatchPackage) => void, (m: PatchPackage) => string]> = [
    ["missing site bytes", (m) => (m.functions[0].original!.site = new Uint8Array(0)), (f) => "function table_switch: the expected bytes at the patch site are missing"],
    ["more site bytes than the function", (m) => (m.functions[0].original!.size = 4n), (f) => "function table_switch: 16 expected site bytes for a function of 4 bytes"],
    ["no original", (m) => delete m.functions[1].original, (f) => "function checked: a replaced function needs its original (address, size, expected site bytes)"],
    ["bad sympos", (m) => (m.functions[1].local = { file: "fix.c", sympos: 0 }), (f) => "function checked (fix.c #0): sympos 0 is not a 1-based position"],
    ["replaced twice", (m) => Object.assign(m.functions[2], { kind: "replace", name: "table_switch", original: m.functions[0].original }), (f) => "function table_switch: replaced twice"],
    ["new code not a function", (m) => (m.functions[2].symbol = sym(m, "audit_count")), (f) => `function audit: new code symbol ${sym(f, "audit_count")} (audit_count) is not a function defined in the package`],
    ["added with an original", (m) => (m.functions[2].original = m.functions[0].original), (f) => "function audit: an added function has no original"],
    ["supersedes an unknown patch", (m) => (m.functions[0].after = "fix-0"), (f) => "function table_switch: supersedes patch fix-0, which is not among the dependencies"],
    ["piece with nothing", (m) => m.functions[1].pieces.push({ kind: "part", name: "checked.part.0" }), (f) => "function checked: piece checked.part.0: neither a new piece nor an original one"],
    ["FDE of another function", (m) => (m.functions[0].fde = m.functions[2].fde), (f) => `function table_switch: the FDE at .eh_frame+0x${f.functions[2].fde!.offset.toString(16)} does not cover the function's code section`],
    ["unbound undefined symbol", (m) => m.references.splice(m.references.findIndex((r) => r.name === "printf"), 1), (f) => `symbol ${sym(f, "printf")} (printf): undefined and bound by no reference: apply could not resolve it`],
    ["GOT binding without a slot", (m) => Object.assign(m.references.find((r) => r.name === "printf")!, { bind: "got", gotSlot: undefined }), (f) => "reference printf: bound through the target's GOT but no GOT slot given"],
    ["TLS without model", (m) => delete m.references.find((r) => r.name === "tls_counter")!.tls, (f) => "reference tls_counter: a TLS reference needs its model and offset"],
    ["TLS reference used as data", (m) => (m.sections.find((x) => x.name === ".text.audit")!.relocations.find((r) => r.type === 23)!.type = 2), (f) => `section ${f.sections.findIndex((x) => x.name === ".text.audit")} (.text.audit): relocation 1 at 0xc: R_X86_64_PC32 refers to the TLS variable tls_counter as if it were an ordinary symbol`],
    ["TLS access of another model", (m) => (m.references.find((r) => r.name === "tls_counter")!.tls!.model = "ie"), (f) => `section ${f.sections.findIndex((x) => x.name === ".text.audit")} (.text.audit): relocation 1 at 0xc: R_X86_64_TPOFF32 is a LE access, but reference tls_counter says IE`],
    ["TLS relocation to an ordinary symbol", (m) => (m.sections.find((x) => x.name === ".text.audit")!.relocations[0].type = 22), (f) => `section ${f.sections.findIndex((x) => x.name === ".text.audit")} (.text.audit): relocation 0 at 0x2: R_X86_64_GOTTPOFF refers to counter, which is not bound as a TLS variable`],
    ["module reference without address", (m) => delete m.references.find((r) => r.name === "report")!.addr, (f) => "reference report: a direct reference into the target module needs its address"],
    ["bound twice", (m) => m.references.push({ ...m.references[0] }), (f) => `reference ${f.references[0].name}${f.references[0].local ? ` (${f.references[0].local.file} #${f.references[0].local.sympos})` : ""}: symbol ${f.references[0].symbol} is bound twice`],
    ["binding a defined symbol", (m) => (m.references[0].symbol = sym(m, "audit")), (f) => `reference ${f.references[0].name}${f.references[0].local ? ` (${f.references[0].local.file} #${f.references[0].local.sympos})` : ""}: symbol ${sym(f, "audit")} (audit) is defined in the package; only undefined symbols bind to the target`],
    ["writable code", (m) => (m.sections[0].flags |= 1), (f) => `section 0 (${f.sections[0].name}): writable and executable: patch memory is never both`],
    ["TLS section", (m) => (m.sections[0].flags |= 0x400), (f) => `section 0 (${f.sections[0].name}): flags 0x406 outside WRITE|ALLOC|EXECINSTR|MERGE|STRINGS (TLS and group sections cannot be in a package)`],
    ["short data", (m) => (m.sections[0].data = m.sections[0].data!.subarray(1)), (f) => `section 0 (${f.sections[0].name}): data of ${f.sections[0].size - 1} bytes for a size of ${f.sections[0].size}`],
    ["dynamic relocation", (m) => (m.sections[0].relocations[0].type = 6), (f) => `section 0 (${f.sections[0].name}): relocation 0 at 0x${f.sections[0].relocations[0].offset.toString(16)}: type 6 is not an x86-64 relocation of relocatable objects`],
    ["relocation past the end", (m) => (m.sections[0].relocations[0].offset = m.sections[0].size - 2), (f) => `section 0 (${f.sections[0].name}): relocation 0 at 0x${(f.sections[0].size - 2).toString(16)}: R_X86_64_PC32 patches 4 bytes past the end of the section (${f.sections[0].size} bytes)`],
    ["reserved section name", (m) => (m.sections[0].name = ".patchc.meta"), (f) => "section 0 (.patchc.meta): the name is reserved for the container's own sections"],
    ["symbol past its section", (m) => (m.symbols[sym(m, "audit")].size = 1000), (f) => `symbol ${sym(f, "audit")} (audit): 0x0 + 1000 bytes run past the end of .text.audit (32 bytes)`],
    ["defined TLS", (m) => (m.symbols[sym(m, "audit_count")].type = "tls"), (f) => `symbol ${sym(f, "audit_count")} (audit_count): a package cannot define TLS variables`],
    ["bad patch id", (m) => (m.patchId = "-x"), (f) => 'patch id: "-x" is not 1-64 characters of [A-Za-z0-9._+-] starting with a letter or digit'],
    ["bad build-id", (m) => (m.target.buildId = "ABC"), (f) => 'target: build-id "ABC" is not 1-64 bytes of lowercase hex'],
    ["self dependency", (m) => m.dependencies.push({ patchId: m.patchId }), (f) => "dependency fix-1: a patch cannot depend on itself"],
    ["NUL in a name", (m) => (m.description = "a\0b"), (f) => "description: description contains a NUL character"],
  ];
  for (const [what, change, reason] of cases) {
    it(what, () => {
      const path = `${dir}/${what.replace(/ /g, "-")}.patch`;
      const e = thrown(() => writePackageFile(path, variant(change)));
      expect(e.message).toBe(`${path}: ${reason(fx.model)}`);
      expect(readdirSync(dir)).toEqual([]);
    });
  }
});

describe("atomic write", () => {
  const listing = () => readdirSync(dir).sort();

  it("writes the exact bytes, leaves no temporary file, replaces an existing package", () => {
    const path = `${dir}/fix.patch`;
    writeFileSync(path, "old contents");
    const bytes = writePackageFile(path, fx.model);
    expect(new Uint8Array(readFileSync(path))).toEqual(encodePackage(fx.model));
    expect(bytes).toEqual(encodePackage(fx.model));
    expect(listing()).toEqual(["fix.patch"]);
    expect(statSync(path).mode & 0o777).toBe(0o644 & ~process.umask());
  });

  it("keeps the existing file and leaves nothing behind when the model is refused", () => {
    const path = `${dir}/fix.patch`;
    const before = readFileSync(path);
    thrown(() => writePackageFile(path, variant((m) => (m.functions[0].original!.site = new Uint8Array(0)))));
    expect(readFileSync(path)).toEqual(before);
    expect(listing()).toEqual(["fix.patch"]);
  });

  it("removes its temporary file when the rename fails (the destination is a directory)", () => {
    const path = `${dir}/taken`;
    mkdirSync(path);
    const e = thrown(() => writePackageFile(path, fx.model));
    expect(e.message).toMatch(new RegExp(`^${path}: cannot write the package: (EISDIR|EEXIST|ENOTEMPTY)`));
    expect(listing()).toEqual(["fix.patch", "taken"]);
    expect(readdirSync(path)).toEqual([]);
  });

  it("creates nothing in a directory that does not exist", () => {
    const path = `${dir}/missing/fix.patch`;
    const e = thrown(() => writePackageFile(path, fx.model));
    expect(e.message).toMatch(new RegExp(`^${path}: cannot write the package: ENOENT`));
    expect(listing()).toEqual(["fix.patch", "taken"]);
  });

  // A file system that fails at one step, as a full disk or an I/O error would.
  const failing = (step: keyof WriteFs, code: string): WriteFs => {
    const real: WriteFs = { openSync, writeSync: (fd, d, o, l) => writeSync(fd, d, o, Math.min(l, 1000)), fsyncSync, closeSync, renameSync, unlinkSync };
    let writes = 0;
    return {
      ...real,
      [step]: (...args: unknown[]) => {
        if (step === "writeSync" && writes++ < 1) return (real.writeSync as (...a: unknown[]) => number)(...args); // a partial write first
        throw Object.assign(new Error(`${code}: injected failure, ${step}`), { code });
      },
    };
  };
  for (const [step, code] of [["writeSync", "ENOSPC"], ["fsyncSync", "EIO"], ["closeSync", "EIO"], ["renameSync", "EXDEV"]] as const) {
    it(`removes its temporary file when ${step} fails (${code}) and keeps the old package`, () => {
      const path = `${dir}/fix.patch`;
      const before = readFileSync(path);
      const e = thrown(() => writePackageFile(path, { ...fx.model, patchId: "fix-2" }, {}, failing(step, code)));
      expect(e.message).toBe(`${path}: cannot write the package: ${code}: injected failure, ${step}`);
      expect(listing()).toEqual(["fix.patch", "taken"]);
      expect(readFileSync(path)).toEqual(before);
    });
  }
});
