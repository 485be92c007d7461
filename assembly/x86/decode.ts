// x86-64 instruction length decoder and classifier.
//
// An instruction in 64-bit mode is, in order (Intel SDM vol. 2, ch. 2):
//
//   [legacy prefixes]* [REX] opcode [ModRM [SIB] [disp8|disp32]] [imm]     at most 15 bytes
//    66 67 F0 F2 F3       40-4F  1-3 bytes: xx | 0F xx | 0F 38 xx | 0F 3A xx
//    2E 36 3E 26 64 65
//
//   or [legacy prefixes]* VEX/EVEX/XOP opcode ModRM [SIB] [disp] [imm]:
//
//   C5 RvvvvLpp                      VEX2: map 0F
//   C4 RXBmmmmm WvvvvLpp             VEX3: map mmmmm (1 0F, 2 0F38, 3 0F3A)
//   8F RXBmmmmm WvvvvLpp             XOP (AMD): map mmmmm 8, 9 or A (below 8 it is POP r/m)
//   62 RXBR'0mmm Wvvvv1pp zL'LbV'aaa EVEX: map mmm (1, 2, 3, 5, 6)
//
//   pp is the mandatory prefix (0 none, 1 66, 2 F3, 3 F2); a legacy 66/F2/F3/F0 or a
//   REX before VEX/EVEX/XOP makes the instruction #UD, and is reported as unknown.
//
// ModRM = mod(2) reg(3) rm(3). With mod != 11: rm 100 adds a SIB byte; mod 00 with rm 101
// is RIP-relative disp32 (EIP-relative with a 67 prefix); mod 00 with SIB.base 101 adds
// disp32; mod 01 adds disp8, mod 10 disp32. 64-bit mode has no 16-bit addressing, so a
// 67 prefix never changes the ModRM length; it shrinks moffs (A0-A3) from 8 to 4 bytes.
//
// A REX is only one if it immediately precedes the opcode: a legacy prefix after it
// makes it ignored. Among F2/F3 the last one is the mandatory prefix; 66 is one only
// without F2/F3.
//
// Relative branches: rel8/rel32 from the end of the instruction. With a 66 prefix (and
// no REX.W), Intel CPUs ignore it for near jmp/call/jcc in 64-bit mode, AMD CPUs take a
// 16-bit displacement and truncate RIP to 16 bits: the length or the target differs by
// vendor, so those are AMBIGUOUS_ENCODING (objdump follows AMD).
//
// Each map is a table of 256 u32 entries, built at start-up from tables.ts:
//
//   31            16 15  12 11    8  7   6   5   4   3    0
//  +----------------+------+-------+---+---+---+---+------+
//  | group record+1 |  --  | hint  |SPC|INV|REG|MRM| imm  |
//  +----------------+------+-------+---+---+---+---+------+
//   imm: IMM_* below; MRM: a ModRM follows; REG: the ModRM is always a register form;
//   INV: undefined; SPC: prefix/escape, decoded by the slow path, whose kind is `hint`;
//   hint otherwise: KH_* (how to classify); group: validity by ModRM/mandatory prefix.
import { Err, fail, hex } from "../error";
import {
  FMT_1BYTE, FMT_0F, FMT_0F38, FMT_0F3A, FMT_VEX1, FMT_VEX2, FMT_VEX3,
  FMT_EVEX1, FMT_EVEX2, FMT_EVEX3, FMT_EVEX5, FMT_EVEX6, FMT_XOP8, FMT_XOP9, FMT_XOPA,
  GROUP_RECORDS, GROUP_INDEX,
} from "./tables";

// ---- what the decoder reports ------------------------------------------------------

/** Instruction kinds (x86_insn_kind, the records' kind byte). */
export const enum Kind {
  OTHER = 0,
  JMP = 1, // jmp rel8/rel32: target
  JCC = 2, // jcc, loop*, jrcxz, xbegin: target (falls through too)
  CALL = 3, // call rel32: target
  JMP_IND = 4, // jmp r/m, far jmp m (target: the memory operand's address when RIP-relative)
  CALL_IND = 5, // call r/m, far call m (same)
  RET = 6, // ret, ret imm16, lret, iret, sysret, sysexit
  SYSCALL = 7, // syscall, sysenter
  INT3 = 8, // int3 (CC)
  UD = 9, // ud2, ud1, ud0
  ENDBR64 = 10, // F3 0F 1E FA
  NOP = 11, // 90 (without REX.B or F3), 0F 1F /0 (multi-byte nop, any 66/segment prefixes)
  INT = 12, // int imm8, int1
  HLT = 13,
}

/** Flags (x86_insn_flags, the records' flags byte). */
export const enum Flag {
  RIP_REL = 1, // a RIP-relative memory operand; target is its address
  OPSIZE = 2, // 66
  ADDRSIZE = 4, // 67
  LOCK = 8, // F0
  REP = 16, // F3 (the last of F2/F3)
  REPNE = 32, // F2 (the last of F2/F3)
  REX_W = 64,
  VEX = 128, // VEX, EVEX or XOP encoded
}

// ---- table entries --------------------------------------------------------------

const IMM_NONE: u32 = 0;
const IMM_B: u32 = 1; // imm8
const IMM_W: u32 = 2; // imm16
const IMM_Z: u32 = 3; // imm16/32
const IMM_V: u32 = 4; // imm16/32/64
const IMM_MOFFS: u32 = 5; // 8 or 4 (67)
const IMM_ENTER: u32 = 6; // imm16 + imm8
const IMM_JB: u32 = 7; // rel8
const IMM_JZ: u32 = 8; // rel32
const IMM_F6: u32 = 9; // imm8 when reg < 2
const IMM_F7: u32 = 10; // imm16/32 when reg < 2
const IMM_Q: u32 = 11; // 0F 78: imm8 imm8 with mandatory 66/F2

const E_MODRM: u32 = 0x10;
const E_REGONLY: u32 = 0x20;
const E_INVALID: u32 = 0x40;
const E_SPECIAL: u32 = 0x80;

// Classification hints (bits 8..11 of an ordinary entry).
const KH_NONE: u32 = 0;
const KH_JCC: u32 = 1;
const KH_JMP: u32 = 2;
const KH_CALL: u32 = 3;
const KH_RET: u32 = 4;
const KH_INT3: u32 = 5;
const KH_INT: u32 = 6;
const KH_SYSCALL: u32 = 7;
const KH_UD: u32 = 8;
const KH_HLT: u32 = 9;
const KH_NOP90: u32 = 10; // 90: nop unless REX.B (xchg r8) or F3 (pause)
const KH_GRP5: u32 = 11; // FF: call/jmp indirect by ModRM.reg
const KH_0F1E: u32 = 12; // endbr64 when F3 and ModRM FA
const KH_0F1F: u32 = 13; // nop when ModRM.reg 0 and no F2/F3
const KH_C7: u32 = 14; // C7 F8: xbegin rel32

// Slow-path kinds of SPECIAL entries (bits 8..11).
const SP_PREFIX: u32 = 1;
const SP_REX: u32 = 2;
const SP_0F: u32 = 3;
const SP_VEX3: u32 = 4;
const SP_VEX2: u32 = 5;
const SP_EVEX: u32 = 6;
const SP_8F: u32 = 7;

// Map numbers (index of a 256-entry table in TABLES).
const M_1BYTE: u32 = 0;
const M_0F: u32 = 1;
const M_0F38: u32 = 2;
const M_0F3A: u32 = 3;
const M_VEX: u32 = 4; // + map - 1 (VEX maps 1..3)
const M_EVEX: u32 = 7; // EVEX 1, 2, 3 -> 7, 8, 9; 5, 6 -> 10, 11
const M_XOP: u32 = 12; // + map - 8 (XOP maps 8..A)
export const MAP_COUNT: u32 = 15;

/** The 15 tables of 256 u32 entries. */
export const TABLES: usize = heap.alloc(<usize>MAP_COUNT * 1024);
/** The entry of 8F when it is POP r/m (not XOP). */
let E_8F: u32 = 0;
/** Entries kept outside the maps, for other implementations (x86_table(2)): [0] the 8F POP entry. */
export const EXTRA_ENTRIES: usize = heap.alloc(16);

function fmtEntry(c: i32): u32 {
  switch (c) {
    case 0x2e: return E_INVALID; // .
    case 0x6e: return IMM_NONE; // n
    case 0x6d: return E_MODRM; // m
    case 0x72: return E_MODRM | E_REGONLY; // r
    case 0x62: return IMM_B; // b
    case 0x42: return E_MODRM | IMM_B; // B
    case 0x77: return IMM_W; // w
    case 0x65: return IMM_ENTER; // e
    case 0x7a: return IMM_Z; // z
    case 0x5a: return E_MODRM | IMM_Z; // Z
    case 0x76: return IMM_V; // v
    case 0x6f: return IMM_MOFFS; // o
    case 0x6a: return IMM_JB; // j
    case 0x4a: return IMM_JZ; // J
    case 0x54: return E_MODRM | IMM_F6; // T
    case 0x55: return E_MODRM | IMM_F7; // U
    case 0x51: return E_MODRM | IMM_Q; // Q
    case 0x70: return E_SPECIAL | (SP_PREFIX << 8); // p
    case 0x52: return E_SPECIAL | (SP_REX << 8); // R
    case 0x46: return E_SPECIAL | (SP_0F << 8); // F
    case 0x56: return E_SPECIAL | (SP_VEX3 << 8); // V
    case 0x57: return E_SPECIAL | (SP_VEX2 << 8); // W
    case 0x45: return E_SPECIAL | (SP_EVEX << 8); // E
    case 0x58: return E_SPECIAL | (SP_8F << 8); // X
    case 0x53: return E_INVALID; // S: the 0F 38/0F 3A escapes are handled before the lookup
  }
  abort("x86 tables: unknown format code");
  return E_INVALID;
}

function fillMap(map: u32, fmt: string): void {
  assert(fmt.length == 256, "x86 tables: a map has 256 entries");
  for (let i = 0; i < 256; i++) store<u32>(TABLES + (<usize>map << 10) + (<usize>i << 2), fmtEntry(fmt.charCodeAt(i)));
}

@inline function entryPtr(map: u32, op: u32): usize {
  return TABLES + (<usize>map << 10) + (<usize>op << 2);
}

function setHint(map: u32, op: u32, hint: u32): void {
  const p = entryPtr(map, op);
  store<u32>(p, (load<u32>(p) & ~<u32>0xf00) | (hint << 8));
}

function initTables(): void {
  fillMap(M_1BYTE, FMT_1BYTE);
  fillMap(M_0F, FMT_0F);
  fillMap(M_0F38, FMT_0F38);
  fillMap(M_0F3A, FMT_0F3A);
  fillMap(M_VEX + 0, FMT_VEX1);
  fillMap(M_VEX + 1, FMT_VEX2);
  fillMap(M_VEX + 2, FMT_VEX3);
  fillMap(M_EVEX + 0, FMT_EVEX1);
  fillMap(M_EVEX + 1, FMT_EVEX2);
  fillMap(M_EVEX + 2, FMT_EVEX3);
  fillMap(M_EVEX + 3, FMT_EVEX5);
  fillMap(M_EVEX + 4, FMT_EVEX6);
  fillMap(M_XOP + 0, FMT_XOP8);
  fillMap(M_XOP + 1, FMT_XOP9);
  fillMap(M_XOP + 2, FMT_XOPA);
  // The 8F entry as POP r/m; the table keeps the SPECIAL entry that looks for XOP.
  E_8F = E_MODRM;
  store<u32>(EXTRA_ENTRIES, E_8F);
  // Groups: (map << 8 | opcode) << 16 | record.
  for (let i = 0; i < GROUP_INDEX.length; i++) {
    const g = unchecked(GROUP_INDEX[i]);
    const tm = (g >>> 24) & 0xff;
    const op = (g >>> 16) & 0xff;
    const rec = (g & 0xffff) + 1;
    let map: u32;
    if (tm < 0x10) map = tm;
    else if (tm < 0x20) map = M_VEX + (tm & 0xf) - 1;
    else if (tm < 0x30) map = M_EVEX + ((tm & 0xf) <= 3 ? (tm & 0xf) - 1 : (tm & 0xf) - 2);
    else map = M_XOP + (tm & 0xf) - 8;
    if (map == M_1BYTE && op == 0x8f) { E_8F |= rec << 16; store<u32>(EXTRA_ENTRIES, E_8F); continue; }
    const p = entryPtr(map, op);
    store<u32>(p, load<u32>(p) | (rec << 16));
  }
  // Classification hints.
  for (let op: u32 = 0x70; op < 0x80; op++) setHint(M_1BYTE, op, KH_JCC);
  for (let op: u32 = 0xe0; op < 0xe4; op++) setHint(M_1BYTE, op, KH_JCC); // loopne loope loop jrcxz
  for (let op: u32 = 0x80; op < 0x90; op++) setHint(M_0F, op, KH_JCC);
  setHint(M_1BYTE, 0xe8, KH_CALL);
  setHint(M_1BYTE, 0xe9, KH_JMP);
  setHint(M_1BYTE, 0xeb, KH_JMP);
  setHint(M_1BYTE, 0xc2, KH_RET);
  setHint(M_1BYTE, 0xc3, KH_RET);
  setHint(M_1BYTE, 0xca, KH_RET);
  setHint(M_1BYTE, 0xcb, KH_RET);
  setHint(M_1BYTE, 0xcf, KH_RET);
  setHint(M_0F, 0x07, KH_RET); // sysret
  setHint(M_0F, 0x35, KH_RET); // sysexit
  setHint(M_1BYTE, 0xcc, KH_INT3);
  setHint(M_1BYTE, 0xcd, KH_INT);
  setHint(M_1BYTE, 0xf1, KH_INT);
  setHint(M_1BYTE, 0xf4, KH_HLT);
  setHint(M_1BYTE, 0x90, KH_NOP90);
  setHint(M_1BYTE, 0xff, KH_GRP5);
  setHint(M_1BYTE, 0xc7, KH_C7);
  setHint(M_0F, 0x05, KH_SYSCALL);
  setHint(M_0F, 0x34, KH_SYSCALL);
  setHint(M_0F, 0x0b, KH_UD);
  setHint(M_0F, 0xb9, KH_UD);
  setHint(M_0F, 0xff, KH_UD);
  setHint(M_0F, 0x1e, KH_0F1E);
  setHint(M_0F, 0x1f, KH_0F1F);
}
initTables();

/** Validity records, 8 u64 per record: (memory reg mask, register ModRM mask) per prefix class. */
const GROUPS: usize = changetype<usize>(GROUP_RECORDS);

// ---- results of the last decode (globals: no allocation on the hot path) -----------

export let insnKind: u32 = 0;
export let insnFlags: u32 = 0;
export let insnTarget: u64 = 0;
/** Offset and size of the rel8/rel32 or RIP-relative disp32 field inside the instruction (0 when none). */
export let insnRelOffset: u32 = 0;
export let insnRelSize: u32 = 0;
/** Err code of the last failed decode (0 after a success). */
export let insnStatus: i32 = 0;
/** map << 8 | opcode of the last decode (map: 0 one-byte, 1 0F, 2 0F38, 3 0F3A, 4.. VEX/EVEX/XOP). */
export let insnOpcode: u32 = 0;
export let insnModrm: u32 = 0;
/** SIB byte of the last decode (0 when none) and its memory displacement: offset in the instruction and size (0, 1 or 4). */
export let insnSib: u32 = 0;
export let insnDispOffset: u32 = 0;
export let insnDispSize: u32 = 0;

@inline function failLen(start: usize, p: usize): u32 {
  insnStatus = p - start >= 15 ? Err.X86_TOO_LONG : Err.X86_TRUNCATED;
  return 0;
}

/**
 * Decodes the instruction at `start`, whose bytes end at `end` (the end of the input,
 * never read past), running at address `pc`. Returns its length, or 0 with insnStatus
 * set (X86_TRUNCATED, X86_TOO_LONG, X86_UNKNOWN_OPCODE, X86_AMBIGUOUS_ENCODING).
 */
export function decodeOne(start: usize, end: usize, pc: u64): u32 {
  const lim = end - start > 15 ? start + 15 : end;
  let p = start;
  let flags: u32 = 0;
  let rex: u32 = 0;
  let rep: u32 = 0; // last of F2/F3
  let e: u32;
  let op: u32;
  let map: u32 = M_1BYTE;
  let cls: u32 = 0; // mandatory prefix class: 0 none, 1 66, 2 F3, 3 F2
  insnStatus = 0;
  insnRelOffset = 0;
  insnRelSize = 0;
  insnTarget = 0;
  // Prefixes, then the opcode's entry in the one-byte map.
  while (true) {
    if (p >= lim) return failLen(start, p);
    op = load<u8>(p);
    e = load<u32>(TABLES + (<usize>op << 2));
    if ((e & E_SPECIAL) == 0) break;
    const sp = (e >> 8) & 15;
    if (sp == SP_REX) {
      rex = op;
      p++;
      continue;
    }
    if (sp != SP_PREFIX) break;
    rex = 0; // a REX followed by a legacy prefix is ignored
    if (op == 0x66) flags |= Flag.OPSIZE;
    else if (op == 0x67) flags |= Flag.ADDRSIZE;
    else if (op == 0xf0) flags |= Flag.LOCK;
    else if (op == 0xf2 || op == 0xf3) rep = op;
    p++;
  }
  if (rep == 0xf3) { flags |= Flag.REP; cls = 2; }
  else if (rep == 0xf2) { flags |= Flag.REPNE; cls = 3; }
  else if (flags & Flag.OPSIZE) cls = 1;
  if (rex & 8) flags |= Flag.REX_W;
  p++;
  let vexW: bool = false;
  if (e & E_SPECIAL) {
    const sp = (e >> 8) & 15;
    if (sp == SP_0F) {
      if (p >= lim) return failLen(start, p);
      op = load<u8>(p++);
      if (op == 0x38 || op == 0x3a) {
        map = op == 0x38 ? M_0F38 : M_0F3A;
        if (p >= lim) return failLen(start, p);
        op = load<u8>(p++);
      } else {
        map = M_0F;
      }
      e = load<u32>(entryPtr(map, op));
    } else if (sp == SP_8F && (p >= lim || (load<u8>(p) & 0x1f) < 8)) {
      // POP r/m (the truncation check comes with the ModRM)
      e = E_8F;
    } else {
      // VEX2, VEX3, XOP, EVEX
      if ((flags & (Flag.OPSIZE | Flag.LOCK)) != 0 || rep != 0 || rex != 0) {
        insnOpcode = op;
        insnStatus = Err.X86_UNKNOWN_OPCODE; // #UD: a legacy 66/F2/F3/F0 or REX before VEX/EVEX
        return 0;
      }
      flags |= Flag.VEX;
      let mm: u32;
      let pbyte: u32;
      if (sp == SP_VEX2) {
        if (p >= lim) return failLen(start, p);
        pbyte = load<u8>(p++);
        mm = 1;
        map = M_VEX;
      } else if (sp == SP_EVEX) {
        if (lim - p < 3) return failLen(start, lim);
        const p0 = <u32>load<u8>(p);
        pbyte = load<u8>(p + 1);
        p += 3;
        mm = p0 & 7;
        // P0 bit 3 must be 0, P1 bit 2 must be 1; maps 1, 2, 3, 5, 6.
        if ((p0 & 8) != 0 || (pbyte & 4) == 0 || mm == 0 || mm == 4 || mm == 7) {
          insnOpcode = 0x62;
          insnStatus = Err.X86_UNKNOWN_OPCODE;
          return 0;
        }
        map = mm <= 3 ? M_EVEX + mm - 1 : M_EVEX + mm - 2;
      } else {
        // VEX3 (C4) or XOP (8F): RXBmmmmm WvvvvLpp
        if (lim - p < 2) return failLen(start, lim);
        mm = load<u8>(p) & 0x1f;
        pbyte = load<u8>(p + 1);
        p += 2;
        if (sp == SP_VEX3) {
          if (mm < 1 || mm > 3) {
            insnOpcode = 0xc4;
            insnStatus = Err.X86_UNKNOWN_OPCODE;
            return 0;
          }
          map = M_VEX + mm - 1;
        } else {
          if (mm > 10) {
            insnOpcode = 0x8f;
            insnStatus = Err.X86_UNKNOWN_OPCODE;
            return 0;
          }
          map = M_XOP + mm - 8;
        }
      }
      vexW = (pbyte & 0x80) != 0 && sp != SP_VEX2;
      if (vexW) flags |= Flag.REX_W;
      cls = pbyte & 3;
      if (p >= lim) return failLen(start, p);
      op = load<u8>(p++);
      e = load<u32>(entryPtr(map, op));
    }
  }
  insnOpcode = (map << 8) | op;
  if (e & E_INVALID) {
    insnStatus = Err.X86_UNKNOWN_OPCODE;
    return 0;
  }
  // ModRM, SIB, displacement.
  let modrm: u32 = 0;
  let sib: u32 = 0;
  let disp: u32 = 0;
  let ripRel = false;
  const grp = e >>> 16;
  if (e & E_MODRM) {
    if (p >= lim) return failLen(start, p);
    modrm = load<u8>(p++);
    if (grp != 0) {
      const rec = GROUPS + ((<usize>(grp - 1)) << 6) + (<usize>cls << 4);
      const ok = modrm >= 0xc0
        ? (load<u64>(rec + 8) >> (modrm & 63)) & 1
        : (<u64>load<u8>(rec) >> ((modrm >> 3) & 7)) & 1;
      if (ok == 0) {
        insnModrm = modrm;
        insnStatus = Err.X86_UNKNOWN_OPCODE;
        return 0;
      }
    }
    if (modrm < 0xc0 && (e & E_REGONLY) == 0) {
      const mod = modrm >> 6;
      const rm = modrm & 7;
      if (rm == 4) {
        if (p >= lim) return failLen(start, p);
        sib = load<u8>(p++);
        if (mod == 0 && (sib & 7) == 5) disp = 4;
      } else if (mod == 0 && rm == 5) {
        disp = 4;
        ripRel = true;
      }
      if (mod == 1) disp = 1;
      else if (mod == 2) disp = 4;
    }
  } else if (grp != 0) {
    // no ModRM: only the mandatory prefix class decides
    if (load<u8>(GROUPS + ((<usize>(grp - 1)) << 6) + (<usize>cls << 4)) == 0) {
      insnStatus = Err.X86_UNKNOWN_OPCODE;
      return 0;
    }
  }
  insnModrm = modrm;
  insnSib = sib;
  // Immediate.
  let imm: u32 = 0;
  let rel = false;
  switch (e & 15) {
    case IMM_NONE: break;
    case IMM_B: imm = 1; break;
    case IMM_W: imm = 2; break;
    case IMM_Z: imm = (flags & Flag.OPSIZE) != 0 && (rex & 8) == 0 ? 2 : 4; break;
    case IMM_V: imm = (rex & 8) != 0 ? 8 : (flags & Flag.OPSIZE) != 0 ? 2 : 4; break;
    case IMM_MOFFS: imm = (flags & Flag.ADDRSIZE) != 0 ? 4 : 8; break;
    case IMM_ENTER: imm = 3; break;
    case IMM_JB: imm = 1; rel = true; break;
    case IMM_JZ: imm = 4; rel = true; break;
    case IMM_F6: imm = (modrm & 0x30) == 0 ? 1 : 0; break;
    case IMM_F7: imm = (modrm & 0x30) == 0 ? ((flags & Flag.OPSIZE) != 0 && (rex & 8) == 0 ? 2 : 4) : 0; break;
    case IMM_Q: imm = cls == 1 || cls == 3 ? 2 : 0; break;
    default: break;
  }
  const dispAt = <u32>(p - start);
  const len = dispAt + disp + imm;
  if (len > 15) { insnStatus = Err.X86_TOO_LONG; return 0; }
  if (<usize>len > end - start) { insnStatus = Err.X86_TRUNCATED; return 0; }
  const next = pc + <u64>len;
  insnDispOffset = disp != 0 ? dispAt : 0;
  insnDispSize = disp;
  // Classification.
  let kind: u32 = Kind.OTHER;
  const hint = (e >> 8) & 15;
  if (hint != KH_NONE) {
    switch (hint) {
      case KH_JCC: kind = Kind.JCC; break;
      case KH_JMP: kind = Kind.JMP; break;
      case KH_CALL: kind = Kind.CALL; break;
      case KH_RET: kind = Kind.RET; break;
      case KH_INT3: kind = Kind.INT3; break;
      case KH_INT: kind = Kind.INT; break;
      case KH_SYSCALL: kind = Kind.SYSCALL; break;
      case KH_UD: kind = Kind.UD; break;
      case KH_HLT: kind = Kind.HLT; break;
      case KH_NOP90: if ((rex & 1) == 0 && rep != 0xf3) kind = Kind.NOP; break;
      case KH_GRP5: {
        const reg = (modrm >> 3) & 7;
        if (reg == 2 || reg == 3) kind = Kind.CALL_IND;
        else if (reg == 4 || reg == 5) kind = Kind.JMP_IND;
        break;
      }
      case KH_0F1E: if (rep == 0xf3 && modrm == 0xfa) kind = Kind.ENDBR64; break;
      case KH_0F1F: if ((modrm & 0x38) == 0 && rep == 0) kind = Kind.NOP; break;
      case KH_C7:
        if (modrm == 0xf8) { kind = Kind.JCC; rel = true; } // xbegin rel32
        break;
      default: break;
    }
  }
  if (rel) {
    if ((flags & Flag.OPSIZE) != 0 && (rex & 8) == 0) {
      insnStatus = Err.X86_AMBIGUOUS_ENCODING;
      return 0;
    }
    const at = start + dispAt + disp;
    const d: i64 = imm == 1 ? <i64>load<i8>(at) : <i64>load<i32>(at);
    insnTarget = next + <u64>d;
    insnRelOffset = dispAt + disp;
    insnRelSize = imm;
  } else if (ripRel) {
    flags |= Flag.RIP_REL;
    const t = next + <u64><i64>load<i32>(start + dispAt);
    insnTarget = (flags & Flag.ADDRSIZE) != 0 ? t & 0xffffffff : t;
    insnRelOffset = dispAt;
    insnRelSize = 4;
  }
  insnKind = kind;
  insnFlags = flags;
  return len;
}

// ---- linear decoding into records ------------------------------------------------
//
// Record (16 bytes, little-endian), one per instruction:
//
//    0        8        12   13   14    15
//   +--------+--------+----+----+-----+------+
//   | target | offset |len |kind|flags|status|
//   +--------+--------+----+----+-----+------+
//   target: branch target or RIP-relative address (0 when none); offset: of the first
//   byte, from the start of the input; status: 0, or the Err code - 399 (1 truncated, 2 unknown, 3 ambiguous, 4 too long; len 0).

export const RECORD_SIZE: u32 = 16;

/** Stop at the first error (its record is the last one written). */
export const MODE_STOP: u32 = 0;
/** On an error, write its record and go on one byte further (a linear sweep). */
export const MODE_SWEEP: u32 = 1;

/** Offset where the last decodeRange() stopped (the first byte not decoded). */
export let rangeNext: u64 = 0;

/**
 * Decodes linearly from `from` while the offset is below `to`, reading at most up to
 * `len`, writing at most `cap` records to `out`. `pc` is the address of input byte 0.
 * Returns the number of records written.
 */
export function decodeRange(base: usize, len: u64, from: u64, to: u64, pc: u64, out: usize, cap: u32, mode: u32): u32 {
  const end = base + <usize>len;
  let off = from;
  let n: u32 = 0;
  while (off < to && n < cap) {
    const l = decodeOne(base + <usize>off, end, pc + off);
    const r = out + (<usize>n << 4);
    if (l != 0) {
      store<u64>(r, insnTarget);
      store<u32>(r, <u32>off, 8);
      store<u8>(r, <u8>l, 12);
      store<u8>(r, <u8>insnKind, 13);
      store<u8>(r, <u8>insnFlags, 14);
      store<u8>(r, 0, 15);
      off += l;
    } else {
      store<u64>(r, 0);
      store<u32>(r, <u32>off, 8);
      store<u32>(r, <u32>(insnStatus - 399) << 24, 12);
      n++;
      if (mode != MODE_SWEEP) { rangeNext = off; return n; }
      off += 1;
      continue;
    }
    n++;
  }
  rangeNext = off;
  return n;
}

// ---- error messages -----------------------------------------------------------

function statusName(code: i32): string {
  switch (code) {
    case Err.X86_TRUNCATED: return "truncated instruction";
    case Err.X86_UNKNOWN_OPCODE: return "unknown opcode";
    case Err.X86_AMBIGUOUS_ENCODING: return "ambiguous encoding (0x66 near branch: rel16 on AMD, rel32 on Intel)";
    case Err.X86_TOO_LONG: return "instruction longer than 15 bytes";
  }
  return "decode error";
}

/** Records the failure of a decode at `off` with the bytes there, and returns its code. */
export function failDecode(base: usize, len: u64, off: u64, pc: u64): i32 {
  let bytes = "";
  const n = len - off < 15 ? len - off : 15;
  for (let i: u64 = 0; i < n; i++) {
    const b = load<u8>(base + <usize>(off + i));
    bytes += (i ? " " : "") + (b < 16 ? "0" : "") + b.toString(16);
  }
  return fail(insnStatus, "x86 instruction at " + hex(pc + off) + " (offset " + hex(off) + "): " +
    statusName(insnStatus) + " (bytes: " + bytes + ")");
}
