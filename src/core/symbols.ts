// Typed wrapper over the symbol index exports (docs/core-abi.md, "Symbol index").
// A SymbolIndex reads the symbol table of an open ElfReader in place: close the index
// before the reader.
import { Core, CoreError } from "./instance.js";
import type { ElfReader } from "./elf.js";

export const enum SymbolTable {
  SYMTAB = 0,
  DYNSYM = 1,
  /** .symtab when the file has one, else .dynsym */
  BEST = 2,
}

export type Piece = "whole" | "cold" | "part";
const PIECES: Piece[] = ["whole", "cold", "part"];

export interface IndexedSymbol {
  id: number;
  /** the name as stored ("puts@GLIBC_2.2.5" in a linked .symtab) */
  name: string;
  /** the name it is indexed under: without a "@VERSION" suffix */
  baseName: string;
  defined: boolean;
  value: bigint;
  size: bigint;
  bind: number;
  type: number;
  other: number;
  versym: number;
  shndx: number;
  /** id of the STT_FILE symbol of its group (locals), or -1 */
  file: number;
  /** 1-based position among the locals of this name in table order; 0 for non-locals */
  sympos: number;
  piece: Piece;
  /** id of the whole function it belongs to (itself when whole), -1 when absent or not a function */
  root: number;
  /** the root's name (a prefix of name) */
  rootName: string;
}

export interface FunctionAt {
  id: number;
  start: bigint;
  end: bigint;
  root: number;
  piece: Piece;
  /** the symbol is unsized: its end is the next function's start (or its section's end) */
  guessedEnd: boolean;
}

export const enum LookupFlags {
  NONE = 0,
  /** a data reference (GLOB_DAT, R_X86_64_64): an executable's canonical PLT entries count */
  DATA = 1,
  /** an unversioned reference of an old binary: the oldest version, not the default */
  OLDEST = 2,
  /** LD_DYNAMIC_WEAK=1: a later global definition beats an earlier weak one */
  DYNAMIC_WEAK = 4,
  /** the requested version is hidden (vna_other bit 15) */
  HIDDEN_REQUEST = 8,
}

export type SymbolKind = "func" | "object" | "ifunc" | "tls" | "notype" | "common";
const KINDS: Array<SymbolKind | undefined> = [undefined, "func", "object", "ifunc", "tls", "notype", "common"];

export interface ScopeEntry {
  index: SymbolIndex;
  /** load bias: runtime address = bias + st_value */
  bias: bigint;
}

export interface Binding {
  /** position of the defining module in the scope */
  position: number;
  index: SymbolIndex;
  id: number;
  kind: SymbolKind;
  weak: boolean;
  absolute: boolean;
  /** an executable's undefined symbol with a value (its PLT entry stands for the function) */
  canonicalPlt: boolean;
  protectedVisibility: boolean;
  hiddenVersion: boolean;
  /** runtime address; undefined for IFUNC (see resolver) and TLS (see value) */
  address?: bigint;
  value: bigint;
  size: bigint;
  /** IFUNC: runtime address of the resolver */
  resolver?: bigint;
}

export type PltSection = "plt" | "plt.sec" | "plt.got";
const PLT_SECTIONS: Array<PltSection | undefined> = [undefined, "plt", "plt.sec", "plt.got"];

export const R_X86_64_64 = 1;
export const R_X86_64_COPY = 5;
export const R_X86_64_GLOB_DAT = 6;
export const R_X86_64_JUMP_SLOT = 7;
export const R_X86_64_DTPMOD64 = 16;
export const R_X86_64_DTPOFF64 = 17;
export const R_X86_64_TPOFF64 = 18;
export const R_X86_64_IRELATIVE = 37;

export interface Slot {
  /** link-time address of the slot (R_X86_64_COPY: of the copy) */
  address: bigint;
  /** link-time address of the PLT entry jumping through the slot */
  plt?: bigint;
  pltSection?: PltSection;
  addend: bigint;
  type: number;
  /** .dynsym id (IRELATIVE: the IFUNC whose resolver is the addend), -1 when none */
  symbol: number;
}

interface SymExports {
  sym_index_new(elf: number, table: number): number;
  sym_index_close(h: number): number;
  sym_index_info(h: number, out: number): number;
  sym_get(h: number, id: number, out: number): number;
  sym_find(h: number, name: number, len: number): number;
  sym_find_next(h: number, id: number): number;
  sym_find_local(h: number, name: number, len: number, file: number, fileLen: number, sympos: number): number;
  sym_find_many(h: number, names: number, count: number, out: number): number;
  sym_at(h: number, addr: bigint, shndx: number, out: number): number;
  sym_at_many(h: number, addrs: number, count: number, shndx: number, out: number): number;
  sym_scope_find(scope: number, count: number, name: number, len: number, ver: number, verLen: number, flags: number, out: number): number;
  sym_slot_count(h: number): number;
  sym_slots(h: number, first: number, count: number, out: number): number;
  sym_slots_find(h: number, name: number, len: number, ver: number, verLen: number, out: number, max: number): number;
}

const encoder = new TextEncoder();

/** Splits "memcpy@GLIBC_2.14" / "memcpy@@GLIBC_2.14" into name and version. */
export function splitVersion(ref: string): { name: string; version?: string } {
  const at = ref.indexOf("@");
  if (at < 0) return { name: ref };
  return { name: ref.slice(0, at), version: ref.slice(ref[at + 1] === "@" ? at + 2 : at + 1) };
}

export class SymbolIndex {
  readonly handle: number;
  readonly table: SymbolTable.SYMTAB | SymbolTable.DYNSYM;
  readonly count: number;
  readonly functionCount: number;
  readonly isRelocatable: boolean;
  private readonly x: SymExports;
  private closed = false;

  constructor(
    readonly core: Core,
    readonly elf: ElfReader,
    table: SymbolTable = SymbolTable.BEST,
  ) {
    this.x = core.exports as unknown as SymExports;
    this.handle = this.x.sym_index_new(elf.handle, table);
    if (this.handle === 0) throw core.lastError(elf.name);
    const info = this.scratch(32, (out) => {
      if (this.x.sym_index_info(this.handle, out) !== 0) throw core.lastError(elf.name);
      const v = core.view;
      return { n: v.getUint32(out, true), table: v.getUint32(out + 4, true), m: v.getUint32(out + 8, true), flags: v.getUint32(out + 20, true) };
    });
    this.count = info.n;
    this.table = info.table as SymbolTable.SYMTAB | SymbolTable.DYNSYM;
    this.functionCount = info.m;
    this.isRelocatable = (info.flags & 1) !== 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.x.sym_index_close(this.handle);
  }

  private scratch<T>(size: number, fn: (out: number) => T): T {
    const out = this.core.exports.alloc(size);
    try {
      return fn(out);
    } finally {
      this.core.exports.free(out);
    }
  }

  /** Runs fn with the UTF-8 bytes of each string in core memory (ptr 0 for an empty one). */
  private withStrings<T>(strs: string[], fn: (ptrs: Array<[number, number]>) => T): T {
    const e = this.core.exports;
    const bufs = strs.map((s) => encoder.encode(s));
    const ptrs: Array<[number, number]> = bufs.map((b) => (b.length ? [this.core.copyIn(b), b.length] : [0, 0]));
    try {
      return fn(ptrs);
    } finally {
      for (const [p] of ptrs) if (p) e.free(p);
    }
  }

  /** A lookup result: id, or undefined when absent; throws on a failure. */
  private lookup(r: number): number | undefined {
    if (r >= 0) return r;
    if (this.core.exports.core_error_code() !== 0) throw this.core.lastError(this.elf.name);
    return undefined;
  }

  get(id: number): IndexedSymbol {
    return this.scratch(64, (out) => {
      const rc = this.x.sym_get(this.handle, id, out);
      if (rc !== 0) throw this.core.lastError(this.elf.name);
      const v = this.core.view;
      const info = v.getUint8(out + 32);
      const nameLen = v.getUint32(out + 8, true);
      const name = nameLen ? this.core.string(v.getUint32(out + 4, true), nameLen) : "";
      const rootLen = v.getUint32(out + 56, true);
      const baseLen = v.getUint32(out + 60, true);
      return {
        id,
        name,
        baseName: name.slice(0, baseLen),
        defined: (v.getUint32(out + 12, true) & 1) !== 0,
        value: v.getBigUint64(out + 16, true),
        size: v.getBigUint64(out + 24, true),
        bind: info >> 4,
        type: info & 15,
        other: v.getUint8(out + 33),
        versym: v.getUint16(out + 34, true),
        shndx: v.getUint32(out + 36, true),
        file: v.getInt32(out + 40, true),
        sympos: v.getUint32(out + 44, true),
        piece: PIECES[v.getUint32(out + 48, true)],
        root: v.getInt32(out + 52, true),
        rootName: name.slice(0, rootLen),
      };
    });
  }

  /** The first symbol (table order) of this name. */
  find(name: string): number | undefined {
    return this.withStrings([name], ([[p, l]]) => this.lookup(this.x.sym_find(this.handle, p, l)));
  }

  /** Every symbol of this name, in table order. */
  findAll(name: string): number[] {
    const r: number[] = [];
    let id = this.find(name);
    while (id !== undefined) {
      r.push(id);
      id = this.lookup(this.x.sym_find_next(this.handle, id));
    }
    return r;
  }

  /** A local symbol by source file (STT_FILE name or its last path component) and/or sympos. */
  findLocal(name: string, where: { file?: string; sympos?: number } = {}): number | undefined {
    return this.withStrings([name, where.file ?? ""], ([[p, l], [fp, fl]]) => this.lookup(this.x.sym_find_local(this.handle, p, l, fp, fl, where.sympos ?? 0)));
  }

  /** Batch find: ids (-1 when absent) for many names. */
  findMany(names: string[]): Int32Array {
    const bufs = names.map((s) => encoder.encode(s));
    const total = bufs.reduce((a, b) => a + b.length, 0);
    const e = this.core.exports;
    const blob = e.alloc(total);
    const table = e.alloc(8 * names.length);
    const out = e.alloc(4 * names.length);
    try {
      const mem = this.core.bytes;
      const v = this.core.view;
      let at = blob;
      bufs.forEach((b, i) => {
        mem.set(b, at);
        v.setUint32(table + 8 * i, at, true);
        v.setUint32(table + 8 * i + 4, b.length, true);
        at += b.length;
      });
      if (this.x.sym_find_many(this.handle, table, names.length, out) < 0) throw this.core.lastError(this.elf.name);
      return new Int32Array(this.core.exports.memory.buffer.slice(out, out + 4 * names.length));
    } finally {
      e.free(blob);
      e.free(table);
      e.free(out);
    }
  }

  /** The innermost function containing a link-time address (ET_REL: an offset in section shndx). */
  at(addr: bigint, shndx = 0): FunctionAt | undefined {
    return this.scratch(32, (out) => {
      const id = this.lookup(this.x.sym_at(this.handle, addr, shndx, out));
      if (id === undefined) return undefined;
      const v = this.core.view;
      return {
        id,
        start: v.getBigUint64(out, true),
        end: v.getBigUint64(out + 8, true),
        root: v.getInt32(out + 20, true),
        piece: PIECES[v.getUint32(out + 24, true)],
        guessedEnd: (v.getUint32(out + 28, true) & 1) !== 0,
      };
    });
  }

  /** Batch at: ids (-1 when none) for many link-time addresses. */
  atMany(addrs: BigUint64Array | bigint[], shndx = 0): Int32Array {
    const n = addrs.length;
    const e = this.core.exports;
    const inp = e.alloc(8 * n);
    const out = e.alloc(4 * n);
    try {
      new BigUint64Array(e.memory.buffer, inp, n).set(addrs as ArrayLike<bigint>);
      if (this.x.sym_at_many(this.handle, inp, n, shndx, out) < 0) throw this.core.lastError(this.elf.name);
      return new Int32Array(e.memory.buffer.slice(out, out + 4 * n));
    } finally {
      e.free(inp);
      e.free(out);
    }
  }

  private readSlots(out: number, n: number): Slot[] {
    const v = this.core.view;
    const r: Slot[] = [];
    for (let i = 0; i < n; i++) {
      const o = out + 40 * i;
      const plt = v.getBigUint64(o + 8, true);
      r.push({
        address: v.getBigUint64(o, true),
        plt: plt ? plt : undefined,
        pltSection: PLT_SECTIONS[v.getUint32(o + 32, true)],
        addend: v.getBigInt64(o + 16, true),
        type: v.getUint32(o + 24, true),
        symbol: v.getInt32(o + 28, true),
      });
    }
    return r;
  }

  /** Every GOT/PLT slot of the module (index over .dynsym of a linked file). */
  slots(): Slot[] {
    const n = this.x.sym_slot_count(this.handle);
    if (n < 0) throw this.core.lastError(this.elf.name);
    return this.scratch(Math.max(40 * n, 8), (out) => {
      if (this.x.sym_slots(this.handle, 0, n, out) < 0) throw this.core.lastError(this.elf.name);
      return this.readSlots(out, n);
    });
  }

  /** The module's slots for a symbol ("memcpy", or "memcpy@GLIBC_2.14" to keep only that version). */
  slotsOf(ref: string): Slot[] {
    const { name, version } = splitVersion(ref);
    return this.withStrings([name, version ?? ""], ([[p, l], [vp, vl]]) => {
      let max = 16;
      for (;;) {
        const r = this.scratch(40 * max, (out) => {
          const n = this.x.sym_slots_find(this.handle, p, l, vp, vl, out, max);
          if (n < 0) throw this.core.lastError(this.elf.name);
          return n <= max ? this.readSlots(out, n) : n;
        });
        if (typeof r !== "number") return r;
        max = r;
      }
    });
  }
}

/**
 * Binds a reference ("memcpy", "memcpy@GLIBC_2.14") as ld.so would over `scope`, in
 * order. Every index must be over a module's .dynsym and share one core.
 */
export function lookupInScope(core: Core, scope: ScopeEntry[], ref: string, flags: LookupFlags = LookupFlags.NONE): Binding | undefined {
  const x = core.exports as unknown as SymExports;
  const { name, version } = splitVersion(ref);
  const e = core.exports;
  const nb = encoder.encode(name);
  const vb = encoder.encode(version ?? "");
  const sp = e.alloc(Math.max(16 * scope.length, 16));
  const np = nb.length ? core.copyIn(nb) : 0;
  const vp = vb.length ? core.copyIn(vb) : 0;
  const out = e.alloc(48);
  try {
    const v = core.view;
    scope.forEach((s, i) => {
      v.setInt32(sp + 16 * i, s.index.handle, true);
      v.setUint32(sp + 16 * i + 4, 0, true);
      v.setBigUint64(sp + 16 * i + 8, BigInt.asUintN(64, s.bias), true);
    });
    const pos = x.sym_scope_find(sp, scope.length, np, nb.length, vp, vb.length, flags, out);
    if (pos < 0) {
      if (e.core_error_code() !== 0) throw core.lastError(ref);
      return undefined;
    }
    const r = core.view;
    const kind = KINDS[r.getUint32(out + 8, true)]!;
    const f = r.getUint32(out + 12, true);
    const address = r.getBigUint64(out + 16, true);
    return {
      position: pos,
      index: scope[pos].index,
      id: r.getUint32(out + 4, true),
      kind,
      weak: (f & 1) !== 0,
      absolute: (f & 2) !== 0,
      canonicalPlt: (f & 4) !== 0,
      protectedVisibility: (f & 8) !== 0,
      hiddenVersion: (f & 16) !== 0,
      address: kind === "ifunc" || kind === "tls" ? undefined : address,
      value: r.getBigUint64(out + 24, true),
      size: r.getBigUint64(out + 32, true),
      resolver: kind === "ifunc" ? r.getBigUint64(out + 40, true) : undefined,
    };
  } finally {
    e.free(sp);
    if (np) e.free(np);
    if (vp) e.free(vp);
    e.free(out);
  }
}

export { CoreError };
