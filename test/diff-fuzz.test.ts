// The object diff over mutated objects: whatever elf_open accepts, diff_objects and every
// record export must neither trap nor hang nor read outside the inputs. The mutated input
// is placed so that it ends at the last byte of linear memory (in pages the allocator
// does not own), so a read past it traps. Mutations hit symbols, relocations, code and
// data bytes, .debug_line (read for the line-only check) and section headers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { Scratch } from "./helpers/gcc.js";
import { compilePair } from "./helpers/diff.js";

const core = nodeCore();
const e = core.exports as unknown as {
  memory: WebAssembly.Memory;
  alloc(n: number): number;
  free(p: number): void;
  core_error_code(): number;
  elf_open(p: number, l: number): number;
  elf_close(h: number): number;
  diff_objects(a: number, b: number): number;
  diff_close(h: number): number;
  diff_info(h: number, out: number): number;
  diff_functions(h: number, first: number, count: number, out: number): number;
  diff_refs(h: number, first: number, count: number, out: number): number;
  diff_data(h: number, first: number, count: number, out: number): number;
  diff_refusals(h: number, first: number, count: number, out: number): number;
  diff_line_sites(h: number, first: number, count: number, out: number): number;
};

const SRC = (pad: string) => `#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
__thread int depth;
int counter = 3;
static const char *names[] = { "zero", "one", "two" };
int first(int x) { return x${pad}; }
int sw(int x, int y) { switch (x) { case 0: return y + 11; case 1: return y * 22; case 2: return y - 35;
  case 3: return y / 47; case 4: return y ^ 59; case 5: return y << 3; case 6: return y | 73; default: return -1000; } }
int checked(int x) {
  assert(x > 0);
  static int calls;
  return x * 2 + ++calls + ++depth;
}
double scale(double v) { return v * 3.25 + counter; }
const char *name(int i) { printf("name %d\\n", i); return names[i % 3]; }
__attribute__((constructor)) static void init(void) { counter++; }
`;

let scratch: Scratch;
const inputs: { orig: Uint8Array; patched: Uint8Array } = { orig: new Uint8Array(), patched: new Uint8Array() };

beforeAll(() => {
  scratch = new Scratch();
  const p = compilePair(scratch, SRC(" + 1"), SRC(" +\n   2"), { flags: ["-O2", "-g", "-ffunction-sections", "-fdata-sections"] });
  inputs.orig = readFileSync(p.orig);
  inputs.patched = readFileSync(p.patched);
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
  symtab: { offset: number; count: number };
  relas: Array<{ offset: number; count: number }>;
  bytes: Array<{ offset: number; size: number }>; // code, data, .debug_line
  debugLine: { offset: number; size: number };
  shoff: number;
  nsec: number;
}

function layout(data: Uint8Array): Layout {
  const r = new ElfReader(core, data, "fuzz");
  try {
    const secs = r.sections();
    const l: Layout = { symtab: { offset: 0, count: 0 }, relas: [], bytes: [], debugLine: { offset: 0, size: 0 }, shoff: 0, nsec: secs.length };
    l.shoff = Number(new DataView(data.buffer, data.byteOffset).getBigUint64(40, true));
    for (const s of secs) {
      const o = Number(s.offset);
      if (s.type === 2) l.symtab = { offset: o, count: Number(s.size) / 24 };
      else if (s.type === 4) l.relas.push({ offset: o, count: Number(s.size) / 24 });
      else if (s.type === 1 && s.size > 0n && ((s.flags & 2n) !== 0n || s.name === ".debug_line")) l.bytes.push({ offset: o, size: Number(s.size) });
      if (s.name === ".debug_line") l.debugLine = { offset: o, size: Number(s.size) };
    }
    return l;
  } finally {
    r.close();
  }
}

function mutate(data: Uint8Array, l: Layout, rand: ReturnType<typeof rng>): Uint8Array {
  const d = new Uint8Array(data);
  const dv = new DataView(d.buffer);
  const edits = 1 + rand.below(6);
  for (let k = 0; k < edits; k++) {
    const what = rand.below(12);
    if (what < 3 && l.symtab.count) {
      const o = l.symtab.offset + rand.below(l.symtab.count) * 24;
      switch (rand.below(5)) {
        case 0: dv.setBigUint64(o + 8, BigInt(rand.below(4) === 0 ? rand.next() : rand.below(256)), true); break; // st_value
        case 1: dv.setBigUint64(o + 16, BigInt(rand.below(3) === 0 ? rand.next() : rand.below(512)), true); break; // st_size
        case 2: d[o + 4] = rand.pick([0x01, 0x02, 0x03, 0x06, 0x11, 0x12, 0x16, 0x22, 0x0a, rand.next() & 0xff]); break; // st_info
        case 3: dv.setUint16(o + 6, rand.pick([0, 0xfff1, 0xfff2, rand.below(l.nsec), rand.below(l.nsec)]), true); break; // st_shndx
        case 4: dv.setUint32(o, dv.getUint32(l.symtab.offset + rand.below(l.symtab.count) * 24, true), true); break; // duplicate names
      }
    } else if (what < 6 && l.relas.length) {
      const t = rand.pick(l.relas);
      if (!t.count) continue;
      const o = t.offset + rand.below(t.count) * 24;
      switch (rand.below(4)) {
        case 0: dv.setUint32(o + 8, rand.pick([1, 2, 4, 9, 10, 11, 19, 21, 23, 24, 41, 42, rand.below(50)]), true); break; // type
        case 1: dv.setBigUint64(o, BigInt(rand.below(3) === 0 ? rand.next() : rand.below(300)), true); break; // offset
        case 2: dv.setBigInt64(o + 16, BigInt(rand.below(3) === 0 ? rand.next() | 0 : rand.below(64) - 32), true); break; // addend
        case 3: dv.setUint32(o + 12, rand.below(l.symtab.count + 2), true); break; // symbol (elf_open refuses out of range)
      }
    } else if (what < 9 && l.bytes.length) {
      const t = rand.pick(l.bytes);
      d[t.offset + rand.below(t.size)] = rand.pick([0, 0xff, 0x0f, 0xc7, 0xb8, 0x62, 0xc4, 0x66, rand.next() & 0xff]);
    } else if (what < 11 && l.debugLine.size) {
      const o = l.debugLine.offset + rand.below(l.debugLine.size);
      d[o] = rand.pick([0, 1, 2, 3, 0xff, 0x80, rand.next() & 0xff]);
    } else {
      // a section header field: flags, size, entsize, info
      const o = l.shoff + rand.below(l.nsec) * 64;
      switch (rand.below(4)) {
        case 0: dv.setBigUint64(o + 8, BigInt(rand.pick([0, 2, 3, 6, 0x32, 0x402, 0x403, rand.below(4096)])), true); break;
        case 1: dv.setBigUint64(o + 32, BigInt(rand.below(512)), true); break;
        case 2: dv.setBigUint64(o + 56, BigInt(rand.pick([0, 1, 4, 8, 16, 3, rand.next()])), true); break;
        case 3: dv.setUint32(o + 44, rand.below(l.nsec + 1), true); break;
      }
    }
  }
  return d;
}

let ourStart = 0;
let ourEnd = 0;

/** Copies `data` so that it ends at the last byte of memory; returns its pointer. */
function placeAtEnd(data: Uint8Array): number {
  const mem = e.memory;
  if (mem.buffer.byteLength !== ourEnd || ourEnd - ourStart < data.length) {
    ourStart = mem.buffer.byteLength;
    mem.grow(Math.ceil(data.length / 65536) + 1);
    ourEnd = mem.buffer.byteLength;
  }
  const ptr = ourEnd - data.length;
  new Uint8Array(mem.buffer).set(data, ptr);
  return ptr;
}

/** Diffs (orig, patched) with `atEnd` placed at the end of memory; returns whether a diff was made. */
function exercise(orig: Uint8Array, patched: Uint8Array, mutatedIsOrig: boolean, out: number): boolean {
  const other = mutatedIsOrig ? patched : orig;
  const optr = e.alloc(other.length);
  new Uint8Array(e.memory.buffer).set(other, optr);
  const mptr = placeAtEnd(mutatedIsOrig ? orig : patched);
  const ma = e.elf_open(mptr, (mutatedIsOrig ? orig : patched).length);
  const oa = e.elf_open(optr, other.length);
  let made = false;
  if (ma && oa) {
    const h = mutatedIsOrig ? e.diff_objects(ma, oa) : e.diff_objects(oa, ma);
    if (h) {
      made = true;
      expect(e.diff_info(h, out)).toBe(0);
      const v = new DataView(e.memory.buffer);
      const counts = [0, 4, 8, 12, 16].map((k) => v.getUint32(out + k, true));
      const sizes = [64, 40, 48, 24, 24];
      const fns = [e.diff_functions, e.diff_refs, e.diff_data, e.diff_refusals, e.diff_line_sites];
      counts.forEach((n, i) => {
        const c = Math.min(n, 4096 / sizes[i]);
        const buf = e.alloc(Math.max(c * sizes[i], 1));
        expect(fns[i](h, 0, c, buf)).toBe(c);
        e.free(buf);
      });
      expect(e.diff_close(h)).toBe(0);
    } else {
      expect(e.core_error_code()).toBeGreaterThanOrEqual(700);
    }
  }
  if (ma) e.elf_close(ma);
  if (oa) e.elf_close(oa);
  e.free(optr);
  return made;
}

describe("object diff fuzz", () => {
  it("the unmutated pair diffs with a line-only function, and an access past the end of memory traps", () => {
    const out = e.alloc(64);
    expect(exercise(inputs.orig, inputs.patched, false, out)).toBe(true);
    expect(new DataView(e.memory.buffer).getUint32(out + 16, true)).toBeGreaterThan(0); // line sites: .debug_line was read
    e.free(out);
    // An access past the end of memory traps: a record written across it.
    const ptr = placeAtEnd(inputs.patched);
    const pa = e.alloc(inputs.orig.length);
    new Uint8Array(e.memory.buffer).set(inputs.orig, pa);
    const ha = e.elf_open(pa, inputs.orig.length);
    const hb = e.elf_open(ptr, inputs.patched.length);
    const h = e.diff_objects(ha, hb);
    expect(h).toBeGreaterThan(0);
    expect(() => e.diff_info(h, ourEnd - 8)).toThrow(WebAssembly.RuntimeError);
    e.diff_close(h);
    e.elf_close(ha);
    e.elf_close(hb);
    e.free(pa);
  });

  // DIFF_FUZZ_N and DIFF_FUZZ_SEED run longer or other campaigns by hand.
  const N = Number(process.env.DIFF_FUZZ_N ?? 2000);
  const SEED = Number(process.env.DIFF_FUZZ_SEED ?? 0);
  for (const [side, seed] of [["patched", 0x5eed1 + SEED], ["orig", 0xd1ff + SEED]] as const) {
    it(`${N} mutations of the ${side} object: no trap, no hang`, () => {
      const rand = rng(seed);
      const src = side === "orig" ? inputs.orig : inputs.patched;
      const l = layout(src);
      const out = e.alloc(64);
      let made = 0;
      for (let i = 0; i < N; i++) {
        const m = mutate(src, l, rand);
        try {
          if (side === "orig" ? exercise(m, inputs.patched, true, out) : exercise(inputs.orig, m, false, out)) made++;
        } catch (err) {
          throw new Error(`mutation ${i} (seed ${seed}): ${(err as Error).message}`);
        }
      }
      e.free(out);
      expect(made).toBeGreaterThan(N / 4); // most mutations still make a diff: the code paths run
    }, 120_000 + N * 20);
  }
});
