// The ABI cannot drift silently: the built core.wasm (and its portable build, for hosts
// without SIMD) is parsed with @webassemblyjs/wasm-parser and its imports and exports,
// names and Wasm signatures, are compared both ways with docs/core-abi.md's tables.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { compareAbi, parseAbiDoc, parseSignature, readAbiDoc, wasmAbi } from "./helpers/abi-doc.js";

const DOC = new URL("../docs/core-abi.md", import.meta.url).pathname;
const BUILDS = ["build/core.wasm", "build/core-portable.wasm"].map((p) => new URL("../" + p, import.meta.url).pathname);

describe("docs/core-abi.md is core.wasm's ABI", () => {
  const doc = readAbiDoc(DOC);

  it("follows its own format and documents the essentials", () => {
    expect(doc.errors).toEqual([]);
    const names = doc.exports.map((e) => e.name);
    for (const n of ["memory", "alloc", "free", "core_error_code", "core_error_message", "core_error_message_len", "core_abi_version"]) {
      expect(names).toContain(n);
    }
    expect(doc.imports.map((e) => `${e.name} ${e.sig}`)).toEqual(["env.abort (i32, i32, i32, i32)"]);
  });

  for (const path of BUILDS) {
    const name = path.replace(/.*\/build\//, "build/");
    it(`${name}: imports only env.abort`, () => {
      const abi = wasmAbi(readFileSync(path));
      expect([...abi.imports]).toEqual([["env.abort", "(i32, i32, i32, i32)"]]);
    });

    it(`${name}: every export is documented, every documented export exists, with its signature`, () => {
      const abi = wasmAbi(readFileSync(path));
      expect(abi.exports.size).toBeGreaterThan(10);
      expect(compareAbi(doc, abi)).toEqual([]);
    });
  }

  it("both builds have the same ABI", () => {
    const [fast, portable] = BUILDS.map((p) => wasmAbi(readFileSync(p)));
    expect([...portable.exports].sort()).toEqual([...fast.exports].sort());
    expect([...portable.imports]).toEqual([...fast.imports]);
  });
});

describe("the comparison can fail", () => {
  const wasm = {
    exports: new Map([
      ["memory", "memory"],
      ["alloc", "(i32) -> i32"],
      ["elf_open", "(i32, i32) -> i32"],
      ["sym_lookup", "(i32, i64) -> i64"],
    ]),
    imports: new Map([["env.abort", "(i32, i32, i32, i32)"]]),
  };
  const table = (rows: string) => `## Area\n\n| export | signature | meaning |\n|---|---|---|\n${rows}\n`;
  const imports = "## Imports\n\n| import | signature | meaning |\n|---|---|---|\n| `env.abort` | `(a: i32, b: i32, c: i32, d: i32)` | x |\n";

  it("accepts an exact description", () => {
    const d = parseAbiDoc(imports + table("| `memory` | memory | m |\n| `alloc` | `(size: i32) -> i32` | a |\n| `elf_open` | `(ptr: i32, len: i32) -> i32` | o |") + table("| `sym_lookup` | `(h: i32, addr: i64) -> i64` | l \\| x |"));
    expect(compareAbi(d, wasm)).toEqual([]);
  });

  it("reports missing, undocumented, mismatched, duplicated and malformed rows", () => {
    const d = parseAbiDoc(
      imports +
        table(
          [
            "| `memory` | memory | m |",
            "| `alloc` | `(size: i32) -> i64` | wrong result |",
            "| `elf_open` | `(ptr: i32, len: i32) -> i32` | o |",
            "| `elf_open` | `(ptr: i32, len: i32) -> i32` | twice |",
            "| `elf_gone` | `(h: i32)` | not exported |",
            "| `elf_bad` | `(h: u32) -> i32` | not a Wasm type |",
            "| elf_plain | `(h: i32)` | no backquotes |",
          ].join("\n"),
        ),
    );
    const r = compareAbi(d, wasm);
    expect(r.some((l) => l.includes("elf_bad") && l.includes("is not"))).toBe(true);
    expect(r.some((l) => l.includes("elf_plain") && l.includes("backquotes"))).toBe(true);
    expect(r.some((l) => l.startsWith("export alloc: documented as (i32) -> i64") && l.includes("has (i32) -> i32"))).toBe(true);
    expect(r.some((l) => l.startsWith("export elf_open is documented twice"))).toBe(true);
    expect(r.some((l) => l.startsWith("export elf_gone is documented") && l.includes("no such export"))).toBe(true);
    expect(r.some((l) => l.startsWith("export sym_lookup (i32, i64) -> i64 is in core.wasm but not documented"))).toBe(true);
  });

  it("ignores other tables and parses signatures strictly", () => {
    const d = parseAbiDoc("| code | name |\n|---|---|\n| `100` | `ELF_TRUNCATED` |\n\n" + imports);
    expect(d.errors).toEqual([]);
    expect(d.exports).toEqual([]);
    expect(parseSignature("() -> i32")).toBe("() -> i32");
    expect(parseSignature("(a: i32, b: i64)")).toBe("(i32, i64)");
    expect(parseSignature("(a: i32, b: i64) -> f64")).toBe("(i32, i64) -> f64");
    expect(parseSignature("(i32) -> i32")).toBeNull();
    expect(parseSignature("(a: usize) -> i32")).toBeNull();
    expect(parseSignature("(a: i32) -> u64")).toBeNull();
  });
});
