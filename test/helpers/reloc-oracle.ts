// Relocates an object with the engine the way ld linked it: section addresses from ld's
// map, GOT slots and PLT entries from readelf/objdump of ld's output, bindings of
// undefined symbols from the output's symbol table. Then compares bytes.
import { readFileSync } from "node:fs";
import type { Core } from "../../src/core/instance.js";
import { ElfReader, type ElfSection, type ElfRela } from "../../src/core/elf.js";
import { GotKind, Ref, Relocation, type RelocRef } from "../../src/core/reloc.js";
import type { Linked } from "./ld-oracle.js";

const SHF_ALLOC = 2n;
const SHF_TLS = 0x400n;

export interface Placed {
  section: ElfSection;
  addr: bigint;
}

export interface OracleRun {
  elf: ElfReader;
  reloc: Relocation;
  placed: Placed[];
  /** The engine's output window. */
  base: bigint;
  image: Uint8Array;
  /** Relocations of the placed sections, with their section. */
  relocs: Array<{ section: ElfSection; addr: bigint; rela: ElfRela }>;
  symbolName(sym: number): string;
  ours(addr: bigint, size: number): Uint8Array;
  close(): void;
}

export interface OracleOptions {
  /** Bind these TLS symbols (undefined in the object) to facts instead of ld's GOT slots. */
  tls?: Record<string, { module: bigint; offset: bigint; blockTpoff?: bigint }>;
  /** Where the engine's own GOT and stubs go (default: after the window). */
  extraBase?: bigint;
}

/** Places each of the object's SHF_ALLOC sections where ld's map says ld put it. */
export function relocateLikeLd(core: Core, objPath: string, ld: Linked, opts: OracleOptions = {}): OracleRun {
  const elf = new ElfReader(core, readFileSync(objPath), objPath);
  const reloc = new Relocation(elf);
  const sections = elf.sections();
  const symbols = elf.symbols(0);
  // Map entries by name, in order: the n-th section of a name is the n-th map entry of it.
  const byName = new Map<string, Array<{ addr: bigint; size: bigint }>>();
  for (const e of ld.mapEntries) {
    if (!byName.has(e.name)) byName.set(e.name, []);
    byName.get(e.name)!.push(e);
  }
  const placed: Placed[] = [];
  const secAddr = new Map<number, bigint>();
  for (const s of sections) {
    if ((s.flags & SHF_ALLOC) === 0n || s.index === 0) continue;
    const e = byName.get(s.name)?.shift();
    if (!e) continue; // discarded by ld (e.g. .note.gnu.property is merged)
    if (e.size !== s.size) continue; // ld rewrote it (merged strings, edited .eh_frame): not comparable
    reloc.place(s.index, e.addr);
    placed.push({ section: s, addr: e.addr });
    secAddr.set(s.index, e.addr);
  }
  // Own TLS: the executable is module 1 in static TLS; a shared object's module is dynamic.
  if (ld.tls) {
    reloc.setTls({ module: 1n, tlsStart: ld.tls.vaddr, blockTpoff: ld.mode === "shared" ? undefined : ld.blockTpoff });
  }
  const gotSym = ld.symbols.get("_GLOBAL_OFFSET_TABLE_");
  if (gotSym !== undefined) reloc.setGotBase(gotSym);
  const slots = ld.gotSlots();
  const claimed = new Set<bigint>();
  const findSlot = (pred: (s: (typeof slots)[number]) => boolean): bigint | undefined => {
    const s = slots.find((x) => !claimed.has(x.addr) && pred(x));
    if (s) claimed.add(s.addr);
    return s?.addr;
  };
  // In an executable ld rewrites every TLS GD and LD sequence, and IE against the
  // executable's own variables: it has no GOT slots for them, the engine builds its own.
  const rewrites = ld.mode !== "shared";
  const refs = reloc.refs();
  const valueOf = (r: RelocRef): bigint | undefined => {
    const a = secAddr.get(r.shndx);
    return a === undefined ? undefined : a + r.value;
  };
  for (const r of refs) {
    if (r.gotSymbol) continue;
    const name = r.name;
    const S = r.undefined ? undefined : valueOf(r);
    if (r.undefined && !r.tls) reloc.bindAddress(r.sym, ld.symbols.get(name) ?? 0n);
    if (r.undefined && r.tls && opts.tls?.[name]) {
      const t = opts.tls[name];
      reloc.bindTls(r.sym, { module: t.module, blockTpoff: t.blockTpoff }, t.offset);
    }
    // ld routes calls to preemptible symbols through their PLT entry.
    if (r.refs & Ref.CALL && name && ld.plt.has(name)) reloc.bindPlt(r.sym, ld.plt.get(name)!);
    if (r.refs & Ref.GOT) {
      const slot =
        findSlot((s) => s.relocs.some((d) => (d.type === "R_X86_64_GLOB_DAT" || d.type === "R_X86_64_64") && d.sym === name && name !== "")) ??
        (S === undefined ? undefined : findSlot((s) => s.relocs.some((d) => d.type === "R_X86_64_RELATIVE" && d.addend === S))) ??
        (S === undefined ? undefined : findSlot((s) => s.relocs.length === 0 && s.content === S));
      if (slot === undefined) throw new Error(`no GOT slot of ld's for ${name || "symbol " + r.sym}`);
      reloc.bindGot(r.sym, GotKind.ADDR, slot);
    }
    const tlsOff = S !== undefined && ld.tls ? S - ld.tls.vaddr : undefined;
    if (r.refs & Ref.TPOFF_GOT && !(rewrites && !r.undefined)) {
      const slot =
        findSlot((s) => s.relocs.some((d) => d.type === "R_X86_64_TPOFF64" && d.sym === name && name !== "")) ??
        (tlsOff === undefined ? undefined : findSlot((s) => s.relocs.some((d) => d.type === "R_X86_64_TPOFF64" && d.sym === undefined && d.addend === tlsOff))) ??
        (tlsOff === undefined ? undefined : findSlot((s) => s.relocs.length === 0 && BigInt.asIntN(64, s.content) === ld.blockTpoff + tlsOff));
      if (slot === undefined) throw new Error(`no tpoff GOT slot of ld's for ${name || "symbol " + r.sym}`);
      reloc.bindGot(r.sym, GotKind.TPOFF, slot);
    }
    if (r.refs & Ref.TLSGD && !rewrites) {
      const slot =
        findSlot((s) => s.relocs.some((d) => d.type === "R_X86_64_DTPMOD64" && d.sym === name && name !== "")) ??
        (tlsOff === undefined ? undefined : findSlot((s) => s.relocs.some((d) => d.type === "R_X86_64_DTPMOD64" && d.sym === undefined) && ld.u64(s.addr + 8n) === tlsOff && tlsOff !== 0n));
      if (slot === undefined) throw new Error(`no TLS GD pair of ld's for ${name || "symbol " + r.sym}`);
      claimed.add(slot + 8n);
      reloc.bindGot(r.sym, GotKind.TLSGD, slot);
    }
  }
  // The local-dynamic pair (one per module): ld's DTPMOD64 without symbol whose second word is 0.
  if (!rewrites) {
    for (const r of refs) {
      if (!(r.refs & Ref.TLSLD)) continue;
      const slot = slots.find((s) => s.relocs.some((d) => d.type === "R_X86_64_DTPMOD64" && d.sym === undefined) && ld.u64(s.addr + 8n) === 0n);
      if (slot === undefined) throw new Error(`no TLS LD pair of ld's`);
      reloc.bindGot(r.sym, GotKind.TLSLD, slot.addr);
    }
  }
  const plan = reloc.plan();
  let lo = placed.reduce((m, p) => (p.addr < m ? p.addr : m), BigInt.asUintN(64, -1n));
  let hi = placed.reduce((m, p) => (p.addr + p.section.size > m ? p.addr + p.section.size : m), 0n);
  if (plan.gotSlots > 0 || plan.stubs > 0) {
    const extra = opts.extraBase ?? (hi + 0xfffn) & ~0xfffn;
    reloc.placeStubs(extra);
    reloc.placeGot(extra + plan.stubSize);
    if (extra < lo) lo = extra;
    const end = extra + plan.stubSize + plan.gotSize;
    if (end > hi) hi = end;
  }
  const image = reloc.apply(lo, Number(hi - lo));
  const relocs: OracleRun["relocs"] = [];
  for (const t of elf.relaTables()) {
    const p = placed.find((x) => x.section.index === t.target);
    if (!p) continue;
    for (const rela of elf.relas(t)) relocs.push({ section: p.section, addr: p.addr + rela.offset, rela });
  }
  return {
    elf,
    reloc,
    placed,
    base: lo,
    image,
    relocs,
    symbolName: (sym) => symbols[sym]?.name || sections[symbols[sym]?.shndx]?.name || `#${sym}`,
    ours: (addr, size) => image.subarray(Number(addr - lo), Number(addr - lo) + size),
    close() {
      reloc.close();
      elf.close();
    },
  };
}

/**
 * The comparison: each placed section, byte for byte, against ld's output. Fields that ld
 * left to the dynamic linker (a symbolic dynamic relocation in the output) are compared
 * with what ld.so will write there (the symbol's value + addend) instead; `masked` ranges
 * are skipped. Returns a list of differences (empty when equal).
 */
export function compareWithLd(run: OracleRun, ld: Linked, masked: Array<[bigint, bigint]> = []): string[] {
  const diffs: string[] = [];
  const symbolic = new Map<bigint, bigint>(); // field address -> expected value
  for (const d of ld.dynRelocs) {
    if (d.type === "R_X86_64_RELATIVE" || d.sym === undefined) continue;
    if (d.type === "R_X86_64_64" || d.type === "R_X86_64_GLOB_DAT") symbolic.set(d.offset, BigInt.asUintN(64, (ld.symbols.get(d.sym) ?? 0n) + d.addend));
  }
  for (const p of run.placed) {
    const s = p.section;
    if (!s.hasData) continue;
    const size = Number(s.size);
    const ours = run.ours(p.addr, size);
    const theirs = ld.at(p.addr, size);
    for (let i = 0; i < size; i++) {
      const a = p.addr + BigInt(i);
      if (masked.some(([m0, m1]) => a >= m0 && a < m1)) continue;
      const exp = symbolic.get(a);
      if (exp !== undefined) {
        const v = new DataView(ours.buffer, ours.byteOffset + i, 8).getBigUint64(0, true);
        if (v !== exp) diffs.push(`${s.name}+0x${i.toString(16)} (0x${a.toString(16)}): engine wrote 0x${v.toString(16)}, ld.so will write 0x${exp.toString(16)}`);
        i += 7;
        continue;
      }
      if (ours[i] !== theirs[i]) {
        const r = run.relocs.find((x) => a >= x.addr && a < x.addr + 8n);
        diffs.push(`${s.name}+0x${i.toString(16)} (0x${a.toString(16)}): engine 0x${ours[i].toString(16)}, ld 0x${theirs[i].toString(16)}` + (r ? ` [type ${r.rela.type} against ${run.symbolName(r.rela.sym)}]` : ""));
        if (diffs.length > 20) return diffs;
      }
    }
  }
  return diffs;
}

export const SHF_TLS_FLAG = SHF_TLS;
