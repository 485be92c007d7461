// The patch package container: a rich model written and read back; binutils (readelf -a,
// objdump -dr) accept the file and show the code, symbols and relocations; the Wasm core's
// ELF reader agrees with readelf on its layout.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { encodePackage, writePackageFile } from "../src/format/writer.js";
import { decodePackage, readPackageFile } from "../src/format/reader.js";
import type { PatchPackage } from "../src/format/model.js";
import { buildFixture, packageFromObject, type Fixture } from "./helpers/package-fixture.js";
import { run } from "./helpers/gcc.js";

const core = nodeCore();
let fx: Fixture;
let rich: PatchPackage;

/** The fixture's model plus everything real objects of this fixture do not exercise. */
function enrich(m: PatchPackage): PatchPackage {
  const r = structuredClone(m);
  r.description = "CVE-0000-0001: bounds check in checked() — ünïcode too";
  r.target.soname = "libfixture.so.1";
  r.dependencies = [{ patchId: "base-0", hash: "ab".repeat(32) }, { patchId: "base-1" }];
  r.functions[0].after = "base-1";
  const extra = (name: string, type: PatchPackage["symbols"][number]["type"]) => {
    r.symbols.push({ name, type, bind: "global", value: 0, size: 0 });
    return r.symbols.length - 1;
  };
  r.references.push(
    { symbol: extra("environ", "notype"), name: "environ", bind: "got", scope: "dynamic", type: "object", version: "GLIBC_2.2.5", library: "libc.so.6", gotSlot: 0x3fd8n },
    { symbol: extra("errno_tls", "tls"), name: "errno_tls", bind: "tls", scope: "dynamic", type: "tls", library: "libc.so.6", gotSlot: 0x3fe0n, tls: { model: "ie", offset: 0x10n } },
    { symbol: extra("shared_tls", "tls"), name: "shared_tls", bind: "tls", scope: "module", type: "tls", tls: { model: "gd", offset: 0x8n } },
    { symbol: extra("memcpy", "notype"), name: "memcpy", bind: "direct", scope: "dynamic", type: "ifunc", version: "GLIBC_2.14" },
    { symbol: extra("base_helper", "func"), name: "base_helper", bind: "direct", scope: "patch", type: "func", patch: "base-0" },
    { symbol: extra("counter2", "object"), name: "counter", local: { file: "other.c", sympos: 2 }, bind: "direct", scope: "module", type: "object", addr: 0xffff_ffff_ffff_fff0n },
  );
  return r;
}

beforeAll(() => {
  fx = buildFixture(core);
  rich = enrich(fx.model);
});
afterAll(() => fx?.scratch.remove());

describe("package round trip", () => {
  it("reads back exactly the model it was written from", () => {
    const bytes = encodePackage(rich);
    const back = decodePackage(core, bytes, "rich.patch");
    expect(back.model).toEqual(rich);
    expect(back.format).toEqual({ major: 1, minor: 0 });
    expect(back.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(back.seal.signature).toBeUndefined();
    // Deterministic: the same model gives the same bytes, and a re-encode of what was read too.
    expect(encodePackage(back.model)).toEqual(bytes);
  });

  it("carries the fixture's real content: pieces, jump table, TLS, PLT, locals, eh_frame", () => {
    const m = fx.model;
    expect(m.functions.map((f) => `${f.kind} ${f.name} ${f.pieces.map((p) => p.name).join(",")}`)).toEqual(["replace table_switch ", "replace checked checked.cold", "add audit "]);
    for (const f of m.functions) expect(f.fde).toBeDefined();
    expect(m.functions[1].pieces[0].original).toBeDefined();
    expect(m.functions[1].pieces[0].fde).toBeDefined();
    const refs = Object.fromEntries(m.references.map((r) => [r.name, `${r.bind} ${r.scope}${r.local ? ` ${r.local.file}#${r.local.sympos}` : ""}${r.tls ? ` ${r.tls.model}` : ""}`]));
    expect(refs).toMatchObject({ "helper.constprop.0": "direct module fix.c#1", printf: "plt dynamic", tls_counter: "tls module le", counter: "direct module fix.c#1" });
    // The jump table moves with its function: .rodata.table_switch relocated against .text.table_switch.
    const jt = m.sections.find((s) => s.name === ".rodata.table_switch")!;
    expect(jt.relocations.length).toBe(5);
    expect(new Set(jt.relocations.map((r) => m.sections[m.symbols[r.symbol].section!].name))).toEqual(new Set([".text.table_switch"]));
  });

  it("writes a file readelf -a and objdump -dr accept, showing the code and metadata", () => {
    const path = fx.scratch.path("rich.patch");
    writePackageFile(path, rich);
    const tool = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, args, { encoding: "utf8" });
      expect(r.status, `${cmd} ${args.join(" ")}: ${r.stderr}`).toBe(0);
      expect(r.stderr, `${cmd} ${args.join(" ")} complains`).toBe("");
      return r.stdout;
    };
    const elf = tool("readelf", ["-aW", "--debug-dump=frames", path]);
    expect(elf).toMatch(/Type:\s+REL \(Relocatable file\)/);
    expect(elf).toMatch(/Machine:\s+Advanced Micro Devices X86-64/);
    for (const name of [".text.table_switch", ".rela.text.table_switch", ".text.unlikely.checked", ".eh_frame", ".rela.eh_frame", ".patchc.meta", ".patchc.funcs", ".patchc.refs", ".patchc.seal"]) {
      expect(elf).toContain(` ${name} `);
    }
    expect(elf).toMatch(/FUNC\s+GLOBAL\s+DEFAULT\s+\d+\s+table_switch/);
    expect(elf).toMatch(/R_X86_64_PLT32\s+0+\s+printf - 4/);
    expect(elf).not.toMatch(/[Ww]arning|[Ee]rror/);
    expect(elf).toMatch(/FDE cie=00000000 pc=0+\.\.0+5c/); // table_switch's FDE, 0x5c bytes of code
    const dis = tool("objdump", ["-dr", path]);
    expect(dis).toMatch(/<table_switch>:/);
    expect(dis).toMatch(/<checked>:/);
    expect(dis).toMatch(/<checked\.cold>:/);
    expect(dis).toMatch(/<audit>:/);
    expect(dis).toMatch(/(call|jmp) .*\n\s+[0-9a-f]+: R_X86_64_PLT32\s+printf-0x4/);
    // The new string literal is in the package, the jump table's code too.
    expect(run("readelf", ["-p", ".rodata.checked.str1.1", path])).toContain("value: %d");
    // The code bytes are those of the object they came from.
    const ours = run("objdump", ["-d", "-j", ".text.table_switch", path]).split("\n").filter((l) => /^\s+[0-9a-f]+:\t/.test(l));
    const orig = run("objdump", ["-d", "-j", ".text.table_switch", fx.object]).split("\n").filter((l) => /^\s+[0-9a-f]+:\t/.test(l));
    expect(ours.length).toBeGreaterThan(5);
    expect(ours).toEqual(orig);
  });

  it("is laid out as readelf sees it (section offsets and sizes through the core's ELF reader)", () => {
    const path = fx.scratch.path("rich.patch");
    const bytes = readFileSync(path);
    const r = new ElfReader(core, bytes, path);
    try {
      const table = run("readelf", ["-SW", path]);
      for (const s of r.sections().slice(1)) {
        const m = new RegExp(`\\]\\s+${s.name.replace(/\./g, "\\.")}\\s+\\S+\\s+[0-9a-f]+\\s+([0-9a-f]+)\\s+([0-9a-f]+)`).exec(table);
        expect(m, s.name).not.toBeNull();
        expect([BigInt("0x" + m![1]), BigInt("0x" + m![2])]).toEqual([s.offset, s.size]);
      }
    } finally {
      r.close();
    }
    expect(readPackageFile(core, path).model).toEqual(rich);
  });

  it("writes an empty package (no functions) and one with a single added function", () => {
    const empty: PatchPackage = { patchId: "noop", target: { buildId: "00", path: "/bin/true", type: "dyn" }, dependencies: [], sections: [], symbols: [], functions: [], references: [] };
    expect(decodePackage(core, encodePackage(empty), "empty").model).toEqual(empty);
    const code = new Uint8Array([0xb8, 0x2a, 0, 0, 0, 0xc3]); // mov eax, 42; ret
    const one: PatchPackage = {
      ...empty,
      patchId: "one",
      sections: [{ name: ".text.answer", type: "progbits", flags: 6, align: 16, entsize: 0, size: code.length, data: code, relocations: [] }],
      symbols: [{ name: "answer", type: "func", bind: "global", section: 0, value: 0, size: 6, visibility: "hidden" }],
      functions: [{ kind: "add", name: "answer", symbol: 0, pieces: [] }],
    };
    expect(decodePackage(core, encodePackage(one), "one").model).toEqual(one);
  });

  it("carries a C++ method's exception tables: its LSDA, and the personality through the target", () => {
    const src = fx.scratch.write("acct.cc", `
#include <stdexcept>
#include <cstdio>
struct Acct { int bal; int withdraw(int x); };
int Acct::withdraw(int x) {
  try { if (x > bal) throw std::runtime_error("overdrawn"); bal -= x; }
  catch (const std::exception &e) { std::puts(e.what()); return -1; }
  return bal;
}
int main(int argc, char **) { Acct a{10}; return a.withdraw(argc * 20); }
`);
    const flags = ["-O2", "-fPIE", "-ffunction-sections", "-fdata-sections"];
    const target = fx.scratch.path("acct");
    const obj = fx.scratch.path("acct.o");
    run("g++", [...flags, "-pie", "-Wl,--build-id", src, "-o", target]);
    run("g++", [...flags, "-c", src, "-o", obj]);
    const fn = "_ZN4Acct8withdrawEi";
    const m = packageFromObject(core, obj, target, { patchId: "acct-1", keep: [`.text.${fn}`, `.text.unlikely.${fn}`, `.gcc_except_table.${fn}`, `.rodata.${fn}.str1.1`], replace: [fn], add: [] });
    expect(m.functions[0].pieces.map((p) => p.name)).toEqual([`${fn}.cold`]);
    expect(m.functions[0].fde).toBeDefined();
    expect(m.functions[0].pieces[0].fde).toBeDefined();
    const personality = m.references.find((r) => r.name === "DW.ref.__gxx_personality_v0")!;
    expect(personality).toMatchObject({ bind: "direct", scope: "module", type: "object" });
    expect(m.references.find((r) => r.name === "__cxa_throw")).toMatchObject({ bind: "plt", scope: "dynamic" });
    const path = fx.scratch.path("acct.patch");
    writePackageFile(path, m);
    expect(readPackageFile(core, path).model).toEqual(m);
    const frames = run("readelf", ["--debug-dump=frames", path]);
    expect(frames).toMatch(/Augmentation:\s+"zPLR"/);
    expect(frames).toMatch(/Augmentation data:\s+[0-9a-f ]+\n/);
    expect(run("readelf", ["-rW", path])).toMatch(/R_X86_64_PC32\s+0+\s+\.gcc_except_table\._ZN4Acct8withdrawEi \+ 0/);
    expect(run("objdump", ["-dr", "-C", path])).toMatch(/<Acct::withdraw\(int\)>:/);
  });
});
