// The relocation engine against the system linker: gcc -O2 objects (non-PIE, PIE, PIC,
// -fno-plt, medium and large code models, and an assembly fixture for the rare types)
// linked by `ld --no-relax` with a linker script at fixed addresses. The engine is given
// ld's section addresses (from -Map), GOT slots and PLT entries (from readelf/objdump of
// the output) and must write the same bytes into the object's sections.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { LIBC, Scratch } from "./helpers/gcc.js";
import { LDSO, ldLink, type Linked, type LinkMode } from "./helpers/ld-oracle.js";
import { compareWithLd, relocateLikeLd, type OracleRun } from "./helpers/reloc-oracle.js";
import { ASM_FIXTURE, FIXTURE, MODEL_FIXTURE, TLSDEF } from "./helpers/reloc-fixtures.js";

const ALL_TYPES = [
  "R_X86_64_64", "R_X86_64_PC32", "R_X86_64_PLT32", "R_X86_64_32", "R_X86_64_32S", "R_X86_64_PC64",
  "R_X86_64_GOTPCREL", "R_X86_64_GOTPCRELX", "R_X86_64_REX_GOTPCRELX", "R_X86_64_GOTPC32", "R_X86_64_GOTOFF64",
  "R_X86_64_TPOFF32", "R_X86_64_GOTTPOFF", "R_X86_64_TLSGD", "R_X86_64_TLSLD", "R_X86_64_DTPOFF32", "R_X86_64_DTPOFF64",
];
const TYPE_NAMES: Record<number, string> = {
  1: "R_X86_64_64", 2: "R_X86_64_PC32", 4: "R_X86_64_PLT32", 9: "R_X86_64_GOTPCREL", 10: "R_X86_64_32", 11: "R_X86_64_32S",
  17: "R_X86_64_DTPOFF64", 19: "R_X86_64_TLSGD", 20: "R_X86_64_TLSLD", 21: "R_X86_64_DTPOFF32", 22: "R_X86_64_GOTTPOFF",
  23: "R_X86_64_TPOFF32", 24: "R_X86_64_PC64", 25: "R_X86_64_GOTOFF64", 26: "R_X86_64_GOTPC32", 27: "R_X86_64_GOT64",
  29: "R_X86_64_GOTPC64", 31: "R_X86_64_PLTOFF64", 41: "R_X86_64_GOTPCRELX", 42: "R_X86_64_REX_GOTPCRELX",
};

interface Case {
  name: string;
  source: string;
  ext: "c" | "s";
  flags: string[];
  mode: LinkMode;
}

const CASES: Case[] = [
  { name: "nopie", source: FIXTURE, ext: "c", flags: ["-fno-pic"], mode: "exec" },
  { name: "pie", source: FIXTURE, ext: "c", flags: ["-fPIE"], mode: "pie" },
  { name: "pic", source: FIXTURE, ext: "c", flags: ["-fPIC"], mode: "shared" },
  { name: "noplt", source: FIXTURE, ext: "c", flags: ["-fPIC", "-fno-plt"], mode: "shared" },
  { name: "norelaxreloc", source: FIXTURE, ext: "c", flags: ["-fPIC", "-Wa,-mrelax-relocations=no"], mode: "shared" },
  { name: "nopie-eh", source: FIXTURE, ext: "c", flags: ["-fno-pic", "-fasynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections"], mode: "exec" },
  { name: "medium", source: MODEL_FIXTURE, ext: "c", flags: ["-fPIC", "-mcmodel=medium"], mode: "shared" },
  { name: "large", source: MODEL_FIXTURE, ext: "c", flags: ["-fPIC", "-mcmodel=large"], mode: "shared" },
  { name: "large-main", source: FIXTURE, ext: "c", flags: ["-fPIC", "-mcmodel=large"], mode: "shared" },
  { name: "asm", source: ASM_FIXTURE, ext: "s", flags: ["-Wa,-mrelax-relocations=no"], mode: "shared" },
];

let scratch: Scratch;
const core = nodeCore();
let libtls: string;
const objects = new Map<string, string>();
const linked = new Map<string, Linked>();

beforeAll(() => {
  scratch = new Scratch();
  libtls = scratch.gcc(TLSDEF, "libtlsdef.so", ["-O2", "-fPIC", "-shared", "-nostdlib"]);
  for (const c of CASES) {
    const src = scratch.write(`${c.name}.${c.ext}`, c.source);
    const obj = scratch.gcc(src, `${c.name}.o`, ["-O2", "-c", ...c.flags]);
    objects.set(c.name, obj);
    linked.set(c.name, ldLink(scratch, obj, `${c.name}.out`, c.mode, [libtls, LIBC, LDSO]));
  }
}, 60_000);
afterAll(() => scratch?.remove());

describe("relocation engine against ld --no-relax", () => {
  it("covers every relocation type of the issue in its objects", () => {
    const seen = new Set<string>();
    for (const obj of objects.values()) {
      const elf = new ElfReader(core, readFileSync(obj), obj);
      const secs = elf.sections();
      for (const t of elf.relaTables()) {
        if ((secs[t.target].flags & 2n) === 0n) continue; // only what the engine applies
        for (const r of elf.relas(t)) seen.add(TYPE_NAMES[r.type] ?? `type ${r.type}`);
      }
      elf.close();
    }
    for (const t of ALL_TYPES) expect(seen, t).toContain(t);
  });

  for (const c of CASES) {
    it(`writes ld's bytes: ${c.name} (${c.flags.join(" ")}, ${c.mode})`, () => {
      const ld = linked.get(c.name)!;
      const run = relocateLikeLd(core, objects.get(c.name)!, ld);
      try {
        // Every allocated section with contents and relocations was compared (none skipped as rewritten by ld).
        const relocated = new Set(run.relocs.map((r) => r.section.index));
        const secs = run.elf.sections();
        for (const t of run.elf.relaTables()) {
          const s = secs[t.target];
          if ((s.flags & 2n) !== 0n && s.size > 0n && s.name !== ".eh_frame") expect(relocated.has(s.index), `${s.name} placed`).toBe(true);
        }
        expect(run.relocs.length).toBeGreaterThan(0);
        const masked = ld.mode === "shared" ? [] : tlsRewrites(run, ld).masked;
        expect(compareWithLd(run, ld, masked)).toEqual([]);
      } finally {
        run.close();
      }
    });
  }

  it("matches ld outside the TLS sequences ld rewrites, and agrees on their values (-fPIC object in a PIE)", () => {
    const obj = objects.get("pic")!;
    const ld = ldLink(scratch, obj, "pic-in-pie.out", "pie", [libtls, LIBC, LDSO]);
    const run = relocateLikeLd(core, obj, ld, { tls: { ext_tls: { module: 2n, offset: 0n } } });
    try {
      const { masked, checked } = tlsRewrites(run, ld);
      expect(checked["GD->LE"]).toBeGreaterThan(0);
      expect(checked["GD->IE"]).toBeGreaterThan(0);
      expect(checked["LD->LE"]).toBeGreaterThan(0);
      expect(checked["DTPOFF32"]).toBeGreaterThan(0);
      expect(checked["IE->LE"]).toBeGreaterThan(0);
      expect(compareWithLd(run, ld, masked)).toEqual([]);
    } finally {
      run.close();
    }
  });
});

// ld rewrites TLS sequences when it links an executable, --no-relax or not (general and
// local dynamic to local exec, general dynamic to initial exec, initial exec to local exec).
// The engine never rewrites code: those sequences are masked, and what ld computed there is
// checked against what the engine put in its own GOT.
function tlsRewrites(run: OracleRun, ld: Linked): { masked: Array<[bigint, bigint]>; checked: Record<string, number> } {
  const word = (b: Uint8Array, i = 0) => new DataView(b.buffer, b.byteOffset + i).getBigUint64(0, true);
  const rel32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getInt32(0, true);
  const masked: Array<[bigint, bigint]> = [];
  const checked: Record<string, number> = {};
  const count = (k: string) => (checked[k] = (checked[k] ?? 0) + 1);
  const symbols = run.elf.symbols(0);
  const definedHere = (sym: number) => symbols[sym].shndx !== 0;
  for (const { addr: P, rela } of run.relocs) {
    const name = run.symbolName(rela.sym);
    // Where our field points (A folds in the distance from the field to the next instruction).
    const target = () => P + BigInt(rel32(run.ours(P, 4))) - rela.addend;
    if (rela.type === 19 /* TLSGD */) {
      masked.push([P - 4n, P + 12n]);
      const pair = run.ours(target(), 16);
      const [module, offset] = [word(pair), word(pair, 8)];
      const seq = ld.at(P - 4n, 16);
      expect(Array.from(seq.subarray(0, 9)), `${name}: mov %fs:0,%rax`).toEqual([0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0]);
      if (definedHere(rela.sym)) {
        // GD -> LE: lea tpoff(%rax),%rax
        expect(Array.from(seq.subarray(9, 12))).toEqual([0x48, 0x8d, 0x80]);
        expect(module).toBe(1n);
        expect(BigInt(rel32(seq.subarray(12)))).toBe(ld.blockTpoff + BigInt.asIntN(64, offset));
        count("GD->LE");
      } else {
        // GD -> IE: add slot(%rip),%rax, the slot filled by ld.so with tpoff of the symbol
        expect(Array.from(seq.subarray(9, 12))).toEqual([0x48, 0x03, 0x05]);
        const slot = P + 12n + BigInt(rel32(seq.subarray(12)));
        expect(ld.relocsAt(slot).map((d) => `${d.type} ${d.sym}`)).toEqual([`R_X86_64_TPOFF64 ${name}`]);
        expect([module, offset]).toEqual([2n, 0n]);
        count("GD->IE");
      }
    } else if (rela.type === 20 /* TLSLD */) {
      // LD -> LE: the whole call becomes mov %fs:0,%rax
      masked.push([P - 3n, P + 9n]);
      expect(Array.from(ld.at(P - 3n, 12))).toEqual([0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0]);
      const pair = run.ours(target(), 16);
      expect([word(pair), word(pair, 8)]).toEqual([1n, 0n]);
      count("LD->LE");
    } else if (rela.type === 21 /* DTPOFF32 */) {
      // After LD -> LE, %rax holds the thread pointer: ld writes tpoff where dtpoff was.
      masked.push([P, P + 4n]);
      expect(BigInt(ld.i32(P))).toBe(BigInt(rel32(run.ours(P, 4))) + ld.blockTpoff);
      count("DTPOFF32");
    } else if (rela.type === 22 /* GOTTPOFF */ && definedHere(rela.sym)) {
      // IE -> LE: mov slot(%rip),%reg becomes mov $tpoff,%reg; our slot holds that tpoff.
      masked.push([P - 3n, P + 4n]);
      expect(BigInt(ld.i32(P))).toBe(BigInt.asIntN(64, word(run.ours(target(), 8))));
      count("IE->LE");
    }
  }
  return { masked, checked };
}
