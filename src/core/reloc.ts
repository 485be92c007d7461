// Typed wrapper over the relocation engine exports (docs/core-abi.md, "Relocation engine").
// A Relocation works on an open ElfReader of an ET_REL object, which must stay open
// until the Relocation is closed.
import { Core } from "./instance.js";
import type { ElfReader } from "./elf.js";

/** What relocations ask of a symbol (bits of RelocRef.refs). */
export const Ref = {
  ADDR: 1, // S as an address
  CALL: 2, // a branch or PLT reference (L or S)
  GOT: 4, // a GOT slot holding S
  TPOFF_GOT: 8, // a GOT slot holding tpoff(S) (initial exec)
  TPOFF: 16, // tpoff(S) (local exec)
  TLSGD: 32, // a GOT pair (module, offset) (general dynamic)
  TLSLD: 64, // a GOT pair (module, 0) (local dynamic)
  DTPOFF: 128, // offset in the module's TLS block
  SIZE: 256, // the symbol's size
  PCREL: 512, // a PC-relative data reference (no stub can extend it)
} as const;

export const enum GotKind {
  ADDR = 0,
  TPOFF = 1,
  TLSGD = 2,
  TLSLD = 3,
}

export const SLOT_KINDS = ["addr", "tpoff", "gd-module", "gd-offset", "ld-module", "ld-zero"] as const;
export type SlotKind = (typeof SLOT_KINDS)[number];

export interface RelocInfo {
  relocations: number;
  tables: number;
  refCount: number;
  usesGot: boolean;
  hasTlsSections: boolean;
  tlsRefs: boolean;
  staticTls: boolean;
  dynamicTls: boolean;
  sections: number;
  stubCandidates: number;
  maxAlign: bigint;
  /** Referenced symbols without a section (undefined, absolute, common): the first of refs(). */
  refUndefined: number;
}

export interface RelocRef {
  sym: number;
  name: string;
  refs: number;
  shndx: number;
  bind: number;
  type: number;
  other: number;
  value: bigint;
  undefined: boolean;
  weak: boolean;
  tls: boolean;
  gotSymbol: boolean; // _GLOBAL_OFFSET_TABLE_ (resolved by the engine)
  common: boolean;
}

export interface RelocPlan {
  gotSize: bigint;
  stubSize: bigint;
  gotSlots: number;
  stubs: number;
  below2G: boolean;
  below4G: boolean;
  /** Every section must end at or below this address (0n: no limit). */
  below: bigint;
  /** PC-relative references reach lo..hi: every section must lie within +-2 GiB of both. */
  near?: { lo: bigint; hi: bigint };
  maxAlign: bigint;
}

export interface TlsFacts {
  module: bigint;
  /** Offset from the thread pointer of the module's TLS block; undefined when its TLS is dynamic. */
  blockTpoff?: bigint;
}

export interface GotSlot {
  addr: bigint;
  value: bigint;
  sym: number;
  kind: SlotKind;
}

export interface Stub {
  addr: bigint;
  target: bigint;
  sym: number;
  branch: boolean;
  addend: bigint;
}

interface RelocExports {
  reloc_open(elf: number): number;
  reloc_close(h: number): number;
  reloc_info(h: number, out: number): number;
  reloc_refs(h: number, first: number, count: number, out: number): number;
  reloc_bind_addr(h: number, sym: number, addr: bigint): number;
  reloc_bind_got(h: number, sym: number, kind: number, addr: bigint): number;
  reloc_bind_plt(h: number, sym: number, addr: bigint): number;
  reloc_bind_tls(h: number, sym: number, module: bigint, offset: bigint, blockTpoff: bigint, flags: number): number;
  reloc_set_tls(h: number, module: bigint, tlsStart: bigint, blockTpoff: bigint, flags: number): number;
  reloc_set_got_base(h: number, addr: bigint): number;
  reloc_plan(h: number, out: number): number;
  reloc_place(h: number, sec: number, addr: bigint): number;
  reloc_place_got(h: number, addr: bigint): number;
  reloc_place_stubs(h: number, addr: bigint): number;
  reloc_layout(h: number, base: bigint, flags: number): bigint;
  reloc_section_addr(h: number, sec: number): bigint;
  reloc_area_addr(h: number, which: number): bigint;
  reloc_apply(h: number, out: number, len: number, base: bigint, flags: number): number;
  reloc_tls_image(h: number): bigint;
  reloc_symbol_value(h: number, sym: number, out: number): number;
  reloc_got_slots(h: number, first: number, count: number, out: number): number;
  reloc_stubs(h: number, first: number, count: number, out: number): number;
}

const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);
const i64 = (v: bigint): bigint => BigInt.asIntN(64, v);

export class Relocation {
  readonly handle: number;
  readonly info: RelocInfo;
  private readonly x: RelocExports;
  private readonly core: Core;
  private closed = false;

  constructor(readonly elf: ElfReader) {
    this.core = elf.core;
    this.x = this.core.exports as unknown as RelocExports;
    this.handle = this.x.reloc_open(elf.handle);
    if (this.handle === 0) throw this.core.lastError(elf.name);
    this.info = this.scratch(48, (out) => {
      this.ok(this.x.reloc_info(this.handle, out));
      const v = this.core.view;
      const flags = v.getUint32(out + 12, true);
      return {
        relocations: v.getUint32(out, true),
        tables: v.getUint32(out + 4, true),
        refCount: v.getUint32(out + 8, true),
        usesGot: (flags & 1) !== 0,
        hasTlsSections: (flags & 2) !== 0,
        tlsRefs: (flags & 4) !== 0,
        staticTls: (flags & 8) !== 0,
        dynamicTls: (flags & 16) !== 0,
        sections: v.getUint32(out + 16, true),
        stubCandidates: v.getUint32(out + 20, true),
        maxAlign: v.getBigUint64(out + 24, true),
        refUndefined: v.getUint32(out + 32, true),
      };
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.x.reloc_close(this.handle);
  }

  private scratch<T>(size: number, fn: (out: number) => T): T {
    const out = this.core.exports.alloc(size);
    try {
      return fn(out);
    } finally {
      this.core.exports.free(out);
    }
  }

  private ok(code: number): void {
    if (code !== 0) throw this.core.lastError(this.elf.name);
  }

  /**
   * The symbols the relocations refer to, with what they ask for: those without a section
   * (undefined, absolute, common) first, then the defined ones. `undefinedOnly`: the first group.
   */
  refs(undefinedOnly = false): RelocRef[] {
    const n = undefinedOnly ? this.info.refUndefined : this.info.refCount;
    return this.scratch(32 * n, (out) => {
      if (this.x.reloc_refs(this.handle, 0, n, out) < 0) throw this.core.lastError(this.elf.name);
      const v = this.core.view;
      const r: RelocRef[] = [];
      for (let i = 0; i < n; i++) {
        const o = out + i * 32;
        const len = v.getUint32(o + 12, true);
        const info = v.getUint8(o + 20);
        const flags = v.getUint16(o + 22, true);
        r.push({
          sym: v.getUint32(o, true),
          refs: v.getUint32(o + 4, true),
          name: len ? this.core.string(v.getUint32(o + 8, true), len) : "",
          shndx: v.getUint32(o + 16, true),
          bind: info >> 4,
          type: info & 15,
          other: v.getUint8(o + 21),
          value: v.getBigUint64(o + 24, true),
          undefined: (flags & 1) !== 0,
          weak: (flags & 2) !== 0,
          tls: (flags & 4) !== 0,
          gotSymbol: (flags & 8) !== 0,
          common: (flags & 16) !== 0,
        });
      }
      return r;
    });
  }

  bindAddress(sym: number, addr: bigint): void {
    this.ok(this.x.reloc_bind_addr(this.handle, sym, u64(addr)));
  }

  bindGot(sym: number, kind: GotKind, addr: bigint): void {
    this.ok(this.x.reloc_bind_got(this.handle, sym, kind, u64(addr)));
  }

  bindPlt(sym: number, addr: bigint): void {
    this.ok(this.x.reloc_bind_plt(this.handle, sym, u64(addr)));
  }

  /** A thread-local symbol at `offset` in the TLS block of `tls.module`. */
  bindTls(sym: number, tls: TlsFacts, offset: bigint): void {
    const st = tls.blockTpoff !== undefined;
    this.ok(this.x.reloc_bind_tls(this.handle, sym, u64(tls.module), u64(offset), i64(tls.blockTpoff ?? 0n), st ? 1 : 0));
  }

  /** The module of the object's own TLS sections; `tlsStart` is the address its TLS image starts at. */
  setTls(tls: TlsFacts & { tlsStart: bigint }): void {
    const st = tls.blockTpoff !== undefined;
    this.ok(this.x.reloc_set_tls(this.handle, u64(tls.module), u64(tls.tlsStart), i64(tls.blockTpoff ?? 0n), st ? 1 : 0));
  }

  setGotBase(addr: bigint): void {
    this.ok(this.x.reloc_set_got_base(this.handle, u64(addr)));
  }

  plan(): RelocPlan {
    return this.scratch(64, (out) => {
      this.ok(this.x.reloc_plan(this.handle, out));
      const v = this.core.view;
      const flags = v.getUint32(out + 24, true);
      return {
        gotSize: v.getBigUint64(out, true),
        stubSize: v.getBigUint64(out + 8, true),
        gotSlots: v.getUint32(out + 16, true),
        stubs: v.getUint32(out + 20, true),
        below2G: (flags & 1) !== 0,
        below4G: (flags & 2) !== 0,
        below: v.getBigUint64(out + 32, true),
        near: flags & 4 ? { lo: v.getBigUint64(out + 40, true), hi: v.getBigUint64(out + 48, true) } : undefined,
        maxAlign: v.getBigUint64(out + 56, true),
      };
    });
  }

  place(sec: number, addr: bigint): void {
    this.ok(this.x.reloc_place(this.handle, sec, u64(addr)));
  }

  placeGot(addr: bigint): void {
    this.ok(this.x.reloc_place_got(this.handle, u64(addr)));
  }

  placeStubs(addr: bigint): void {
    this.ok(this.x.reloc_place_stubs(this.handle, u64(addr)));
  }

  /** Packs every SHF_ALLOC section, the stubs and the GOT from base; returns the size. */
  layout(base: bigint, opts: { pages?: boolean } = {}): bigint {
    const r = this.x.reloc_layout(this.handle, u64(base), opts.pages ? 1 : 0);
    if (r === -1n) throw this.core.lastError(this.elf.name);
    return r;
  }

  sectionAddress(sec: number): bigint | undefined {
    const r = this.x.reloc_section_addr(this.handle, sec);
    return r === -1n ? undefined : u64(r);
  }

  get gotAddress(): bigint | undefined {
    const r = this.x.reloc_area_addr(this.handle, 0);
    return r === -1n ? undefined : u64(r);
  }

  get stubsAddress(): bigint | undefined {
    const r = this.x.reloc_area_addr(this.handle, 1);
    return r === -1n ? undefined : u64(r);
  }

  /** Start of the TLS image the layout made (the first SHF_TLS section), if any. */
  get tlsImage(): bigint | undefined {
    const r = this.x.reloc_tls_image(this.handle);
    return r === -1n ? undefined : u64(r);
  }

  /**
   * Relocates into a window of `size` bytes standing for addresses base..base+size, which
   * starts as `initial` (or zeros). Returns the window's bytes. With `partial`, what lies
   * wholly outside the window is skipped (apply again for another window).
   */
  apply(base: bigint, size: number, opts: { initial?: Uint8Array; partial?: boolean } = {}): Uint8Array {
    const initial = opts.initial;
    const out = this.core.exports.alloc(size);
    try {
      const mem = this.core.bytes;
      if (initial) mem.set(initial.subarray(0, size), out);
      else mem.fill(0, out, out + size);
      this.ok(this.x.reloc_apply(this.handle, out, size, u64(base), opts.partial ? 1 : 0));
      return this.core.copyOut(out, size);
    } finally {
      this.core.exports.free(out);
    }
  }

  symbolValue(sym: number): bigint {
    return this.scratch(8, (out) => {
      this.ok(this.x.reloc_symbol_value(this.handle, sym, out));
      return this.core.view.getBigUint64(out, true);
    });
  }

  gotSlots(count: number): GotSlot[] {
    return this.scratch(32 * count, (out) => {
      if (this.x.reloc_got_slots(this.handle, 0, count, out) < 0) throw this.core.lastError(this.elf.name);
      const v = this.core.view;
      const r: GotSlot[] = [];
      for (let i = 0; i < count; i++) {
        const o = out + i * 32;
        r.push({ addr: v.getBigUint64(o, true), value: v.getBigUint64(o + 8, true), sym: v.getUint32(o + 16, true), kind: SLOT_KINDS[v.getUint32(o + 20, true)] });
      }
      return r;
    });
  }

  stubs(count: number): Stub[] {
    return this.scratch(32 * count, (out) => {
      if (this.x.reloc_stubs(this.handle, 0, count, out) < 0) throw this.core.lastError(this.elf.name);
      const v = this.core.view;
      const r: Stub[] = [];
      for (let i = 0; i < count; i++) {
        const o = out + i * 32;
        r.push({ addr: v.getBigUint64(o, true), target: v.getBigUint64(o + 8, true), sym: v.getUint32(o + 16, true), branch: v.getUint32(o + 20, true) !== 0, addend: v.getBigInt64(o + 24, true) });
      }
      return r;
    });
  }
}
