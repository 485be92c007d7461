// Damaged packages: every truncation, every single-byte change (header, metadata, code,
// section table, padding), and targeted field edits re-sealed so they reach the deep
// checks. Each gives a PackageError naming the file and the reason, or (padding) reads
// back unchanged; nothing crashes, nothing aborts in the core.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader, type ElfSection } from "../src/core/elf.js";
import { encodePackage } from "../src/format/writer.js";
import { decodePackage } from "../src/format/reader.js";
import { PackageError } from "../src/format/errors.js";
import { contentHash } from "../src/format/seal.js";
import type { PatchPackage } from "../src/format/model.js";
import { buildFixture, type Fixture } from "./helpers/package-fixture.js";

const core = nodeCore();
const FILE = "damaged.patch";
let fx: Fixture;
let model: PatchPackage;
let good: Uint8Array;
let sections: ElfSection[];
let shoff: number;

beforeAll(() => {
  fx = buildFixture(core);
  // Every metadata table non-empty: a dependency and a function that supersedes it.
  model = structuredClone(fx.model);
  model.dependencies = [{ patchId: "fix-0", hash: "cd".repeat(32) }];
  model.functions[0].after = "fix-0";
  good = encodePackage(model);
  const r = new ElfReader(core, good, FILE);
  sections = r.sections();
  r.close();
  shoff = Number(new DataView(good.buffer).getBigUint64(40, true));
});
afterAll(() => fx?.scratch.remove());

/** decodePackage's outcome: "ok" when it reads back the model, "changed" when it reads
 * another valid package, else the PackageError's reason. */
function outcome(bytes: Uint8Array): string {
  let back;
  try {
    back = decodePackage(core, bytes, FILE);
  } catch (e) {
    if (!(e instanceof PackageError)) throw new Error(`not a PackageError: ${e instanceof Error ? e.stack : String(e)}`);
    expect(e.file).toBe(FILE);
    expect(e.message.startsWith(`${FILE}: `)).toBe(true);
    expect(e.message).not.toMatch(/aborted|NaN|\[object|\(undefined\)| undefined[,)]|undefined$/);
    return e.reason;
  }
  try {
    expect(back.model).toEqual(model);
    return "ok";
  } catch {
    return "changed";
  }
}

const section = (name: string): ElfSection => sections.find((s) => s.name === name)!;

/** Recomputes the content hash into the seal, so an edit reaches the checks after the hash. */
function reseal(b: Uint8Array): boolean {
  let r: ElfReader;
  try {
    r = new ElfReader(core, b, FILE);
  } catch {
    return false;
  }
  try {
    const secs = r.sections();
    const seal = secs.find((s) => s.name === ".patchc.seal");
    if (!seal || !seal.hasData || seal.size < 40n) return false;
    const h = contentHash(secs.slice(1).map((s) => ({ ...s, data: s.hasData ? r.sectionData(s) : undefined })));
    b.set(h, Number(seal.offset) + 8);
    return true;
  } finally {
    r.close();
  }
}

type Region = "elf header" | "section table" | "section names" | "padding" | "code and data" | "symbols and relocations" | "metadata header" | "metadata" | "seal";

function regionOf(off: number): Region {
  if (off < 64) return "elf header";
  if (off >= shoff) return "section table";
  const s = sections.find((x) => x.hasData && off >= Number(x.offset) && off < Number(x.offset + x.size));
  if (!s) return "padding";
  if (s.name === ".patchc.seal") return "seal";
  if (s.name === ".patchc.meta") return off - Number(s.offset) < 20 ? "metadata header" : "metadata";
  if (s.name.startsWith(".patchc.")) return "metadata";
  if (s.name === ".shstrtab") return "section names";
  if (s.name === ".symtab" || s.name === ".strtab" || s.name.startsWith(".rela")) return "symbols and relocations";
  return "code and data";
}

describe("damaged packages", () => {
  it("refuses every truncation with the reason", () => {
    expect(outcome(good)).toBe("ok");
    const reasons = new Map<string, number>();
    for (let len = 0; len < good.length; len++) {
      const r = outcome(good.slice(0, len));
      expect(r, `truncated to ${len}`).not.toBe("ok");
      if (len < 64) expect(r).toBe(`not a readable ELF file: ELF header: input of ${len} bytes is shorter than the 64-byte header`);
      else expect(r).toMatch(/^not a readable ELF file: section headers: .* past the end of the input/);
      const key = r.replace(/0x[0-9a-f]+|\d+/g, "N");
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
    expect(reasons.size).toBeGreaterThanOrEqual(3);
  });

  it("refuses every changed byte, by region, or reads back the same where nothing reads it", () => {
    const seen = new Map<Region, Set<string>>();
    for (let off = 0; off < good.length; off++) {
      const b = good.slice();
      b[off] ^= 0xff;
      const region = regionOf(off);
      const r = outcome(b);
      (seen.get(region) ?? seen.set(region, new Set()).get(region)!).add(r.replace(/[0-9a-f]{64}/g, "H").replace(/0x[0-9a-f]+|\d+/g, "N"));
      const at = `byte ${off} (${region})`;
      switch (region) {
        case "code and data":
        case "symbols and relocations":
        case "metadata":
          expect(r, at).toMatch(/^content hash mismatch: the seal says sha256 [0-9a-f]{64}, the contents hash to [0-9a-f]{64}; the file is damaged or was changed after it was written$|^not a readable ELF file: /);
          if (region !== "symbols and relocations") expect(r, at).toMatch(/^content hash mismatch/);
          break;
        case "metadata header":
          // The minor version is not checked (a 1.x reader reads 1.y): the hash catches it.
          expect(r, at).toMatch(/^\.patchc\.meta: bad magic|^format version \d+\.\d+ is not readable|^\.patchc\.meta: header size|^format 1\.0 requires features|^content hash mismatch/);
          if (off - Number(section(".patchc.meta").offset) < 10) expect(r, at).not.toMatch(/^content hash mismatch/);
          break;
        case "seal":
          expect(r, at).toMatch(/^content hash mismatch|^\.patchc\.seal: (hash algorithm|signature algorithm|an unsigned seal|the signature by key [0-9a-f]{16} does not verify|the signer's public key)/);
          break;
        case "padding":
          expect(r, at).toBe("ok");
          break;
        default:
          expect(r, at).not.toBe("");
      }
    }
    // Header and section-table damage is caught, mostly before the hash.
    expect([...seen.get("section table")!].some((r) => r.startsWith("not a readable ELF file"))).toBe(true);
    expect([...seen.get("section table")!].some((r) => r.startsWith("content hash mismatch"))).toBe(true);
    expect([...seen.get("elf header")!].filter((r) => r !== "ok").length).toBeGreaterThan(5);
    expect(seen.get("padding")).toEqual(new Set(["ok"]));
  });

  it("refuses every changed byte re-sealed (so the structure checks, not the hash, catch it)", () => {
    const reasons = new Set<string>();
    let resealed = 0;
    for (let off = 0; off < good.length; off++) {
      const region = regionOf(off);
      if (region === "padding" || region === "code and data" || region === "seal" || region === "section names") continue;
      // In the section table, the first byte of each field (the fuzz is slow enough as it is).
      if (region === "section table" && ![0, 4, 8, 16, 24, 32, 40, 44, 48, 56].includes((off - shoff) % 64)) continue;
      const b = good.slice();
      b[off] ^= off & 1 ? 0x01 : 0xff; // small and large changes
      if (!reseal(b)) continue;
      resealed++;
      reasons.add(outcome(b).replace(/[0-9a-f]{64}/g, "H").replace(/0x[0-9a-f]+|\d+/g, "N"));
    }
    expect(resealed).toBeGreaterThan(1500);
    if (process.env.SHOW_REASONS) console.log([...reasons].sort().join("\n"));
    // The checks of every kind of record were reached.
    const all = [...reasons].join("\n");
    for (const re of [/^\.symtab symbol/m, /^section N \(/m, /^\.patchc\.funcs/m, /^\.patchc\.refs record/m, /^function /m, /^reference /m, /^piece /m, /^dependency /m, /string offset/m, /is not a known value/m, /^changed$/m]) {
      expect(all).toMatch(re);
    }
  });

  describe("field edits, re-sealed, give the exact reason", () => {
    const funcs = () => Number(section(".patchc.funcs").offset);
    const refs = () => Number(section(".patchc.refs").offset);
    const meta = () => Number(section(".patchc.meta").offset);
    const edit = (fn: (v: DataView, b: Uint8Array) => void, seal = true): string => {
      const b = good.slice();
      fn(new DataView(b.buffer), b);
      if (seal && !reseal(b)) return `could not reseal: ${outcome(b)}`;
      return outcome(b);
    };
    const nsyms = () => Number(section(".symtab").size / 24n);

    it("header", () => {
      expect(edit((v) => v.setUint16(meta() + 8, 2, true), false)).toBe("format version 2.0 is not readable by this patchc (it reads 1.x)");
      expect(edit((v) => v.setUint32(meta() + 16, 4, true), false)).toBe("format 1.0 requires features 0x4 this patchc does not know; upgrade patchc");
      expect(edit((v) => v.setUint32(meta() + 52, 4, true))).toBe(".patchc.funcs: 3 records, but the header says 4");
      expect(edit((v) => v.setUint16(meta() + 48, 1, true))).toBe(".patchc.meta: target type 1 is not 2 (ET_EXEC) or 3 (ET_DYN)");
      expect(edit((v) => v.setUint32(meta() + 44, 1 << 20, true))).toMatch(/^\.patchc\.meta: target build-id: 1048576 bytes at \d+ run past the end of \.patchc\.blob \(\d+ bytes\)$/);
      expect(edit((v) => v.setUint8(meta() + 80, 1))).toBe(".patchc.meta: reserved header bytes are not zero");
    });

    it("functions and pieces", () => {
      const strSize = Number(section(".patchc.strtab").size);
      expect(edit((v) => v.setUint32(funcs(), 0x7fffffff, true))).toBe(`.patchc.funcs record 0: string offset ${0x7fffffff} is past the end of .patchc.strtab (${strSize} bytes)`);
      expect(edit((v) => v.setUint32(funcs() + 12, 999, true))).toBe(`function table_switch: symbol index 999 is not a symbol of .symtab (1..${nsyms() - 1})`);
      expect(edit((v) => v.setUint8(funcs() + 16, 7))).toBe("function table_switch: kind 7 is not a known value");
      expect(edit((v) => v.setUint32(funcs() + 52, 10000, true))).toMatch(/^function table_switch: site bytes: 10000 bytes at \d+ run past the end of \.patchc\.blob \(\d+ bytes\)$/);
      expect(edit((v) => v.setUint32(funcs() + 52, 0, true))).toBe("function table_switch: the expected bytes at the patch site are missing");
      expect(edit((v) => v.setUint32(funcs() + 80 + 24, 5, true))).toBe("function checked: pieces 0..4 are not the next 5 of .patchc.pieces (next is 0 of 1)");
      expect(edit((v) => v.setUint32(funcs() + 28, 0, true))).toBe("changed"); // no longer supersedes fix-0: valid, but another package
      expect(edit((v) => v.setUint32(funcs() + 80 + 28, Number(section(".patchc.strtab").size) - 2, true))).toMatch(/^function checked: supersedes patch \S+, which is not among the dependencies$/);
      const fde = model.functions[0].fde!;
      expect(edit((v) => v.setUint32(funcs() + 60, fde.offset + 4, true))).toMatch(new RegExp(`^function table_switch: the record at \\.eh_frame\\+0x${(fde.offset + 4).toString(16)} is \\d+ bytes, not ${fde.size}$`));
      const cieSize = new DataView(model.sections.find((s) => s.name === ".eh_frame")!.data!.buffer).getUint32(0, true) + 4;
      expect(edit((v) => {
        v.setUint32(funcs() + 60, 0, true);
        v.setUint32(funcs() + 64, cieSize, true);
      })).toBe("function table_switch: the record at .eh_frame+0x0 is a CIE, not an FDE");
      const other = model.functions[1].fde!;
      expect(edit((v) => {
        v.setUint32(funcs() + 60, other.offset, true);
        v.setUint32(funcs() + 64, other.size, true);
      })).toBe(`function table_switch: the FDE at .eh_frame+0x${other.offset.toString(16)} does not cover the function's code section`);
      expect(edit((v) => v.setUint32(funcs() + 2 * 80 + 12, model.functions[0].symbol + 1, true))).toBe(`function audit: symbol ${model.functions[0].symbol} (table_switch) is the new code of another function or piece too`);
    });

    it("references", () => {
      const printf = model.references.findIndex((r) => r.name === "printf");
      const at = refs() + printf * 72;
      expect(edit((v) => v.setUint8(at + 16, 9))).toBe("reference printf: binding 9 is not a known value");
      expect(edit((v) => v.setUint8(at + 17, 3))).toBe("reference printf: defined by patch libc.so.6, which is not among the dependencies");
      expect(edit((v) => v.setUint8(at + 17, 1))).toBe("reference printf: a library is named only for scope dynamic");
      expect(edit((v) => v.setUint32(at + 20, 1, true))).toBe("reference printf: a value at 40 without its flag");
      expect(edit((v) => {
        v.setUint32(at + 20, 2, true);
        v.setBigUint64(at + 48, 0n, true);
      })).toBe("reference printf: bound through the target's PLT but no PLT entry given");
      expect(edit((v) => v.setUint32(at, model.functions[0].symbol + 1, true))).toBe(`reference printf: symbol ${model.functions[0].symbol} (table_switch) is defined in the package; only undefined symbols bind to the target`);
      expect(edit((v) => v.setUint8(at + 19, 3))).toBe("reference printf: TLS facts are given only for bind tls");
    });

    it("symbols, relocations, section table, strings", () => {
      const symtab = Number(section(".symtab").offset);
      const table = model.symbols.findIndex((s) => s.name === "table_switch") + 1;
      const meta = sections.findIndex((s) => s.name === ".patchc.meta");
      expect(edit((v) => v.setUint16(symtab + table * 24 + 6, meta, true))).toBe(`.symtab symbol ${table} (table_switch): section index ${meta} is not a code or data section of the package`);
      expect(edit((v) => v.setUint8(symtab + table * 24 + 4, 0x12 & 0x0f))).toBe(`.symtab symbol ${table} (table_switch): local symbol on the wrong side of the first global (sh_info ${section(".symtab").info})`);
      const rela = section(".rela.text.table_switch");
      expect(edit((v) => v.setBigUint64(Number(rela.offset) + 24, 0x1000n, true))).toBe("section 0 (.text.table_switch): relocation 1 at 0x1000: R_X86_64_PC32 patches 4 bytes past the end of the section (92 bytes)");
      expect(edit((v) => v.setUint32(Number(rela.offset) + 8, 7, true))).toBe("section 0 (.text.table_switch): relocation 0 at 0x8: type 7 is not an x86-64 relocation of relocatable objects");
      expect(edit((v) => v.setUint32(Number(rela.offset) + 12, 0, true))).toBe(`section ${rela.index} (.rela.text.table_switch): relocation 0: symbol index 0 is not a symbol of .symtab (1..${nsyms() - 1})`);
      const text = section(".text.table_switch");
      expect(edit((v) => v.setUint32(shoff + text.index * 64 + 4, 0x60000000, true))).toBe(`section ${text.index} (.text.table_switch): section type 0x60000000 has no place in a patch package`);
      expect(edit((v) => v.setBigUint64(shoff + text.index * 64 + 8, 7n, true))).toBe("section 0 (.text.table_switch): writable and executable: patch memory is never both");
      const str = section(".patchc.strtab");
      expect(edit((_, b) => (b[Number(str.offset + str.size) - 1] = 0x41))).toMatch(/: the string at \d+ of \.patchc\.strtab is not NUL-terminated$/);
      expect(edit((_, b) => (b[Number(str.offset) + 1] = 0xff))).toMatch(/: the string at 1 of \.patchc\.strtab is not UTF-8$/);
      const seal = section(".patchc.seal");
      expect(edit((v) => v.setUint32(Number(seal.offset), 2, true), false)).toBe(".patchc.seal: hash algorithm 2 is not 1 (sha256)");
      expect(edit((v) => v.setUint32(Number(seal.offset) + 4, 2, true), false)).toBe(".patchc.seal: signature algorithm 2 is not 0 (none) or 1 (ed25519)");
      expect(edit((_, b) => (b[Number(seal.offset) + 100] = 1), false)).toBe(".patchc.seal: an unsigned seal has nonzero public key or signature bytes");
    });
  });
});
