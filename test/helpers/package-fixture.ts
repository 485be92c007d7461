// A realistic PatchPackage for the format tests, made from real gcc output: the sections
// of a fixed object file that hold the changed functions, bound to a linked target the
// way `patchc build` will bind them (module symbols, locals by file and position, PLT
// entries, TLS, COPY-relocated data). It only carries data into the model; choosing what
// changed is the build's job (issue 5), here the test names the sections and functions.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import type { Core } from "../../src/core/instance.js";
import { ElfReader, SymbolTableKind, type ElfSymbol } from "../../src/core/elf.js";
import type { BindKind, Fde, PackageSymbol, PatchFunction, PatchPackage, Reference, Section, TlsModel } from "../../src/format/model.js";
import { Scratch } from "./gcc.js";

export const OLD_SOURCE = `
#include <stdio.h>
#include <stdlib.h>
__thread int tls_counter;
static int counter;
int ext_global = 7;
static __attribute__((noinline)) int helper(int x) { counter++; return x * 3 + tls_counter; }
int table_switch(int x) {
  switch (x) { case 0: return 11; case 1: return helper(2); case 2: return 37; case 3: return 41; case 4: return 5; default: return -1; }
}
__attribute__((cold, noinline)) void report(const char *m) { fprintf(stderr, "error: %s %d\\n", m, ext_global); abort(); }
int checked(int x) { if (__builtin_expect(x < 0, 0)) { report("negative"); } return printf("value %d\\n", x); }
int main(int argc, char **argv) { return checked(table_switch(argc)) + (argv[0][0] == 'x'); }
`;

/** The fix: a jump-table case, a string, a new function and a new global. */
export const NEW_SOURCE = OLD_SOURCE.replace("return 37", "return 38")
  .replace("value %d", "value: %d")
  .replace("int checked(int x) {", "int audit_count;\n__attribute__((noinline)) int audit(int x) { audit_count += x + counter + tls_counter; return audit_count & 1; }\nint checked(int x) { if (audit(x)) x++;");

export const FLAGS = ["-O2", "-g0", "-fPIE", "-ffunction-sections", "-fdata-sections"];

export interface Fixture {
  scratch: Scratch;
  object: string; // the fixed build's fix.o
  target: string; // the running build's executable
  model: PatchPackage;
}

/** Compiles the fixture pair (same file name, fix.c, in old/ and new/) and builds the model. */
export function buildFixture(core: Core): Fixture {
  const scratch = new Scratch();
  mkdirSync(scratch.path("old"));
  mkdirSync(scratch.path("new"));
  scratch.write("old/fix.c", OLD_SOURCE);
  scratch.write("new/fix.c", NEW_SOURCE);
  const target = scratch.gcc("old/fix.c", "target", [...FLAGS, "-pie", "-Wl,--build-id"]);
  const object = scratch.gcc("new/fix.c", "fix.o", [...FLAGS, "-c"]);
  const model = packageFromObject(core, object, target, {
    patchId: "fix-1",
    keep: [".text.table_switch", ".rodata.table_switch", ".text.checked", ".text.unlikely.checked", ".rodata.checked.str1.1", ".text.audit", ".bss.audit_count"],
    replace: ["table_switch", "checked"],
    add: ["audit"],
  });
  return { scratch, object, target, model };
}

const TLS_MODELS: Record<number, TlsModel> = { 19: "gd", 20: "ld", 21: "ld", 22: "ie", 23: "le" };
const SYM_TYPES: Record<number, PackageSymbol["type"]> = { 0: "notype", 1: "object", 2: "func", 3: "section", 6: "tls" };

/** The sections `keep` of an object as a package against `target`. */
export function packageFromObject(core: Core, objectPath: string, targetPath: string, opts: { patchId: string; keep: string[]; replace: string[]; add: string[] }): PatchPackage {
  const objBytes = readFileSync(objectPath);
  const tgtBytes = readFileSync(targetPath);
  const obj = new ElfReader(core, objBytes, objectPath);
  const tgt = new ElfReader(core, tgtBytes, targetPath);
  try {
    const osecs = obj.sections();
    const osyms = obj.symbols(SymbolTableKind.SYMTAB);
    const tsecs = tgt.sections();
    const tsyms = tgt.symbols(SymbolTableKind.SYMTAB);
    const tdyn = tgt.symbols(SymbolTableKind.DYNSYM);

    const sections: Section[] = [];
    const secMap = new Map<number, number>();
    for (const s of osecs) {
      if (!opts.keep.includes(s.name)) continue;
      secMap.set(s.index, sections.length);
      sections.push({
        name: s.name,
        type: s.type === 8 ? "nobits" : s.type === 0x70000001 ? "unwind" : "progbits",
        flags: Number(s.flags),
        align: Math.max(1, Number(s.align)),
        entsize: Number(s.entsize),
        size: Number(s.size),
        data: s.type === 8 ? undefined : obj.sectionData(s),
        relocations: [],
      });
    }

    // Defined symbols of the kept sections keep their place; others become references.
    const symbols: PackageSymbol[] = [];
    const symMap = new Map<number, number>();
    for (const s of osyms) {
      const sec = secMap.get(s.shndx);
      if (s.index === 0 || s.type === 4 || sec === undefined) continue;
      symMap.set(s.index, symbols.length);
      symbols.push({ name: s.type === 3 ? "" : s.name, type: SYM_TYPES[s.type], bind: (["local", "global", "weak"] as const)[s.bind], section: sec, value: Number(s.value), size: Number(s.size) });
    }
    const references: Reference[] = [];
    const external = new Map<string, number>();
    const fileOf = (syms: ElfSymbol[], i: number): string => {
      for (let k = i; k >= 0; k--) if (syms[k].type === 4) return syms[k].name;
      return "";
    };
    const bindExternal = (name: string, relocType: number): number => {
      const known = external.get(name);
      if (known !== undefined) return known;
      const index = symbols.length;
      const def = tsyms.find((t) => t.name === name && t.shndx !== 0 && t.type !== 3 && t.type !== 4);
      let ref: Reference;
      if (def) {
        const type = def.type === 6 ? "tls" : def.type === 10 ? "ifunc" : def.type === 2 ? "func" : def.type === 1 ? "object" : "notype";
        ref = { symbol: index, name, bind: type === "tls" ? "tls" : "direct", scope: "module", type };
        if (def.bind === 0) ref.local = { file: fileOf(tsyms, def.index), sympos: tsyms.filter((t) => t.bind === 0 && t.name === name && t.index <= def.index).length };
        if (type === "tls") ref.tls = { model: TLS_MODELS[relocType] ?? "ie", offset: def.value };
        else ref.addr = def.value;
      } else {
        const imp = tdyn.find((t) => t.name === name);
        if (!imp) throw new Error(`fixture: ${name} is neither defined nor imported by the target`);
        ref = { symbol: index, name, bind: "direct", scope: "dynamic", type: imp.type === 2 ? "func" : imp.type === 6 ? "tls" : "object" };
        if (imp.version) ref.version = imp.version;
        if (imp.versionFile) ref.library = imp.versionFile;
        const slots = gotSlots(tgt, imp.index);
        if (slots.jumpSlot !== undefined) {
          ref.bind = "plt" as BindKind;
          ref.gotSlot = slots.jumpSlot;
          ref.pltEntry = pltEntry(tsecs, slots.pltIndex!);
        } else if (slots.globDat !== undefined) {
          ref.bind = "got";
          ref.gotSlot = slots.globDat;
        }
      }
      symbols.push({ name, type: ref.type === "tls" ? "tls" : "notype", bind: "global", value: 0, size: 0 });
      references.push(ref);
      external.set(name, index);
      return index;
    };

    for (const t of obj.relaTables()) {
      const target = secMap.get(t.target);
      if (target === undefined) continue;
      sections[target].relocations = obj.relas(t).map((r) => {
        const s = osyms[r.sym];
        let symbol = symMap.get(r.sym);
        if (symbol === undefined) {
          // A section symbol of a section left in the target: the variable it holds.
          const name = s.type === 3 ? osyms.find((x) => x.shndx === s.shndx && x.type !== 3 && x.value === 0n)!.name : s.name;
          symbol = bindExternal(name, r.type);
        }
        return { offset: Number(r.offset), type: r.type, symbol, addend: r.addend };
      });
    }

    // .eh_frame: the CIEs and the FDEs of kept code, compacted.
    const fdes = new Map<number, Fde>(); // model section -> FDE
    const eh = osecs.find((s) => s.name === ".eh_frame");
    if (eh) {
      const data = obj.sectionData(eh);
      const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const relas = obj.relas(obj.relaTables().find((t) => t.target === eh.index)!);
      const out: Uint8Array[] = [];
      const outRelocs: Section["relocations"] = [];
      const cieAt = new Map<number, number>();
      let size = 0;
      for (let o = 0; o + 4 <= data.length; ) {
        const len = v.getUint32(o, true);
        if (len === 0) break;
        const rec = data.slice(o, o + 4 + len);
        const id = v.getUint32(o + 4, true);
        const recRelocs = relas.filter((r) => Number(r.offset) >= o && Number(r.offset) < o + 4 + len);
        const covers = id === 0 ? undefined : secMap.get(osyms[relas.find((r) => Number(r.offset) === o + 8)!.sym].shndx);
        if (id === 0 || covers !== undefined) {
          if (id === 0) cieAt.set(o, size);
          else new DataView(rec.buffer).setUint32(4, size + 4 - cieAt.get(o + 4 - id)!, true);
          for (const r of recRelocs) {
            const s = osyms[r.sym];
            outRelocs.push({ offset: Number(r.offset) - o + size, type: r.type, symbol: symMap.get(r.sym) ?? bindExternal(s.name, r.type), addend: r.addend });
          }
          if (covers !== undefined) fdes.set(covers, { offset: size, size: rec.length });
          out.push(rec);
          size += rec.length;
        }
        o += 4 + len;
      }
      const ehData = new Uint8Array(size);
      let at = 0;
      for (const r of out) {
        ehData.set(r, at);
        at += r.length;
      }
      sections.push({ name: ".eh_frame", type: eh.type === 0x70000001 ? "unwind" : "progbits", flags: Number(eh.flags), align: Number(eh.align), entsize: 0, size, data: ehData, relocations: outRelocs });
    }

    const codeSymbol = (name: string): number => {
      const i = symbols.findIndex((s) => s.name === name && s.type === "func" && s.section !== undefined);
      if (i < 0) throw new Error(`fixture: no new code for ${name}`);
      return i;
    };
    const original = (name: string) => {
      const t = tsyms.find((s) => s.name === name && s.type === 2)!;
      const off = tgt.addrToOffset(t.value, t.size);
      const bytes = tgtBytes.subarray(off, off + Number(t.size));
      return { t, original: { addr: t.value, size: t.size, site: new Uint8Array(bytes.subarray(0, Math.min(16, bytes.length))), sha256: createHash("sha256").update(bytes).digest("hex") } };
    };
    const functions: PatchFunction[] = [];
    for (const name of opts.replace) {
      const symbol = codeSymbol(name);
      const { t, original: o } = original(name);
      const f: PatchFunction = { kind: "replace", name, symbol, original: o, pieces: [] };
      if (t.bind === 0) f.local = { file: fileOf(tsyms, t.index), sympos: 1 };
      const fde = fdes.get(symbols[symbol].section!);
      if (fde) f.fde = fde;
      const cold = `${name}.cold`;
      const newCold = symbols.findIndex((s) => s.name === cold && s.section !== undefined);
      const oldCold = tsyms.find((s) => s.name === cold);
      if (newCold >= 0 || oldCold) {
        const piece: PatchFunction["pieces"][number] = { kind: "cold", name: cold };
        if (oldCold) {
          piece.original = { addr: oldCold.value, size: oldCold.size };
          piece.local = { file: fileOf(tsyms, oldCold.index), sympos: 1 };
        }
        if (newCold >= 0) {
          piece.symbol = newCold;
          const pf = fdes.get(symbols[newCold].section!);
          if (pf) piece.fde = pf;
        }
        f.pieces.push(piece);
      }
      functions.push(f);
    }
    for (const name of opts.add) {
      const symbol = codeSymbol(name);
      const f: PatchFunction = { kind: "add", name, symbol, pieces: [] };
      const fde = fdes.get(symbols[symbol].section!);
      if (fde) f.fde = fde;
      functions.push(f);
    }
    // Locals first, as the writer emits them: renumber.
    const order = symbols.map((_, i) => i).sort((a, b) => Number(symbols[a].bind !== "local") - Number(symbols[b].bind !== "local") || a - b);
    const renum = new Map(order.map((old, k) => [old, k]));
    for (const s of sections) for (const r of s.relocations) r.symbol = renum.get(r.symbol)!;
    for (const f of functions) {
      f.symbol = renum.get(f.symbol)!;
      for (const p of f.pieces) if (p.symbol !== undefined) p.symbol = renum.get(p.symbol)!;
    }
    for (const r of references) r.symbol = renum.get(r.symbol)!;
    return {
      patchId: opts.patchId,
      producer: "patchc test fixture",
      target: { buildId: tgt.info.buildId!, path: targetPath, type: tgt.info.type === 2 ? "exec" : "dyn" },
      dependencies: [],
      sections,
      symbols: order.map((i) => symbols[i]),
      functions,
      references,
    };
  } finally {
    obj.close();
    tgt.close();
  }
}

/** The target's GOT slots for dynamic symbol `dynIndex`: JUMP_SLOT (with its PLT index) or GLOB_DAT. */
function gotSlots(tgt: ElfReader, dynIndex: number): { jumpSlot?: bigint; pltIndex?: number; globDat?: bigint } {
  const r: { jumpSlot?: bigint; pltIndex?: number; globDat?: bigint } = {};
  const secs = tgt.sections();
  for (const t of tgt.relaTables()) {
    if (t.kind !== "section" || t.symtab !== SymbolTableKind.DYNSYM) continue;
    const name = secs[t.section].name;
    tgt.relas(t).forEach((x, k) => {
      if (x.sym !== dynIndex) return;
      if (x.type === 7 && name === ".rela.plt") {
        r.jumpSlot = x.offset;
        r.pltIndex = k;
      }
      if (x.type === 6) r.globDat = x.offset;
    });
  }
  return r;
}

/** PLT entry k: .plt.sec + 16k with IBT's second PLT, else .plt + 16(k+1) (after PLT0). */
function pltEntry(secs: ReturnType<ElfReader["sections"]>, k: number): bigint {
  const sec = secs.find((s) => s.name === ".plt.sec");
  if (sec) return sec.addr + 16n * BigInt(k);
  return secs.find((s) => s.name === ".plt")!.addr + 16n * BigInt(k + 1);
}
