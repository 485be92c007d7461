// The CFA program interpreter: runs a CIE's initial instructions and an FDE's
// instructions up to a pc, giving the row of the unwind table for that pc
// (DWARF 5, 6.4.2 "Call Frame Instructions", 6.4.3 "Call Frame Instruction Usage").
//
// A row lives in raw memory (ROW_SIZE bytes) so it can be copied, remembered and
// restored without allocating:
//
//   0  u32 cfa type (CFA_*)   4 u32 cfa register   8 i64 cfa offset
//   16 u64 cfa expression (pointer in core memory)   24 u32 its length
//   28 u32 mask: bit r set when register r has a rule (not RULE_UNSET)
//   32 + 24*r, for DWARF registers r = 0..16:
//        +0 u32 rule (RULE_*)   +4 u32 register (RULE_REGISTER)
//        +8 i64 offset N, or the expression's pointer   +16 u64 expression length
//
// Rows hold from their location up to the next one: the program runs until an
// advance would move the location past the target pc. remember_state/restore_state
// save the whole row, CFA included (what gcc relies on and libgcc and gdb do).
// Columns above 16 (vector and x87 registers) are parsed and ignored.
import { Cursor, Cie, Fde, Module, recordKind, nextRecord, parseCie, moduleFde, RECORD_CIE, RECORD_END } from "./cfi";
import { errStateDepth, errRestoreState, errOpcode, errProgramTruncated } from "./errors";
import {
  NREGS, CFA_REG_OFFSET, CFA_EXPRESSION, RULE_UNSET, RULE_UNDEFINED, RULE_SAME, RULE_OFFSET,
  RULE_VAL_OFFSET, RULE_REGISTER, RULE_EXPRESSION, RULE_VAL_EXPRESSION,
  DW_CFA_advance_loc, DW_CFA_offset, DW_CFA_restore, DW_CFA_nop, DW_CFA_set_loc, DW_CFA_advance_loc1,
  DW_CFA_advance_loc2, DW_CFA_advance_loc4, DW_CFA_offset_extended, DW_CFA_restore_extended,
  DW_CFA_undefined, DW_CFA_same_value, DW_CFA_register, DW_CFA_remember_state, DW_CFA_restore_state,
  DW_CFA_def_cfa, DW_CFA_def_cfa_register, DW_CFA_def_cfa_offset, DW_CFA_def_cfa_expression,
  DW_CFA_expression, DW_CFA_offset_extended_sf, DW_CFA_def_cfa_sf, DW_CFA_def_cfa_offset_sf,
  DW_CFA_val_offset, DW_CFA_val_offset_sf, DW_CFA_val_expression, DW_CFA_GNU_args_size,
  DW_CFA_GNU_negative_offset_extended,
} from "./dwarf";

export const ROW_SIZE: usize = 32 + 24 * NREGS; // 440
export const STATE_DEPTH: u32 = 32; // remember_state nesting (gcc emits 1 or 2)

@inline export function ruleAt(row: usize, r: u32): usize { return row + 32 + <usize>r * 24; }

const stateStack: usize = heap.alloc(ROW_SIZE * STATE_DEPTH);
const prog = new Cursor();

/** The last run's row covers pcs [rowStart, rowEnd) (rowEnd: the next row's location, or the FDE's end). */
export let rowStart: u64 = 0;
export let rowEnd: u64 = 0;

@inline function setRule(row: usize, r: u64, type: u32, val: i64, len: u64): void {
  if (r >= <u64>NREGS) return;
  const p = ruleAt(row, <u32>r);
  store<u32>(p, type);
  store<u32>(p, 0, 4);
  store<i64>(p, val, 8);
  store<u64>(p, len, 16);
  const bit: u32 = 1 << <u32>r;
  const mask = load<u32>(row, 28);
  store<u32>(row, type == RULE_UNSET ? mask & ~bit : mask | bit, 28);
}

/**
 * Runs instructions [start, end) of module m over `row`. `init` is the CIE's initial
 * row (DW_CFA_restore), 0 while running the CIE itself. Stops before an advance past
 * `target`; `loc` is the location the program starts at. Returns 0 or an error code.
 */
function execute(m: Module, cie: Cie, start: u64, end: u64, row: usize, init: usize, loc: u64, target: u64, what: u64): i32 {
  const c = prog;
  c.set(m.bytes, m.addr, start, end);
  const base = m.bytes;
  const codeAlign = cie.codeAlign;
  const dataAlign = cie.dataAlign;
  let depth: u32 = 0;
  rowEnd = <u64>-1;
  rowStart = loc;
  let pos = start;
  while (pos < end) {
    // Fast paths, in locals, for what gcc's programs are made of: advance_loc,
    // def_cfa_offset and offset with one-byte operands.
    const op0 = <u32>load<u8>(base + <usize>pos);
    if ((op0 & 0xc0) == DW_CFA_advance_loc) {
      pos++;
      if (init != 0) {
        const next = loc + <u64>(op0 & 0x3f) * codeAlign;
        if (next > target) { rowEnd = next; return 0; }
        loc = next;
        rowStart = loc;
      }
      continue;
    }
    if (op0 == DW_CFA_nop) { pos++; continue; }
    if ((op0 & 0xc0) == DW_CFA_restore) { restoreReg(row, init, <u64>(op0 & 0x3f)); pos++; continue; }
    if (op0 == DW_CFA_remember_state) {
      if (depth >= STATE_DEPTH) return errStateDepth(what, pos, STATE_DEPTH);
      copyRow(stateStack + <usize>depth * ROW_SIZE, row);
      depth++;
      pos++;
      continue;
    }
    if (op0 == DW_CFA_restore_state) {
      if (depth == 0) return errRestoreState(what, pos);
      depth--;
      copyRow(row, stateStack + <usize>depth * ROW_SIZE);
      pos++;
      continue;
    }
    if (pos + 1 < end) {
      const b = <u32>load<u8>(base + <usize>pos + 1);
      if (op0 == DW_CFA_advance_loc1) {
        pos += 2;
        if (init != 0) {
          const next = loc + <u64>b * codeAlign;
          if (next > target) { rowEnd = next; return 0; }
          loc = next;
          rowStart = loc;
        }
        continue;
      }
      if (op0 == DW_CFA_def_cfa_offset && b >= 0x80 && pos + 2 < end) {
        const b2 = <u32>load<u8>(base + <usize>pos + 2);
        if (b2 < 0x80) { store<i64>(row, <i64>((b & 0x7f) | (b2 << 7)), 8); pos += 3; continue; }
      }
      if (b < 0x80) {
        if (op0 == DW_CFA_def_cfa_offset) { store<i64>(row, <i64>b, 8); pos += 2; continue; }
        if ((op0 & 0xc0) == DW_CFA_offset) {
          const p = ruleAt(row, op0 & 0x3f);
          if ((op0 & 0x3f) < NREGS) {
            store<u32>(p, RULE_OFFSET);
            store<u32>(p, 0, 4);
            store<i64>(p, <i64>b * dataAlign, 8);
            store<u64>(p, 0, 16);
            store<u32>(row, load<u32>(row, 28) | (1 << (op0 & 0x3f)), 28);
          }
          pos += 2;
          continue;
        }
      }
    }
    // The general path, through the cursor.
    c.pos = pos;
    const at = c.pos;
    const op = c.u8();
    const hi = op & 0xc0;
    let next = loc;
    let advanced = false;
    if (hi == DW_CFA_advance_loc) {
      next = loc + <u64>(op & 0x3f) * cie.codeAlign; advanced = true;
    } else if (hi == DW_CFA_offset) {
      const off = <i64>c.uleb() * cie.dataAlign;
      setRule(row, <u64>(op & 0x3f), RULE_OFFSET, off, 0);
    } else if (hi == DW_CFA_restore) {
      restoreReg(row, init, <u64>(op & 0x3f));
    } else {
      switch (op) {
        case DW_CFA_nop: break;
        case DW_CFA_set_loc: next = c.encoded(cie.fdeEnc, 0); advanced = true; break;
        case DW_CFA_advance_loc1: next = loc + <u64>c.u8() * cie.codeAlign; advanced = true; break;
        case DW_CFA_advance_loc2: next = loc + c.u16() * cie.codeAlign; advanced = true; break;
        case DW_CFA_advance_loc4: next = loc + c.u32() * cie.codeAlign; advanced = true; break;
        case DW_CFA_offset_extended: {
          const r = c.uleb();
          setRule(row, r, RULE_OFFSET, <i64>c.uleb() * cie.dataAlign, 0);
          break;
        }
        case DW_CFA_restore_extended: restoreReg(row, init, c.uleb()); break;
        case DW_CFA_undefined: setRule(row, c.uleb(), RULE_UNDEFINED, 0, 0); break;
        case DW_CFA_same_value: setRule(row, c.uleb(), RULE_SAME, 0, 0); break;
        case DW_CFA_register: {
          const r = c.uleb();
          const r2 = c.uleb();
          setRule(row, r, RULE_REGISTER, 0, 0);
          if (r < <u64>NREGS) store<u32>(ruleAt(row, <u32>r), <u32>min<u64>(r2, 0xffffffff), 4);
          break;
        }
        case DW_CFA_remember_state:
          if (depth >= STATE_DEPTH) return errStateDepth(what, at, STATE_DEPTH);
          copyRow(stateStack + <usize>depth * ROW_SIZE, row);
          depth++;
          break;
        case DW_CFA_restore_state:
          if (depth == 0) return errRestoreState(what, at);
          depth--;
          copyRow(row, stateStack + <usize>depth * ROW_SIZE);
          break;
        case DW_CFA_def_cfa: {
          const r = c.uleb();
          const off = c.uleb();
          store<u32>(row, CFA_REG_OFFSET);
          store<u32>(row, <u32>min<u64>(r, 0xffffffff), 4);
          store<i64>(row, <i64>off, 8);
          break;
        }
        case DW_CFA_def_cfa_sf: {
          const r = c.uleb();
          const off = c.sleb() * cie.dataAlign;
          store<u32>(row, CFA_REG_OFFSET);
          store<u32>(row, <u32>min<u64>(r, 0xffffffff), 4);
          store<i64>(row, off, 8);
          break;
        }
        case DW_CFA_def_cfa_register:
          store<u32>(row, CFA_REG_OFFSET);
          store<u32>(row, <u32>min<u64>(c.uleb(), 0xffffffff), 4);
          break;
        case DW_CFA_def_cfa_offset: store<i64>(row, <i64>c.uleb(), 8); break;
        case DW_CFA_def_cfa_offset_sf: store<i64>(row, c.sleb() * cie.dataAlign, 8); break;
        case DW_CFA_def_cfa_expression: {
          const n = c.uleb();
          if (!c.ok || !c.has(n)) return errProgramTruncated(what, at);
          store<u32>(row, CFA_EXPRESSION);
          store<u64>(row, <u64>(c.base + <usize>c.pos), 16);
          store<u32>(row, <u32>n, 24); // n fits: it lies inside the input, in a 32-bit memory
          c.pos += n;
          break;
        }
        case DW_CFA_expression:
        case DW_CFA_val_expression: {
          const r = c.uleb();
          const n = c.uleb();
          if (!c.ok || !c.has(n)) return errProgramTruncated(what, at);
          setRule(row, r, op == DW_CFA_expression ? RULE_EXPRESSION : RULE_VAL_EXPRESSION, <i64>(c.base + <usize>c.pos), n);
          c.pos += n;
          break;
        }
        case DW_CFA_offset_extended_sf: {
          const r = c.uleb();
          setRule(row, r, RULE_OFFSET, c.sleb() * cie.dataAlign, 0);
          break;
        }
        case DW_CFA_val_offset: {
          const r = c.uleb();
          setRule(row, r, RULE_VAL_OFFSET, <i64>c.uleb() * cie.dataAlign, 0);
          break;
        }
        case DW_CFA_val_offset_sf: {
          const r = c.uleb();
          setRule(row, r, RULE_VAL_OFFSET, c.sleb() * cie.dataAlign, 0);
          break;
        }
        case DW_CFA_GNU_args_size: c.uleb(); break;
        case DW_CFA_GNU_negative_offset_extended: {
          const r = c.uleb();
          setRule(row, r, RULE_OFFSET, -(<i64>c.uleb() * cie.dataAlign), 0);
          break;
        }
        default:
          return errOpcode(what, op, at);
      }
    }
    if (!c.ok) return errProgramTruncated(what, at);
    if (advanced && init != 0) {
      if (next > target) { rowEnd = next; return 0; }
      loc = next;
      rowStart = loc;
    }
    pos = c.pos;
  }
  return 0;
}

@inline function restoreReg(row: usize, init: usize, r: u64): void {
  if (r >= <u64>NREGS) return;
  if (init == 0) { setRule(row, r, RULE_UNSET, 0, 0); return; }
  const d = ruleAt(row, <u32>r), s = ruleAt(init, <u32>r);
  store<u64>(d, load<u64>(s));
  store<u64>(d, load<u64>(s, 8), 8);
  store<u64>(d, load<u64>(s, 16), 16);
  const bit: u32 = 1 << <u32>r;
  const mask = load<u32>(row, 28);
  store<u32>(row, load<u32>(s) == RULE_UNSET ? mask & ~bit : mask | bit, 28);
}

/** Copies a row (inline copies: a memory.copy call costs more at this size). */
@inline export function copyRow(dst: usize, src: usize): void {
  if (ASC_FEATURE_SIMD) {
    // ROW_SIZE = 440 = 27 x 16 + 8
    for (let i: usize = 0; i < 432; i += 16) v128.store(dst + i, v128.load(src + i));
    store<u64>(dst + 432, load<u64>(src + 432));
  } else {
    for (let i: usize = 0; i < ROW_SIZE; i += 8) store<u64>(dst + i, load<u64>(src + i));
  }
}

/** Makes sure the module's cached CIE (which must be `fde`'s) has its initial row. */
function initialRow(m: Module): i32 {
  const cie = m.cie;
  if (cie.initRowValid) return 0;
  if (cie.initRow == 0) cie.initRow = heap.alloc(ROW_SIZE);
  memory.fill(cie.initRow, 0, ROW_SIZE);
  const r = execute(m, cie, cie.insStart, cie.insEnd, cie.initRow, 0, 0, <u64>-1, cie.off);
  if (r != 0) return r;
  cie.initRowValid = true;
  return 0;
}

/**
 * The row of `fde` (of module m, whose CIE cache holds the FDE's CIE) at pc `target`
 * into `row`. Returns 0 or an error code.
 */
export function computeRow(m: Module, fde: Fde, target: u64, row: usize): i32 {
  let r = initialRow(m);
  if (r != 0) return r;
  copyRow(row, m.cie.initRow);
  r = execute(m, m.cie, fde.insStart, fde.insEnd, row, m.cie.initRow, fde.pcBegin, target, fde.off);
  if (r == 0 && rowEnd > fde.pcEnd) rowEnd = fde.pcEnd;
  return r;
}

// ---------------------------------------------------------------------------
// Verification: parse every record of a module and run every program to its end.

export let verifiedCies: u32 = 0;
export let verifiedFdes: u32 = 0;

const vCur = new Cursor();
const vFde = new Fde();
const vRow: usize = heap.alloc(ROW_SIZE);

/** Walks all of m's .eh_frame. Returns 0 or the first error's code. */
export function verifyModule(m: Module): i32 {
  verifiedCies = 0;
  verifiedFdes = 0;
  let off: u64 = 0;
  const maxRecords = m.len / 8 + 1;
  for (let i: u64 = 0; i < maxRecords && off < m.len; i++) {
    vCur.set(m.bytes, m.addr, 0, m.len);
    const k = recordKind(vCur, m.len, off);
    if (k < 0) return -k;
    if (k == RECORD_END) break;
    const next = nextRecord;
    if (k == RECORD_CIE) {
      // Parse into the module's cache and run its initial instructions.
      m.cie.off = <u64>-1;
      let r = parseCie(vCur, m.len, off, m.cie);
      if (r != 0) { m.cie.off = <u64>-1; return r; }
      r = initialRow(m);
      if (r != 0) return r;
      verifiedCies++;
    } else {
      let r = moduleFde(m, off, vFde);
      if (r != 0) return r;
      r = computeRow(m, vFde, <u64>-1, vRow);
      if (r != 0) return r;
      verifiedFdes++;
    }
    off = next;
  }
  return 0;
}
