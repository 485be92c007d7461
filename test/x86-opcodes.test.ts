// The decoder's opcode maps against objdump, opcode by opcode: every opcode of every
// map, with each mandatory prefix, memory and register ModRM forms, the ModRM/SIB/
// displacement forms and the prefix corners. Lengths and branch targets must agree
// wherever objdump decodes; where objdump says "(bad)" the decoder must not decode.
// (The decoder may be stricter than objdump: a newer binutils knows more opcodes.)
import { beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import { X86 } from "../src/core/x86.js";
import { objdumpFirst, OBJDUMP_BATCH } from "./x86-objdump.js";

const h2 = (n: number) => n.toString(16).padStart(2, "0");
const hexBytes = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

interface Ours {
  len: number; // 0 on error
  status: number;
  kind: number;
  target: bigint;
}

let x86: X86;
beforeAll(() => {
  x86 = new X86(nodeCore());
});

/** Decodes each candidate laid out as objdumpFirst() lays them out (back to back, one batch at a time). */
function decodeAll(cands: string[]): { ours: Ours[]; at: number[] } {
  const ours: Ours[] = [];
  const at: number[] = [];
  for (let i = 0; i < cands.length; i += OBJDUMP_BATCH) {
    const r = decodeBatch(cands.slice(i, i + OBJDUMP_BATCH));
    ours.push(...r.ours);
    at.push(...r.at);
  }
  return { ours, at };
}

function decodeBatch(cands: string[]): { ours: Ours[]; at: number[] } {
  const parts = cands.map((c) => hexBytes(c));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(total);
  const at: number[] = [];
  let o = 0;
  for (const p of parts) {
    at.push(o);
    buf.set(p, o);
    o += p.length;
  }
  const e = x86.raw;
  const ours: Ours[] = [];
  x86.core.withBytes(buf, (ptr, len) => {
    for (let i = 0; i < parts.length; i++) {
      const l = e.x86_decode(ptr, len, at[i], 0n);
      ours.push({
        len: l,
        status: l ? 0 : e.core_error_code(),
        kind: l ? e.x86_insn_kind() : -1,
        target: l ? BigInt.asUintN(64, e.x86_insn_target()) : 0n,
      });
    }
  });
  return { ours, at };
}

const PREFIX_WORDS = /^(?:(?:bnd|notrack|data16|addr32|rex(?:\.\w+)?|cs|ds|es|ss|fs|gs|lock|rep|repz|repnz|\{\w+\})\s+)*/;
const BRANCH = /^(j\w+|call\w*|loop\w*|xbegin\w*)(?:,p[nt])?\s+([0-9a-f]+)(?:\s|$)/;

interface Report {
  compared: number;
  lengthDiffers: string[];
  oursOnly: string[]; // we decode, objdump says (bad) in every variant
  oursOnlyKeys: Set<string>;
  objdumpOnly: string[]; // objdump decodes, we report unknown (allowed: stricter)
  targetDiffers: string[];
  ambiguous: number;
}

/**
 * Compares candidates; `key` groups variants the decoder must treat alike (VEX/EVEX
 * fields it does not look at): validity is objdump's union over the group.
 */
function compare(cands: string[], key: (i: number) => string = (i) => String(i)): Report {
  const od = objdumpFirst(cands);
  const { ours, at } = decodeAll(cands);
  const r: Report = { compared: 0, lengthDiffers: [], oursOnly: [], oursOnlyKeys: new Set(), objdumpOnly: [], targetDiffers: [], ambiguous: 0 };
  const groups = new Map<string, { oursOk: boolean; odOk: boolean; sample: number; mixed: boolean }>();
  for (let i = 0; i < cands.length; i++) {
    const o = ours[i];
    const d = od[i];
    const k = key(i);
    const g = groups.get(k);
    const oursOk = o.len > 0 || o.status === 402;
    if (!g) groups.set(k, { oursOk, odOk: !d.bad, sample: i, mixed: false });
    else {
      if (g.oursOk !== oursOk) g.mixed = true;
      g.odOk ||= !d.bad;
    }
    if (d.bad) continue;
    if (o.status === 402) {
      // 66 + near branch: objdump follows AMD (rel16, or a target truncated to 16 bits)
      r.ambiguous++;
      if (!BRANCH.test(d.text.replace(PREFIX_WORDS, ""))) r.lengthDiffers.push(`${cands[i]}: ambiguous for us, objdump: ${d.text}`);
      continue;
    }
    if (o.len === 0) continue;
    r.compared++;
    if (o.len !== d.len) r.lengthDiffers.push(`${cands[i]}: ours ${o.len}, objdump ${d.len} (${d.text})`);
    const m = BRANCH.exec(d.text.replace(PREFIX_WORDS, ""));
    const rel = o.kind === 1 || o.kind === 2 || o.kind === 3;
    if (rel !== !!m || (m && BigInt(parseInt(m[2], 16)) !== o.target)) {
      r.targetDiffers.push(`${cands[i]}: ours ${rel ? o.target.toString(16) : "none"}, objdump ${d.text} (at ${at[i].toString(16)})`);
    }
  }
  for (const [k, g] of groups) {
    if (g.mixed) r.lengthDiffers.push(`${cands[g.sample]}: validity differs between variants the decoder must not distinguish`);
    if (g.oursOk && !g.odOk) {
      r.oursOnly.push(`${cands[g.sample]}: objdump ${od[g.sample].text}`);
      r.oursOnlyKeys.add(k);
    }
    if (!g.oursOk && g.odOk) r.objdumpOnly.push(cands[g.sample]);
  }
  return r;
}

function expectAgreement(r: Report, minCompared: number) {
  expect(r.lengthDiffers).toEqual([]);
  expect(r.targetDiffers).toEqual([]);
  expect(r.oursOnly).toEqual([]);
  expect(r.compared).toBeGreaterThan(minCompared);
  if (r.objdumpOnly.length) console.log(`decoder stricter than objdump on ${r.objdumpOnly.length}: ${r.objdumpOnly.slice(0, 20).join(" ")}`);
}

const FULL = process.env.PATCHC_X86_QUICK !== "1";
const CLASSES = ["", "66", "f3", "f2"];
const IMM = "0102030405060708";
const MEM = (reg: number) => h2((reg << 3) | 4) + "20"; // [rax + riz*1] with a SIB: also a valid VSIB
// Opcodes whose register forms depend on ModRM.rm: every register form is tried.
const RM_GROUPS = new Set(["d8", "d9", "da", "db", "dc", "dd", "de", "df", "c6", "c7", "0f01", "0fae", "0fc7", "0fa6", "0fa7", "0f3af0"]);

function modrmForms(op: string): string[] {
  const f: string[] = [];
  for (let reg = 0; reg < 8; reg++) f.push(MEM(reg));
  const full = RM_GROUPS.has(op);
  for (let x = 0; x < 64; x += full ? 1 : 9) f.push(h2(0xc0 | x)); // reg == rm diagonal otherwise
  for (let reg = 0; reg < 8; reg++) if (!full) f.push(h2(0xc0 | (reg << 3) | ((reg + 3) & 7)));
  return f;
}

describe("x86 decoder opcode maps against objdump", () => {
  it("one-byte map: every opcode, ModRM form and mandatory prefix", () => {
    const cands: string[] = [];
    for (let op = 0; op < 256; op++) {
      const o = h2(op);
      if (["26", "2e", "36", "3e", "64", "65", "66", "67", "f0", "f2", "f3", "0f", "c4", "c5", "62", "8f"].includes(o)) continue;
      if (op >= 0x40 && op < 0x50) continue; // REX: below
      if (op === 0x9b) continue; // fwait: objdump merges it with a following x87 instruction
      for (const p of CLASSES) for (const m of modrmForms(o)) cands.push(p + o + m + IMM);
    }
    expectAgreement(compare(cands), 15000);
  });

  it("0F, 0F 38 and 0F 3A maps: every opcode, ModRM form and mandatory prefix", () => {
    const cands: string[] = [];
    for (const esc of ["0f", "0f38", "0f3a"])
      for (let op = 0; op < 256; op++) {
        if (esc === "0f" && (op === 0x38 || op === 0x3a)) continue;
        const o = esc + h2(op);
        for (const p of CLASSES) for (const m of modrmForms(o)) cands.push(p + o + m + IMM);
      }
    expectAgreement(compare(cands), 15000);
  });

  it("ModRM, SIB and displacement forms, with and without 67", () => {
    const cands: string[] = [];
    for (const pre of ["", "67", "41", "4c"])
      for (const op of ["01", "81", "f7", "c7", "69", "0fba", "0f3a0f", "c4e37d18", "62f37d4818"])
        for (let modrm = 0; modrm < 256; modrm++)
          for (const sib of ["00", "05", "25", "e5", "65"]) {
            if ((modrm & 7) !== 4 && sib !== "00") continue;
            if (pre && op.length > 4) continue; // no REX/67 before VEX/EVEX
            cands.push(pre + op + h2(modrm) + ((modrm & 7) === 4 && modrm < 0xc0 ? sib : "") + IMM + IMM);
          }
    expectAgreement(compare(cands), 5000);
  });

  it("prefixes: operand size, REX.W, address size, repeated and mixed prefixes, branches", () => {
    const ops = ["05", "25", "68", "69c0", "6bc0", "81c0", "83c0", "a0", "a1", "a2", "a3", "b8", "bf", "c2", "c7c0", "c700",
      "f6c0", "f6c8", "f7c0", "f7c8", "f7d0", "e8", "e9", "eb", "74", "e3", "e2", "0f84", "0f8f", "c7f8", "c6f8", "ff25", "ff15",
      "ffe0", "90", "0fb8c0", "0f1efa", "0f1efb", "0f1f00", "0f38f1c0", "0f38f0c0", "0f10c0", "0f7800", "0f78c0", "0f79c0", "c3", "cc", "0f05", "0f0b"];
    const pres = ["", "66", "67", "f2", "f3", "f0", "48", "41", "66 48", "48 66", "f3 66", "66 f3", "f2 f3", "f3 f2", "2e", "3e", "64", "65",
      "66 66", "66 2e", "f2 66", "2e 3e 26 64 65 36", "67 48", "66 67 48"];
    const cands: string[] = [];
    for (const p of pres) for (const o of ops) {
      const bytes = p.replace(/ /g, "") + o;
      // objdump splits a REX followed by a legacy prefix into two instructions; the CPU ignores that REX
      if (/^(4[0-9a-f])(66|67|f2|f3|f0|2e|3e|26|64|65|36)/.test(bytes)) continue;
      cands.push(bytes + IMM + IMM);
    }
    const r = compare(cands);
    expectAgreement(r, 800);
    expect(r.ambiguous).toBeGreaterThan(10);
  });

  it(`VEX, EVEX and XOP maps: every opcode with each pp${FULL ? ", over W, L, vvvv and EVEX.aaa" : " (lengths only: PATCHC_X86_QUICK=1)"}`, () => {
    // The decoder ignores W, L, vvvv and aaa (they never change the length): its
    // validity must be objdump's union over them. Opcodes the decoder rejects are
    // sent to objdump in one variant and two ModRM forms (enough to notice a
    // stricter decoder, which is allowed). The validity check needs ~10^5 objdump
    // decodes (10 s); PATCHC_X86_QUICK=1 checks only lengths and targets, on two ModRM
    // forms per opcode.
    type Enc = { fam: string; m: number; op: number; pp: number; form: string };
    const encs: Enc[] = [];
    const allForms = [...Array(8).keys()].flatMap((reg) => [MEM(reg), h2(0xc0 | (reg << 3) | ((reg + 1) & 7))]);
    for (let op = 0; op < 256; op++)
      for (let pp = 0; pp < 4; pp++)
        for (const form of FULL ? allForms : [MEM((op + pp) & 7), h2(0xc0 | (((op + pp + 3) & 7) << 3) | ((op + pp + 4) & 7))]) {
          for (const m of [1, 2, 3]) encs.push({ fam: "vex", m, op, pp, form });
          for (const m of [1, 2, 3, 5, 6]) encs.push({ fam: "evex", m, op, pp, form });
          if (pp === 0) for (const m of [8, 9, 10]) encs.push({ fam: "xop", m, op, pp, form });
        }
    const bytes = (e: Enc, W: number, L: number, vvvv: number, aaa: number) => {
      const op = h2(e.op) + e.form + IMM;
      if (e.fam === "vex") return "c4" + h2(0xe0 | e.m) + h2((W << 7) | (vvvv << 3) | (L << 2) | e.pp) + op;
      if (e.fam === "xop") return "8f" + h2(0xe0 | e.m) + h2((W << 7) | (vvvv << 3) | (L << 2) | e.pp) + op;
      return "62" + h2(0xf0 | e.m) + h2((W << 7) | (vvvv << 3) | 4 | e.pp) + h2((L << 5) | 8 | aaa) + op;
    };
    const base = encs.map((e) => bytes(e, 0, 0, 15, 0));
    const valid = decodeAll(base).ours.map((o) => o.len > 0);
    const key = (e: Enc) => `${e.fam}${e.m}.${e.op}.${e.pp}.${e.form}`;
    const allVariants = (e: Enc): number[][] => {
      if (e.fam === "vex") return [0, 1].flatMap((W) => [0, 1].flatMap((L) => [[W, L, 15, 0], [W, L, 14, 0]]));
      if (e.fam === "xop") return [0, 1].flatMap((W) => [0, 1].map((L) => [W, L, 15, 0]));
      return [0, 1].flatMap((W) => [0, 2].flatMap((LL) => [[W, LL, 15, 0], [W, LL, 14, 1], [W, LL, 15, 1]]));
    };
    // Phase 1: two variants of each encoding the decoder accepts, one of the others.
    const cands: string[] = [];
    const keys: string[] = [];
    encs.forEach((e, i) => {
      let variants: number[][];
      if (!valid[i]) {
        if (FULL && e.form !== MEM(0) && e.form !== "c1") return;
        variants = [[0, 0, 15, 0]];
      } else variants = [[0, 0, 15, 0], [1, e.fam === "evex" ? 2 : 1, 14, 1]];
      for (const [W, L, vvvv, aaa] of variants) {
        cands.push(bytes(e, W, L, vvvv, aaa));
        keys.push(key(e));
      }
      if (valid[i] && e.fam === "vex" && e.m === 1) {
        cands.push("c5" + h2(0xf8 | e.pp) + h2(e.op) + e.form + IMM); // VEX2: map 0F
        keys.push(key(e));
      }
    });
    const r1 = compare(cands, (i) => keys[i]);
    if (!FULL) {
      expect(r1.lengthDiffers).toEqual([]);
      expect(r1.targetDiffers).toEqual([]);
      expect(r1.compared).toBeGreaterThan(2500);
      return;
    }
    // Phase 2: every variant of what objdump rejected in phase 1 but the decoder accepts.
    const c2: string[] = [];
    const k2: string[] = [];
    for (const e of encs) {
      if (!r1.oursOnlyKeys.has(key(e))) continue;
      for (const [W, L, vvvv, aaa] of allVariants(e)) {
        c2.push(bytes(e, W, L, vvvv, aaa));
        k2.push(key(e));
      }
    }
    const r2 = compare(c2, (i) => k2[i]);
    expect(r2.lengthDiffers).toEqual([]);
    expect(r2.targetDiffers).toEqual([]);
    expectAgreement({ ...r1, oursOnly: r2.oursOnly }, 20000);
  });

  it("rejects VEX/EVEX after a legacy 66/F2/F3/F0 or REX prefix (#UD), and bad EVEX/VEX fixed bits", () => {
    for (const s of ["66c5f877", "f3c5f877", "f2c4e17d10c0", "f0c5f877", "48c5f877", "4162f17c481000", "62f178481000" /* P1 bit 2 clear */,
      "62f97c481000" /* P0 bit 3 set */, "62f47c481000" /* map 4 */, "c4e078100000" /* VEX map 0 */, "c4e478100000", "8feb78100000" /* XOP map B */]) {
      expect(() => x86.decode(hexBytes(s + "0000000000")), s).toThrow(/unknown opcode/);
    }
  });
});
