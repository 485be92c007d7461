// The CFI parser, the DWARF expression evaluator, the unwinder's end and failure
// conditions and the conservative scan, on hand-made inputs:
//   - every call frame instruction (gas's .cfi directives, the rest escaped), rows
//     compared with readelf;
//   - the pointer encodings, CIE versions, augmentations and 64-bit lengths gas never
//     emits, built byte by byte, and the named refusals of malformed ones;
//   - every DWARF operation, each evaluated as a register rule while unwinding a
//     synthetic stack (the caller's CFA is that register, so the frame record shows it);
//   - the word scan of both builds (SIMD and portable) against a plain reference.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { nodeCore, coreWasmPath } from "../src/node/core-file.js";
import { loadCoreSync, type Core } from "../src/core/instance.js";
import { CfiRegistry, StackScan, userRegs, type ScanOptions, type ThreadResult } from "../src/core/stack.js";
import { compare, readelfFrames } from "./helpers/cfi-oracle.js";
import { ByteWriter, FIXTURES, fileCfi, synthEhFrame } from "./helpers/stack.js";
import { Scratch } from "./helpers/gcc.js";

describe("every call frame instruction, against readelf (cfi-ops.s)", () => {
  let tmp: Scratch;
  beforeAll(() => { tmp = new Scratch(); });
  afterAll(() => tmp.remove());

  it("rows of gas's directives and of escaped instructions match readelf -wF", () => {
    const so = tmp.gcc(`${FIXTURES}/cfi-ops.s`, "cfi-ops.so", ["-shared", "-nostdlib"]);
    const fdes = readelfFrames(so);
    expect(fdes.length).toBe(4);
    const cfi = fileCfi(so)!;
    for (const hdr of [true, false]) {
      const reg = new CfiRegistry(nodeCore());
      const id = reg.addModule(cfi.ehFrame, cfi.ehAddr, hdr ? cfi.hdr : undefined, cfi.hdrAddr);
      const r = compare(reg, fdes, 0n);
      expect(r.rows).toBeGreaterThanOrEqual(20);
      expect(reg.verify(id)).toEqual({ cies: 4, fdes: 4 });
      // the signal frame, the personality/LSDA CIE, a return column other than 16
      expect(reg.row(fdes[1].begin)!.signalFrame).toBe(true);
      expect(reg.row(fdes[2].begin)!.rules[15]).toEqual({ kind: "unset" });
      const r15 = reg.row(fdes[3].begin)!;
      expect(r15.rules[15]).toEqual({ kind: "offset", offset: -8n });
      reg.free();
    }
  });
});

// ---------------------------------------------------------------------------
// Hand-built .eh_frame: encodings, versions, augmentations, 64-bit lengths.

const EH = 0x400000n; // where the synthetic .eh_frame is
const F1 = 0x401000n, F2 = 0x401100n;

interface Variant { version?: number; aug?: string; enc?: number; long?: boolean; name: string }

/** Writes a pointer in encoding `enc` for `value`, the field being at address `at`. */
function encode(w: ByteWriter, enc: number, value: bigint, at: bigint, range = false): void {
  const v = !range && (enc & 0x70) === 0x10 ? value - at : value; // pcrel
  switch (enc & 0x0f) {
    case 0x00: case 0x04: case 0x0c: w.u64(v); break;
    case 0x01: w.uleb(BigInt.asUintN(64, v)); break;
    case 0x09: w.sleb(BigInt.asIntN(64, v)); break;
    case 0x02: case 0x0a: w.u16(Number(BigInt.asUintN(16, v))); break;
    case 0x03: case 0x0b: w.u32(Number(BigInt.asUintN(32, v))); break;
    default: w.u32(0); break; // an invalid format: what is written does not matter
  }
}

/** CIE at 0 and FDEs for F1 (rows change at +4) and F2, in the variant's format. */
function variantEh(v: Variant): Uint8Array {
  const version = v.version ?? 1, aug = v.aug ?? "zR", enc = v.enc ?? 0x1b, long = !!v.long;
  const w = new ByteWriter();
  const rec = (body: ByteWriter) => {
    if (long) w.u32(0xffffffff).u64(body.length); else w.u32(body.length);
    w.bytes(body.b);
  };
  const idSize = long ? 8 : 4;
  const lenSize = long ? 12 : 4;
  // CIE
  const cie = new ByteWriter();
  if (long) cie.u64(0); else cie.u32(0);
  cie.u8(version).str(aug);
  if (aug === "eh") cie.u64(0x1234);
  if (version === 4) cie.u8(8).u8(0);
  cie.uleb(1).sleb(-8);
  if (version === 1) cie.u8(16); else cie.uleb(16);
  const fdeEnc = aug.includes("R") ? enc : 0x00;
  if (aug.startsWith("z")) {
    const d = new ByteWriter();
    for (const ch of aug.slice(1)) {
      if (ch === "R") d.u8(enc);
      if (ch === "L") d.u8(0x1b);
      if (ch === "P") d.u8(0x00).u64(0x409000); // absptr personality
    }
    cie.uleb(d.length).bytes(d.b);
  }
  cie.u8(0x0c).uleb(7).uleb(8).u8(0x80 | 16).uleb(1);
  rec(cie);
  const fde = (pc: bigint, len: number, prog: number[]) => {
    const start = w.length;
    const body = new ByteWriter();
    const idField = start + lenSize;
    if (long) body.u64(idField); else body.u32(idField);
    const at = EH + BigInt(idField + idSize);
    // the encoder needs the field's address for pcrel and aligned
    const tmp = new ByteWriter();
    if ((fdeEnc & 0x70) === 0x50) { let a = at; while (a % 8n) { tmp.u8(0); a++; } tmp.u64(pc); }
    else encode(tmp, fdeEnc, pc, at);
    body.bytes(tmp.b);
    encode(body, fdeEnc & 0x0f, BigInt(len), 0n, true);
    if (aug.startsWith("z")) {
      if (aug.includes("L")) body.uleb(4).u32(0); else body.uleb(0);
    }
    body.bytes(prog);
    rec(body);
  };
  fde(F1, 0x40, [0x44, 0x0e, 16, 0x83, 2]); // advance 4; def_cfa_offset 16; offset rbx c-16
  fde(F2, 0x20, []);
  w.u32(0);
  return w.out();
}

const VARIANTS: Variant[] = [
  { name: "zR pcrel|sdata4 (gcc's)" },
  { name: "zR absptr", enc: 0x00 },
  { name: "zR udata8", enc: 0x04 },
  { name: "zR sdata8", enc: 0x0c },
  { name: "zR udata4", enc: 0x03 },
  { name: "zR sdata4", enc: 0x0b },
  { name: "zR uleb128", enc: 0x01 },
  { name: "zR sleb128", enc: 0x09 },
  { name: "zR pcrel|sdata2", enc: 0x1a },
  { name: "zR pcrel|udata2", enc: 0x12 },
  { name: "zR pcrel|sdata8", enc: 0x1c },
  { name: "zR pcrel|uleb128", enc: 0x11 },
  { name: "zR aligned", enc: 0x50 },
  { name: "no augmentation (absptr)", aug: "" },
  { name: "\"eh\" augmentation", aug: "eh" },
  { name: "version 3", version: 3 },
  { name: "version 4", version: 4 },
  { name: "zPLR", aug: "zPLR" },
  { name: "zRS", aug: "zRS" },
  { name: "zRB (AArch64 BTI marker)", aug: "zRB" },
  { name: "64-bit lengths", long: true },
  { name: "64-bit lengths, version 3, udata8", long: true, version: 3, enc: 0x04 },
];

describe("pointer encodings, CIE versions, augmentations, 64-bit lengths", () => {
  for (const v of VARIANTS) {
    it(v.name, () => {
      const eh = variantEh(v);
      const reg = new CfiRegistry(nodeCore());
      const id = reg.addModule(eh, EH);
      expect(reg.verify(id)).toEqual({ cies: 1, fdes: 2 });
      const info = reg.moduleInfo(id);
      expect([info.lo, info.hi, info.fdes]).toEqual([F1, F2 + 0x20n, 2]);
      const r0 = reg.row(F1)!;
      expect(r0.cfa).toEqual({ kind: "reg", reg: 7, offset: 8n });
      expect(r0.rules[3].kind).toBe("unset");
      expect([r0.rowStart, r0.rowEnd]).toEqual([F1, F1 + 4n]);
      const r1 = reg.row(F1 + 4n)!;
      expect(r1.cfa).toEqual({ kind: "reg", reg: 7, offset: 16n });
      expect(r1.rules[3]).toEqual({ kind: "offset", offset: -16n });
      expect(r1.rules[16]).toEqual({ kind: "offset", offset: -8n });
      expect([r1.rowStart, r1.rowEnd]).toEqual([F1 + 4n, F1 + 0x40n]);
      expect(r1.signalFrame).toBe(v.aug === "zRS");
      expect(reg.row(F1 + 0x40n)).toBeNull(); // the gap between the two
      expect(reg.row(F2 + 0x1fn)!.fdeBegin).toBe(F2);
      expect(reg.row(F2 + 0x20n)).toBeNull();
      reg.free();
    });
  }

  it("a header table in other encodings (absolute udata8, sdata4 datarel)", () => {
    const eh = variantEh({ name: "" });
    const fdeOffs = [0, 0].map(() => 0);
    // find the FDE offsets by walking the records
    const v = new DataView(eh.buffer);
    let off = 0, k = 0;
    while (off < eh.length && v.getUint32(off, true) !== 0) {
      if (v.getUint32(off + 4, true) !== 0) fdeOffs[k++] = off;
      off += 4 + v.getUint32(off, true);
    }
    const HDR = 0x3ff000n;
    for (const tableEnc of [0x04, 0x3b, 0x0c]) {
      const h = new ByteWriter().u8(1).u8(0x04).u8(0x03).u8(tableEnc).u64(EH).u32(2);
      for (const [pc, fo] of [[F1, fdeOffs[0]], [F2, fdeOffs[1]]] as const) {
        if (tableEnc === 0x3b) h.u32(Number(pc - HDR)).u32(Number(EH + BigInt(fo) - HDR));
        else h.u64(pc).u64(EH + BigInt(fo));
      }
      const reg = new CfiRegistry(nodeCore());
      const id = reg.addModule(eh, EH, h.out(), HDR);
      expect(reg.moduleInfo(id)).toMatchObject({ fromHdr: true, fdes: 2, lo: F1, hi: F2 + 0x20n });
      expect(reg.row(F1 + 5n)!.cfa).toEqual({ kind: "reg", reg: 7, offset: 16n });
      expect(reg.row(F2 + 1n)!.fdeBegin).toBe(F2);
      reg.free();
    }
  });
});

describe("malformed CFI is refused with a named reason", () => {
  const add = (eh: Uint8Array, hdr?: Uint8Array) => {
    const reg = new CfiRegistry(nodeCore());
    try {
      reg.addModule(eh, EH, hdr, 0x3ff000n);
      return null;
    } catch (e) {
      return e as { code: number; message: string };
    } finally {
      reg.free();
    }
  };
  const verifyErr = (eh: Uint8Array) => {
    const reg = new CfiRegistry(nodeCore());
    try {
      reg.verify(reg.addModule(eh, EH));
      return null;
    } catch (e) {
      return e as { code: number; message: string };
    } finally {
      reg.free();
    }
  };
  const patched = (f: (b: Uint8Array) => void) => { const b = variantEh({ name: "" }); f(b); return b; };

  it("CIE version 2", () => {
    expect(add(patched((b) => { b[8] = 2; }))).toMatchObject({ code: 504, message: expect.stringMatching(/CIE at \.eh_frame\+0x0: version 2/) });
  });
  it("an augmentation without 'z' it does not know", () => {
    expect(add(variantEh({ name: "", aug: "xy" }))).toMatchObject({ code: 505, message: expect.stringMatching(/"xy"/) });
  });
  it("a return address column that is not a register", () => {
    expect(add(patched((b) => { b[14] = 40; }))).toMatchObject({ code: 505, message: expect.stringMatching(/return address column 40/) });
  });
  it("an invalid FDE pointer encoding", () => {
    expect(add(variantEh({ name: "", enc: 0x07 }))).toMatchObject({ code: 506 });
  });
  it("an encoding whose base is unknown (textrel)", () => {
    expect(add(variantEh({ name: "", enc: 0x23 }))).toMatchObject({ code: 503, message: expect.stringMatching(/FDE at \.eh_frame\+0x[0-9a-f]+: unreadable pc_begin/) });
  });
  it("a CIE pointer to something that is not a CIE", () => {
    const b = variantEh({ name: "" });
    const v = new DataView(b.buffer);
    const second = 4 + v.getUint32(0, true);
    const third = second + 4 + v.getUint32(second, true);
    v.setUint32(third + 4, third + 4 - second, true); // points at the first FDE
    expect(add(b)).toMatchObject({ code: 502 });
  });
  it("a record longer than the section", () => {
    expect(add(patched((b) => { new DataView(b.buffer).setUint32(0, 0x10000, true); }))).toMatchObject({ code: 501, message: expect.stringMatching(/runs past the end/) });
  });
  it("a truncated section", () => {
    expect(add(variantEh({ name: "" }).subarray(0, 30))).toMatchObject({ code: 501 });
  });
  it(".eh_frame_hdr: wrong version, unsorted table, too many entries", () => {
    const eh = variantEh({ name: "" });
    const hdr = (ver: number, count: number, pcs: bigint[]) => {
      const h = new ByteWriter().u8(ver).u8(0x04).u8(0x03).u8(0x04).u64(EH).u32(count);
      for (const pc of pcs) h.u64(pc).u64(EH + 0x18n);
      return h.out();
    };
    expect(add(eh, hdr(2, 1, [F1]))).toMatchObject({ code: 509, message: expect.stringMatching(/version 2/) });
    expect(add(eh, hdr(1, 2, [F2, F1]))).toMatchObject({ code: 509, message: expect.stringMatching(/not sorted/) });
    expect(add(eh, hdr(1, 1000, [F1]))).toMatchObject({ code: 509, message: expect.stringMatching(/do not fit/) });
  });
  it("call frame programs: restore_state without remember_state, an unknown opcode, nesting too deep", () => {
    const mk = (prog: number[]) => synthEhFrame(EH, [{ pc: F1, len: 0x100, program: prog }]);
    expect(verifyErr(mk([0x0b]))).toMatchObject({ code: 507, message: expect.stringMatching(/restore_state without remember_state/) });
    expect(verifyErr(mk([0x3f]))).toMatchObject({ code: 507, message: expect.stringMatching(/unknown call frame instruction 0x3f/) });
    expect(verifyErr(mk(new Array(33).fill(0x0a)))).toMatchObject({ code: 508 });
    expect(verifyErr(mk(new Array(32).fill(0x0a)))).toBeNull();
    expect(verifyErr(mk([0x0f, 0x10, 0x77]))).toMatchObject({ code: 500 }); // expression longer than the record
  });
});

// ---------------------------------------------------------------------------
// DWARF expressions, evaluated while unwinding a synthetic stack.
//
//   F [0x401000, +0x100): CFA rsp+8, return address at CFA-8, and the rule under test for rbx
//   G [0x402000, +0x100): CFA = rbx + 0, return address undefined (outermost)
// The stack holds G's return address at rsp; G's frame record shows its CFA, rbx's value.

const G = 0x402000n;
const STACK = 0x7ff000001000n;
const R = { rax: 0x10n, rdx: 0x20n, rcx: 3n, rbx: 0x1000n, rsi: 0xffffffffffffffffn, rdi: 7n, rbp: STACK + 0x80n, rsp: STACK, r8: 0x8000000000000000n, r12: 0xabcdn, rip: F1 + 0x10n };
const MEM16 = 0x1122334455667788n; // at STACK+16

function stackWindow(extra: Record<number, bigint> = {}, ra = G + 1n): Uint8Array {
  const w = new Uint8Array(512);
  const v = new DataView(w.buffer);
  v.setBigUint64(0, ra, true);
  v.setBigUint64(16, MEM16, true);
  v.setBigUint64(24, G + 0x11n, true);
  for (const [o, x] of Object.entries(extra)) v.setBigUint64(Number(o), x, true);
  return w;
}

function unwindWith(fProgram: number[], opts: ScanOptions = {}, window = stackWindow(), regs = R, gProgram = [0x0c, 3, 0, 0x07, 16]): ThreadResult {
  const reg = new CfiRegistry(nodeCore());
  reg.addModule(synthEhFrame(EH, [{ pc: F1, len: 0x100, program: fProgram }, { pc: G, len: 0x100, program: gProgram }]), EH);
  const scan = new StackScan(reg);
  try {
    return scan.thread({ regs: userRegs(regs), segments: [{ window, windowAddr: STACK, mapLo: STACK - 0x1000n, mapHi: STACK + BigInt(window.length) }] },
      { conservative: false, frames: 16, ...opts });
  } finally {
    scan.free();
    reg.free();
  }
}

const valExpr = (e: number[]) => [0x16, 3, e.length, ...e];
const uleb = (v: number) => Array.from(new ByteWriter().uleb(v).b);
const sleb = (v: number) => Array.from(new ByteWriter().sleb(v).b);
const u64le = (v: bigint) => Array.from(new ByteWriter().u64(v).b);
const M = (v: bigint) => BigInt.asUintN(64, v);

const EXPRESSIONS: Array<[string, number[], bigint]> = [
  ["breg3 8", [0x73, 8], R.rbx + 8n],
  ["breg7 16; deref", [0x77, 16, 0x06], MEM16],
  ["bregx 16 (rip) 0", [0x92, 16, 0], R.rip],
  ["const1u 200", [0x08, 200], 200n],
  ["const1s -3", [0x09, 0xfd], M(-3n)],
  ["const2u", [0x0a, 0x34, 0x12], 0x1234n],
  ["const2s -2", [0x0b, 0xfe, 0xff], M(-2n)],
  ["const4u", [0x0c, 0x78, 0x56, 0x34, 0x12], 0x12345678n],
  ["const4s -1", [0x0d, 0xff, 0xff, 0xff, 0xff], M(-1n)],
  ["const8u", [0x0e, ...u64le(0x123456789abcdef0n)], 0x123456789abcdef0n],
  ["const8s", [0x0f, ...u64le(M(-5n))], M(-5n)],
  ["addr", [0x03, ...u64le(0x401234n)], 0x401234n],
  ["constu 300", [0x10, ...uleb(300)], 300n],
  ["consts -300", [0x11, ...sleb(-300)], M(-300n)],
  ["lit5 dup plus", [0x35, 0x12, 0x22], 10n],
  ["lit1 lit2 over plus plus", [0x31, 0x32, 0x14, 0x22, 0x22], 4n],
  ["lit9 lit2 lit3 pick 2", [0x39, 0x32, 0x33, 0x15, 2], 9n],
  ["lit9 lit2 swap minus", [0x39, 0x32, 0x16, 0x1c], M(-7n)],
  ["lit1 lit2 lit3 rot minus minus", [0x31, 0x32, 0x33, 0x17, 0x1c, 0x1c], 4n],
  ["lit7 lit8 drop", [0x37, 0x38, 0x13], 7n],
  ["consts -5 abs", [0x11, ...sleb(-5), 0x19], 5n],
  ["and", [0x08, 0xff, 0x3f, 0x1a], 0x0fn],
  ["consts -9 lit2 div", [0x11, ...sleb(-9), 0x32, 0x1b], M(-4n)],
  ["consts -9 consts -1 div", [0x11, ...sleb(-9), 0x11, ...sleb(-1), 0x1b], 9n],
  ["lit9 lit4 mod", [0x39, 0x34, 0x1d], 1n],
  ["lit6 lit7 mul", [0x36, 0x37, 0x1e], 42n],
  ["lit5 neg", [0x35, 0x1f], M(-5n)],
  ["lit0 not", [0x30, 0x20], M(-1n)],
  ["lit8 lit1 or", [0x38, 0x31, 0x21], 9n],
  ["lit1 plus_uconst 1000", [0x31, 0x23, ...uleb(1000)], 1001n],
  ["lit1 const1u 40 shl", [0x31, 0x08, 40, 0x24], 1n << 40n],
  ["breg8 0 lit4 shr", [0x78, 0, 0x34, 0x25], 0x0800000000000000n],
  ["breg8 0 lit4 shra", [0x78, 0, 0x34, 0x26], 0xf800000000000000n],
  ["lit15 lit6 xor", [0x3f, 0x36, 0x27], 9n],
  ["consts -1 lit1 lt (signed)", [0x11, ...sleb(-1), 0x31, 0x2d], 1n],
  ["lit1 consts -1 gt", [0x31, 0x11, ...sleb(-1), 0x2b], 1n],
  ["lit3 lit3 le", [0x33, 0x33, 0x2c], 1n],
  ["lit2 lit3 ge", [0x32, 0x33, 0x2a], 0n],
  ["lit2 lit2 eq", [0x32, 0x32, 0x29], 1n],
  ["lit2 lit3 ne", [0x32, 0x33, 0x2e], 1n],
  ["lit1 skip +1 lit2", [0x31, 0x2f, 1, 0, 0x32], 1n],
  ["lit0 bra +1 lit5", [0x30, 0x28, 1, 0, 0x35], 5n],
  ["lit1 bra +1 lit5 lit6", [0x31, 0x28, 1, 0, 0x35, 0x36], 6n],
  ["breg7 16 deref_size 1", [0x77, 16, 0x94, 1], 0x88n],
  ["breg7 16 deref_size 2", [0x77, 16, 0x94, 2], 0x7788n],
  ["breg7 16 deref_size 4", [0x77, 16, 0x94, 4], 0x55667788n],
  ["lit3 nop", [0x33, 0x96], 3n],
  // the PLT rule ld writes: CFA = rsp+8 + ((rip & 15) >= 11) * 8 (here rip & 15 = 0)
  ["PLT", [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22], STACK + 8n],
];

describe("DWARF expressions in register rules", () => {
  for (const [name, e, want] of EXPRESSIONS) {
    it(`val_expression ${name}`, () => {
      const r = unwindWith(valExpr(e));
      expect(r.status).toBe("clear");
      expect(r.fallback).toBeNull();
      expect(r.frames.map((f) => f.pc)).toEqual([R.rip, G + 1n]);
      expect(r.frames[1].cfa).toBe(want);
    });
  }

  it("expression: the value is read at the address computed (the CFA pushed first)", () => {
    // DW_CFA_expression rbx: [] -> the CFA itself is the address: rbx = mem[STACK+8]
    const w = stackWindow({ 8: 0x5555n });
    expect(unwindWith([0x10, 3, 1, 0x96], {}, w).frames[1].cfa).toBe(0x5555n);
    // [lit8 plus]: CFA+8 = STACK+16
    expect(unwindWith([0x10, 3, 2, 0x38, 0x22]).frames[1].cfa).toBe(MEM16);
  });

  it("the other rules: offset, val_offset, register, same value, restore", () => {
    expect(unwindWith([0x83, 1]).frames[1].cfa).toBe(G + 1n); // rbx at CFA-8: the return address slot
    expect(unwindWith([0x14, 3, 2]).frames[1].cfa).toBe(STACK + 8n - 16n); // val_offset(-16)
    expect(unwindWith([0x09, 3, 12]).frames[1].cfa).toBe(R.r12); // rbx in r12
    expect(unwindWith([0x08, 3]).frames[1].cfa).toBe(R.rbx); // same value
    expect(unwindWith([0x83, 1, 0xc3]).frames[1].cfa).toBe(R.rbx); // restore: back to the CIE's (none)
  });

  it("CFA rules: an expression, a register other than rsp", () => {
    // def_cfa_expression breg7 32: CFA = STACK+32, return address at STACK+24
    const r = unwindWith([0x0f, 2, 0x77, 32]);
    expect(r.frames[0].cfa).toBe(STACK + 32n);
    expect(r.frames[1].pc).toBe(G + 0x11n);
    expect(r.frames[1].sp).toBe(STACK + 32n);
    // def_cfa rbp+16 (rbp = STACK+0x80): return address at STACK+0x88
    const w = stackWindow({ 0x88: G + 0x21n });
    const r2 = unwindWith([0x0c, 6, 16], {}, w);
    expect(r2.frames[0].cfa).toBe(STACK + 0x90n);
    expect(r2.frames[1].pc).toBe(G + 0x21n);
  });

  it("expression failures name their reason and stop the unwind", () => {
    const fail = (e: number[], code: number, re: RegExp, opts: ScanOptions = {}) => {
      const r = unwindWith(valExpr(e), opts);
      expect(r.status).toBe("failed");
      expect(r.fallback?.code).toBe(code);
      expect(r.fallback?.message).toMatch(re);
      expect(r.frames[0].failed).toBe(true);
    };
    fail([0x2f, 0xfd, 0xff], 523, /more than 4096 operations/); // skip -3: a loop
    fail([0x31, 0x30, 0x1b], 523, /division by zero/);
    fail([0x22], 523, /stack underflow/);
    fail([0x31, 0x2f, 0x10, 0x00], 523, /branch outside/);
    fail([0x92, 17, 0], 522, /DW_OP_breg17/);
    fail([0x94, 9], 523, /stack underflow|deref_size/);
    fail([0xe0], 523, /unsupported operation 0xe0/);
    fail([0x30, 0x06], 524, /reads 0x0, outside/, { noMore: true });
  });
});

describe("registry lifetime", () => {
  it("a registry freed while a scan set uses it is empty for that set, and freed with it", () => {
    const core = nodeCore();
    const reg = new CfiRegistry(core);
    reg.addModule(synthEhFrame(EH, [{ pc: F1, len: 0x100, program: [] }, { pc: G, len: 0x100, program: [0x0c, 3, 0, 0x07, 16] }]), EH);
    const scan = new StackScan(reg);
    const input = { regs: userRegs(R), segments: [{ window: stackWindow(), windowAddr: STACK, mapLo: STACK, mapHi: STACK + 512n }] };
    expect(scan.thread(input, { conservative: false, frames: 4 }).status).toBe("clear");
    reg.free();
    const r = scan.thread(input, { conservative: false, frames: 4 });
    expect(r.status).toBe("failed");
    expect(r.fallback?.code).toBe(520);
    scan.free();
    // the core still works: new objects, same answers
    const reg2 = new CfiRegistry(core);
    reg2.addModule(synthEhFrame(EH, [{ pc: F1, len: 0x100, program: [] }, { pc: G, len: 0x100, program: [0x0c, 3, 0, 0x07, 16] }]), EH);
    const s2 = new StackScan(reg2);
    expect(s2.thread(input, { conservative: false, frames: 4 }).frames.map((f) => f.pc)).toEqual([R.rip, G + 1n]);
    s2.free();
    reg2.free();
  });
});

describe("how an unwind ends", () => {
  it("a zero return address ends the stack", () => {
    const r = unwindWith([], {}, stackWindow({}, 0n));
    expect(r.outermost).toBe(true);
    expect(r.frames.map((f) => f.pc)).toEqual([R.rip]);
  });

  it("no FDE for a pc", () => {
    const r = unwindWith([], {}, stackWindow({}, 0x999999n));
    expect(r.status).toBe("failed");
    expect(r.fallback?.code).toBe(520);
    expect(r.fallback?.message).toMatch(/no FDE covers pc 0x999999 \(looked up as 0x999998\)/);
    expect(r.frames.length).toBe(2);
  });

  it("a CFA that does not move up the stack", () => {
    // def_cfa rsp+0: the caller's rsp would equal ours
    const r = unwindWith([0x0c, 7, 0], {}, stackWindow(), { ...R, rsp: STACK + 8n });
    expect(r.fallback?.code).toBe(521);
    expect(r.fallback?.message).toMatch(/corrupt stack/);
  });

  it("the depth limit", () => {
    // every frame returns into F: an endless chain
    const w = new Uint8Array(4096);
    const v = new DataView(w.buffer);
    for (let i = 0; i < 512; i++) v.setBigUint64(8 * i, F1 + 0x11n, true);
    const r = unwindWith([], { maxFrames: 50 }, w);
    expect(r.fallback?.code).toBe(525);
    expect(r.frameCount).toBe(50);
  });

  it("an undefined register the CFA needs", () => {
    const r = unwindWith([0x07, 3]); // rbx undefined in the caller; G's CFA is rbx+0
    expect(r.fallback?.code).toBe(522);
    expect(r.fallback?.message).toMatch(/CFA rule uses register 3/);
  });

  it("memory below the window but inside the mapping: need more, at that address", () => {
    const r = unwindWith([0x0f, 3, 0x77, 0x78, 0x06]); // CFA = *(rsp-8)
    expect(r.status).toBe("need-memory");
    expect(r.needAddr).toBe(STACK - 8n);
    expect(r.outside).toBe(false);
  });

  it("a frame buffer smaller than the stack: the count is right, the flag says so", () => {
    const r = unwindWith([], { frames: 1 });
    expect(r.frameCount).toBe(2);
    expect(r.frames.length).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// The conservative scan, in both builds, against a plain reference.

function rng(seed: number) {
  let s = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n;
  return () => {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    return s & 0xffffffffffffffffn;
  };
}

describe("conservative scan, SIMD and portable builds, against a reference", () => {
  const builds: Array<[string, Core]> = [
    ["core.wasm", nodeCore()],
    ["core-portable.wasm", loadCoreSync(new WebAssembly.Module(readFileSync(coreWasmPath().replace(/core\.wasm$/, "core-portable.wasm"))))],
  ];
  for (let seed = 1; seed <= 12; seed++) {
    it(`random stack ${seed}`, () => {
      const next = rng(seed);
      const n = (x: number) => Number(next() % BigInt(x));
      const ranges: Array<{ lo: bigint; hi: bigint; id: number }> = [];
      const base = 0x555555550000n;
      const los = new Set<bigint>();
      for (let i = 0; i < 1 + n(40); i++) {
        let lo: bigint;
        do lo = base + BigInt(n(0x100000)); while (los.has(lo));
        los.add(lo);
        ranges.push({ lo, hi: lo + BigInt(1 + n(seed % 3 === 0 ? 0x20000 : 0x400)), id: i }); // some overlap
      }
      const windows = Array.from({ length: n(4) }, (_, i) => { const lo = base + BigInt(n(0x100000)); return { lo, hi: lo + 5n, id: 100 + i }; });
      const words = 1 + n(20000);
      const buf = new Uint8Array(words * 8);
      const v = new DataView(buf.buffer);
      for (let i = 0; i < words; i++) {
        const k = n(100);
        let w: bigint;
        if (k < 2) { const r = ranges[n(ranges.length)]; w = [r.lo, r.lo + 1n, r.hi, r.hi + 1n, r.lo + BigInt(n(Number(r.hi - r.lo)))][n(5)]; }
        else if (k < 3 && windows.length) { const wd = windows[n(windows.length)]; w = wd.lo + BigInt(n(6)); }
        else if (k < 50) w = base + BigInt(n(0x200000)) - 0x80000n;
        else w = next();
        v.setBigUint64(i * 8, w, true);
      }
      const addr = 0x7ffd00000000n;
      const pc = seed % 2 ? ranges[0].lo : 0x1000n;
      // reference
      let hits = 0, rangeId = -1, slot = 0n, val = 0n, windowId = -1, depth = -1;
      const inRange = (a: bigint) => {
        let best: { lo: bigint; id: number } | null = null;
        for (const r of ranges) if (a >= r.lo && a < r.hi && (!best || r.lo > best.lo)) best = r;
        return best;
      };
      const inWindow = (x: bigint) => windows.filter((wd) => x > wd.lo && x < wd.hi).sort((a, b) => (a.lo > b.lo ? -1 : 1))[0];
      const p0 = inRange(pc);
      if (p0) { hits = 1; rangeId = p0.id; val = pc; depth = 0; }
      const w0 = inWindow(pc);
      if (w0) windowId = w0.id;
      for (let i = 0; i < words; i++) {
        const w = v.getBigUint64(i * 8, true);
        const r = inRange(M(w - 1n));
        if (r) { hits++; rangeId = r.id; slot = addr + BigInt(i * 8); val = w; depth = -1; }
        const wd = inWindow(w);
        if (wd && windowId < 0) windowId = wd.id;
      }
      for (const [name, core] of builds) {
        const reg = new CfiRegistry(core);
        const s = new StackScan(reg);
        for (const r of ranges) s.addForbidden(r.lo, r.hi, r.id);
        for (const wd of windows) s.addWindow(wd.lo, wd.hi, wd.id);
        const res = s.thread({ regs: userRegs({ rip: pc, rsp: addr }), segments: [{ window: buf, windowAddr: addr, mapLo: addr - 0x1000n, mapHi: addr + BigInt(words * 8) }] }, { precise: false });
        expect({ name, status: res.status, hits: res.hits, rangeId: res.rangeId, slot: res.slotAddr, val: res.pc, windowId: res.windowId, depth: res.depth, words: res.wordsScanned })
          .toEqual({ name, status: hits || windowId >= 0 ? "forbidden" : "clear", hits, rangeId, slot: hits > (p0 ? 1 : 0) ? slot : 0n, val, windowId, depth, words: BigInt(words) });
        s.free();
        reg.free();
      }
    });
  }
});
