// Where a PC-relative relocation in code points: S + A + tail, tail = the bytes from the
// relocated field to the end of its instruction (Intel SDM vol. 2, 2.2.1.6 "RIP-Relative
// Addressing": the displacement is added to the address of the next instruction).
//
// The field of a PC-relative relocation in code is either
//   - the rel32 of `call`/`jmp` (e8, e9) or `jcc` (0f 80..8f): tail 4, or
//   - the disp32 of a ModRM with mod=00 rm=101 (RIP-relative), then an immediate of the
//     opcode's size: tail 4 + 0, 1, 2 or 4.
// Decoding backwards from the field is ambiguous (the byte before the opcode may be a
// prefix, an escape, or the end of the previous instruction), so every reading that
// fits is tried and the tail is known only when all readings agree; otherwise the caller
// compares every position the field could point to (tails 4..8), which is conservative.
// Only content comparisons (strings, constants) and objects sharing a section need it:
// for a named target the raw addends are compared, and equal bytes mean equal tails.

const UNKNOWN: i32 = -1;

// Immediate size of one-byte opcodes that take a ModRM (Intel SDM vol. 2, appendix A.3,
// table A-2), -1 for opcodes without ModRM, 9 for "depends on ModRM.reg" (f6, f7), 10 for
// "imm32, imm16 with 66".
function oneByteImm(op: u32, reg: u32): i32 {
  if (op < 0x40) {
    const lo = op & 7;
    if (lo <= 3) return 0; // ALU r/m forms (00-03, 08-0b, ... 38-3b)
    return -1;
  }
  switch (op) {
    case 0x63: return 0; // movsxd
    case 0x69: return 10; // imul r, r/m, imm32
    case 0x6b: return 1; // imul r, r/m, imm8
    case 0x80: case 0x82: case 0x83: case 0xc0: case 0xc1: case 0xc6: return 1;
    case 0x81: case 0xc7: return 10;
    case 0x84: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8a: case 0x8b:
    case 0x8c: case 0x8d: case 0x8e: case 0x8f:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
    case 0xd8: case 0xd9: case 0xda: case 0xdb: case 0xdc: case 0xdd: case 0xde: case 0xdf:
    case 0xfe: case 0xff:
      return 0;
    case 0xf6: return reg <= 1 ? 1 : 0; // test r/m8, imm8 (/0 /1); not/neg/mul/div
    case 0xf7: return reg <= 1 ? 10 : 0;
  }
  return -1;
}

// Immediate size of two-byte opcodes 0f xx with a ModRM (table A-3): imm8 for the listed
// ones, none otherwise; -1 where 0f xx takes no ModRM.
function twoByteImm(op: u32): i32 {
  if (op >= 0x80 && op <= 0x8f) return -1; // jcc rel32
  if ((op >= 0x30 && op <= 0x37) || op == 0x05 || op == 0x06 || op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0b || op == 0x77 || op == 0xa0 || op == 0xa1 || op == 0xa2 || op == 0xa8 || op == 0xa9 || op == 0xaa || (op >= 0xc8 && op <= 0xcf)) return -1;
  switch (op) {
    case 0x70: case 0x71: case 0x72: case 0x73: case 0xa4: case 0xac: case 0xba: case 0xc2: case 0xc4: case 0xc5: case 0xc6:
      return 1;
  }
  return 0;
}

/** Whether a 66 operand-size prefix stands among the legacy/REX prefixes just before `at`. */
function has66(code: usize, at: i64, start: i64): bool {
  let i = at - 1;
  let n = 0;
  while (i >= start && n < 4) {
    const b = <u32>load<u8>(code + <usize>i);
    if (b == 0x66) return true;
    if ((b & 0xf0) == 0x40 || b == 0xf2 || b == 0xf3 || b == 0x2e || b == 0x3e || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65 || b == 0xf0) {
      i--;
      n++;
      continue;
    }
    break;
  }
  return false;
}

let tails: u32 = 0; // bit t set: tail t is a possible reading

@inline function add(t: i32): void {
  if (t >= 0 && t < 32) tails |= 1 << <u32>t;
}

/**
 * The tail of the rel32/disp32 field at offset `off` of the code at `code` (a section's
 * first byte), reading no byte before offset `start`; -1 when the readings disagree.
 */
export function ripTail(code: usize, start: i64, off: i64): i32 {
  tails = 0;
  if (off - 1 < start) return UNKNOWN;
  const b1 = <u32>load<u8>(code + <usize>(off - 1));
  if (b1 == 0xe8 || b1 == 0xe9) add(4);
  if (off - 2 >= start && load<u8>(code + <usize>(off - 2)) == 0x0f && b1 >= 0x80 && b1 <= 0x8f) add(4);
  if ((b1 & 0xc7) == 0x05 && off - 2 >= start) {
    const reg = (b1 >> 3) & 7;
    const op = <u32>load<u8>(code + <usize>(off - 2));
    // One-byte opcode at off-2.
    const i1 = oneByteImm(op, reg);
    if (i1 == 10) add(4 + (has66(code, off - 2, start) ? 2 : 4));
    else if (i1 >= 0) add(4 + i1);
    // Two-byte 0f xx at off-3.
    if (off - 3 >= start && load<u8>(code + <usize>(off - 3)) == 0x0f) {
      const i2 = twoByteImm(op);
      if (i2 >= 0) add(4 + i2);
    }
    // Three-byte 0f 38 xx / 0f 3a xx at off-4.
    if (off - 4 >= start && load<u8>(code + <usize>(off - 4)) == 0x0f) {
      const esc = <u32>load<u8>(code + <usize>(off - 3));
      if (esc == 0x38) add(4);
      else if (esc == 0x3a) add(5);
    }
    // VEX: c5 vv op modrm (map 0f), c4 rxbm wvvv op modrm (map m).
    if (off - 4 >= start && load<u8>(code + <usize>(off - 4)) == 0xc5) {
      const i2 = twoByteImm(op);
      if (i2 >= 0) add(4 + i2);
    }
    if (off - 5 >= start && load<u8>(code + <usize>(off - 5)) == 0xc4) {
      const map = <u32>load<u8>(code + <usize>(off - 4)) & 0x1f;
      if (map == 1) {
        const i2 = twoByteImm(op);
        if (i2 >= 0) add(4 + i2);
      } else if (map == 2) add(4);
      else if (map == 3) add(5);
    }
  }
  if (tails == 0 || popcnt(tails) != 1) return UNKNOWN;
  return <i32>ctz(tails);
}
