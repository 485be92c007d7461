// The symbol index over mutated symbol tables, relocations and PLT bytes: whatever
// elf_open accepts, building the index and every lookup must neither trap nor hang nor
// read outside the input. Each input is placed so that it ends at the last byte of
// linear memory (in pages the allocator does not own), so a read past it traps.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { LIBC, Scratch, run } from "./helpers/gcc.js";

const core = nodeCore();
const e = core.exports as unknown as {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  core_error_code(): number;
  elf_open(p: number, l: number): number;
  elf_close(h: number): number;
  sym_index_new(elf: number, table: number): number;
  sym_index_close(h: number): number;
  sym_get(h: number, id: number, out: number): number;
  sym_find(h: number, p: number, l: number): number;
  sym_find_next(h: number, id: number): number;
  sym_find_local(h: number, p: number, l: number, fp: number, fl: number, pos: number): number;
  sym_at(h: number, addr: bigint, shndx: number, out: number): number;
  sym_scope_find(scope: number, count: number, p: number, l: number, vp: number, vl: number, flags: number, out: number): number;
  sym_slot_count(h: number): number;
  sym_slots(h: number, first: number, count: number, out: number): number;
  sym_slots_find(h: number, p: number, l: number, vp: number, vl: number, out: number, max: number): number;
};

let scratch: Scratch;
const inputs: Record<string, Uint8Array> = {};

beforeAll(() => {
  scratch = new Scratch();
  scratch.write(
    "f.c",
    `#include <stdio.h>
static int __attribute__((noinline)) helper(int x) { return x * 3; }
void __attribute__((cold, noinline)) report(int x) { fprintf(stderr, "%d\\n", x); }
int foo(int x, int *p) { int s = 0; for (int i = 0; i < x; i++) { if (__builtin_expect(p[i] == 42, 0)) { report(i); fprintf(stderr, "x %d\\n", s); } s += p[i] + helper(i); } return s; }
int main(int c, char **v) { int p[8] = {c}; puts(v[0]); return foo(c, p); }`,
  );
  run("gcc", ["-O2", "-c", "f.c", "-o", "f.o"], { cwd: scratch.dir });
  run("gcc", ["-O2", "-fcf-protection=full", "-Wl,-z,ibtplt", "f.c", "-o", "f"], { cwd: scratch.dir });
  inputs.obj = readFileSync(scratch.path("f.o"));
  inputs.exe = readFileSync(scratch.path("f"));
  inputs.libc = readFileSync(LIBC);
});
afterAll(() => scratch?.remove());

/** xorshift32 */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  return { next, below: (n: number) => next() % n, pick: <T>(a: T[]) => a[next() % a.length] };
}

interface Layout {
  symtabs: Array<{ offset: number; count: number }>;
  relas: Array<{ offset: number; count: number }>;
  plts: Array<{ offset: number; size: number }>;
  strs: Array<{ offset: number; size: number }>;
  names: number[]; // st_name values that exist
  nsec: number;
}

function layout(data: Uint8Array): Layout {
  const r = new ElfReader(core, data, "fuzz");
  try {
    const secs = r.sections();
    const l: Layout = { symtabs: [], relas: [], plts: [], strs: [], names: [], nsec: secs.length };
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (const s of secs) {
      const o = Number(s.offset);
      if (s.type === 2 || s.type === 11) {
        const count = Number(s.size) / 24;
        l.symtabs.push({ offset: o, count });
        for (let i = 0; i < count; i++) l.names.push(dv.getUint32(o + i * 24, true));
      } else if (s.type === 4) l.relas.push({ offset: o, count: Number(s.size) / 24 });
      else if (s.type === 3) l.strs.push({ offset: o, size: Number(s.size) });
      if (s.name.startsWith(".plt")) l.plts.push({ offset: o, size: Number(s.size) });
    }
    return l;
  } finally {
    r.close();
  }
}

/** One mutation of a copy of `data`: symbol fields, relocation fields, PLT or string bytes. */
function mutate(data: Uint8Array, l: Layout, rand: ReturnType<typeof rng>): Uint8Array {
  const d = new Uint8Array(data);
  const dv = new DataView(d.buffer);
  const edits = 1 + rand.below(8);
  for (let k = 0; k < edits; k++) {
    const what = rand.below(10);
    if (what < 6 && l.symtabs.length) {
      const t = rand.pick(l.symtabs);
      const o = t.offset + rand.below(t.count) * 24;
      switch (rand.below(6)) {
        case 0: dv.setBigUint64(o + 8, BigInt(rand.next()) * BigInt(1 + rand.below(3) * 0x10000), true); break; // st_value
        case 1: dv.setBigUint64(o + 16, rand.below(4) === 0 ? 0n : BigInt(rand.next() % 0x10000) * (rand.below(5) === 0 ? 0x100000000n : 1n), true); break; // st_size
        case 2: d[o + 4] = rand.pick([0x02, 0x12, 0x22, 0x0a, 0x1a, 0x04, 0x03, 0x01, 0x06, 0xa2, rand.next() & 0xff]); break; // st_info
        case 3: d[o + 5] = rand.below(4); break; // visibility
        case 4: dv.setUint16(o + 6, rand.pick([0, 0xfff1, 0xfff2, rand.below(l.nsec), rand.below(l.nsec)]), true); break; // st_shndx
        case 5: dv.setUint32(o, rand.pick(l.names), true); break; // another symbol's name: duplicates
      }
    } else if (what < 8 && l.relas.length) {
      const t = rand.pick(l.relas);
      if (!t.count) continue;
      const o = t.offset + rand.below(t.count) * 24;
      switch (rand.below(3)) {
        case 0: dv.setUint32(o + 8, rand.pick([1, 5, 6, 7, 16, 17, 18, 37, rand.below(50)]), true); break;
        case 1: dv.setBigUint64(o, BigInt(rand.next()) * BigInt(1 + rand.below(2) * 0x100000), true); break;
        case 2: dv.setBigInt64(o + 16, BigInt(rand.next() | 0), true); break;
      }
    } else if (what < 9 && l.plts.length) {
      const t = rand.pick(l.plts);
      if (t.size) d[t.offset + rand.below(t.size)] = rand.pick([0xff, 0x25, 0xf2, 0xf3, 0x0f, 0x1e, 0xfa, rand.next() & 0xff]);
    } else if (l.strs.length) {
      const t = rand.pick(l.strs);
      if (t.size > 1) d[t.offset + 1 + rand.below(t.size - 1)] = rand.pick([0x2e, 0x40, 0x63, 0x6f, 0x6c, 0x64, 0x70, 0x61, 0x72, 0x74, 0x30, 0x5f, 0, rand.next() & 0xff]);
    }
  }
  return d;
}

let ourStart = 0; // [ourStart, ourEnd): pages grown here, past the allocator's end
let ourEnd = 0;

/** Copies `data` so that it ends at the last byte of memory; returns its pointer. */
function placeAtEnd(data: Uint8Array): number {
  const mem = e.memory;
  if (mem.buffer.byteLength !== ourEnd || ourEnd - ourStart < data.length) {
    ourStart = mem.buffer.byteLength;
    mem.grow(Math.ceil(data.length / 65536));
    ourEnd = mem.buffer.byteLength;
  }
  const ptr = ourEnd - data.length;
  new Uint8Array(mem.buffer).set(data, ptr);
  return ptr;
}

/** Returns how many indexes were built (0 when elf_open refused the input). */
function exercise(data: Uint8Array, rand: ReturnType<typeof rng>, scratchBuf: number, names: number, scope: number): number {
  const ptr = placeAtEnd(data);
  const elf = e.elf_open(ptr, data.length);
  if (!elf) return 0; // refused by the ELF reader: its own fuzz test's business
  let built = 0;
  for (const table of [2, 1]) {
    const h = e.sym_index_new(elf, table);
    if (!h) continue;
    built++;
    const v = new DataView(e.memory.buffer);
    // Every symbol record; lookups by each name found; addresses around each value.
    let n = 0;
    while (e.sym_get(h, n, scratchBuf) === 0 && n < 5000) n++;
    for (let i = 0; i < Math.min(n, 300); i++) {
      const id = rand.below(n);
      e.sym_get(h, id, scratchBuf);
      const dv = new DataView(e.memory.buffer);
      const np = dv.getUint32(scratchBuf + 4, true);
      const baseLen = dv.getUint32(scratchBuf + 60, true);
      const value = dv.getBigUint64(scratchBuf + 16, true);
      const shndx = dv.getUint32(scratchBuf + 36, true);
      let f = e.sym_find(h, np, baseLen);
      for (let k = 0; f >= 0 && k < 50; k++) f = e.sym_find_next(h, f);
      e.sym_find_local(h, np, baseLen, np, rand.below(4), rand.below(3));
      for (const a of [value, value + 1n, value - 1n, value + BigInt(rand.below(4096))]) e.sym_at(h, BigInt.asUintN(64, a), shndx, scratchBuf + 64);
      e.sym_at(h, BigInt(rand.next()) * 0x10000n, rand.below(64), scratchBuf + 64);
      if (table === 1) {
        v.setInt32(scope, h, true);
        v.setBigUint64(scope + 8, 0x7f0000000000n, true);
        e.sym_scope_find(scope, 1, np, baseLen, np, rand.below(2) ? 0 : Math.min(baseLen, 8), rand.below(16), scratchBuf + 128);
        e.sym_slots_find(h, np, baseLen, 0, 0, names, 64);
      }
    }
    if (table === 1) {
      const c = e.sym_slot_count(h);
      if (c > 0) e.sym_slots(h, 0, Math.min(c, 64), names);
    }
    expect(e.sym_index_close(h)).toBe(0);
  }
  e.elf_close(elf);
  return built;
}

describe("symbol index fuzz", () => {
  it("a read past an input placed at the end of memory traps", () => {
    const ptr = placeAtEnd(inputs.obj);
    const elf = e.elf_open(ptr, inputs.obj.length);
    const h = e.sym_index_new(elf, 0);
    expect(h).toBeGreaterThan(0);
    expect(() => e.sym_find(h, ourEnd - 4, 8)).toThrow(WebAssembly.RuntimeError);
    e.sym_index_close(h);
    e.elf_close(elf);
  });

  for (const [name, cases] of [
    ["obj", 400],
    ["exe", 400],
    ["libc", 60],
  ] as const) {
    it(`${name}: ${cases} mutated inputs build and answer without a trap`, () => {
      const base = inputs[name];
      const l = layout(base);
      const rand = rng(0xf00d + cases);
      const buf = e.alloc(256);
      const names = e.alloc(64 * 40);
      const scope = e.alloc(16);
      try {
        expect(exercise(base, rand, buf, names, scope)).toBeGreaterThan(0);
        let built = 0;
        for (let i = 0; i < cases; i++) built += exercise(mutate(base, l, rand), rand, buf, names, scope) > 0 ? 1 : 0;
        expect(built).toBeGreaterThan(cases / 2); // most mutations pass elf_open and reach the index
      } finally {
        e.free(buf);
        e.free(names);
        e.free(scope);
      }
    }, 120_000);
  }
});
