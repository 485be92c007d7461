// The failure messages of the stack area, one function per message.
//
// They live apart from the hot code on purpose: a function that builds a string
// has managed temporaries, and AssemblyScript's incremental runtime then spills
// its references to the shadow stack and clears a frame on every call. Kept
// here, only the failing path pays for that; the unwinder and the parsers keep
// plain numbers and @unmanaged structures.
import { Err, fail, hex } from "../error";

export function where(off: u64): string {
  return ".eh_frame+" + hex(off);
}

// ---- records (cfi.ts) -----------------------------------------------------------
export function errLengthTruncated(off: u64): i32 {
  return fail(Err.CFI_TRUNCATED, "record at " + where(off) + ": truncated length");
}
export function errLongLengthTruncated(off: u64): i32 {
  return fail(Err.CFI_TRUNCATED, "record at " + where(off) + ": truncated 64-bit length");
}
export function errLength(off: u64, length: u64, len: u64): i32 {
  return fail(Err.CFI_BAD_LENGTH, "record at " + where(off) + ": length " + hex(length) + " runs past the end of .eh_frame (" + hex(len) + " bytes)");
}
export function errCiePointerBefore(off: u64, id: u64): i32 {
  return fail(Err.CFI_BAD_CIE, "FDE at " + where(off) + ": CIE pointer " + hex(id) + " points before .eh_frame");
}
export function errNotCie(off: u64): i32 {
  return fail(Err.CFI_BAD_CIE, "record at " + where(off) + " is not a CIE");
}
export function errNotFde(off: u64): i32 {
  return fail(Err.CFI_BAD_FDE, "record at " + where(off) + " is not an FDE");
}
export function errCieVersion(off: u64, version: u32): i32 {
  return fail(Err.CFI_BAD_VERSION, "CIE at " + where(off) + ": version " + version.toString() + " (expected 1, 3 or 4)");
}
export function errCieSizes(off: u64, asz: u32, ssz: u32): i32 {
  return fail(Err.CFI_BAD_VERSION, "CIE at " + where(off) + ": address size " + asz.toString() + ", segment size " + ssz.toString() + " (expected 8, 0)");
}
export function errAugUnterminated(off: u64): i32 {
  return fail(Err.CFI_TRUNCATED, "CIE at " + where(off) + ": unterminated augmentation string");
}
export function errCieTruncated(off: u64): i32 {
  return fail(Err.CFI_TRUNCATED, "CIE at " + where(off) + ": truncated header");
}
export function errRaColumn(off: u64, ra: u32): i32 {
  return fail(Err.CFI_BAD_AUGMENTATION, "CIE at " + where(off) + ": return address column " + ra.toString() + " is not an x86-64 register the unwinder knows");
}
export function errAugData(off: u64, fde: bool): i32 {
  return fail(Err.CFI_TRUNCATED, (fde ? "FDE at " : "CIE at ") + where(off) + ": augmentation data runs past the record");
}
export function errAugShort(off: u64): i32 {
  return fail(Err.CFI_TRUNCATED, "CIE at " + where(off) + ": augmentation data shorter than \"z\" says");
}
/** what: 0 FDE pointer, 1 LSDA, 2 personality, 3 omitted FDE pointer */
export function errEncoding(off: u64, what: i32, enc: u32): i32 {
  if (what == 3) return fail(Err.CFI_BAD_ENCODING, "CIE at " + where(off) + ": FDE pointer encoding is 'omit'");
  const name = what == 0 ? "FDE pointer" : what == 1 ? "LSDA" : "personality";
  return fail(Err.CFI_BAD_ENCODING, "CIE at " + where(off) + ": " + name + " encoding " + hex(enc));
}
export function errAugUnknown(off: u64, aug: usize, len: usize): i32 {
  return fail(Err.CFI_BAD_AUGMENTATION, "CIE at " + where(off) + ": augmentation \"" + String.UTF8.decodeUnsafe(aug, len, false) + "\" without 'z' is not understood");
}
export function errPcBegin(off: u64, enc: u32): i32 {
  return fail(Err.CFI_BAD_FDE, "FDE at " + where(off) + ": unreadable pc_begin/pc_range in encoding " + hex(enc));
}
export function errPcWraps(off: u64, begin: u64, range: u64): i32 {
  return fail(Err.CFI_BAD_FDE, "FDE at " + where(off) + ": pc range " + hex(begin) + "+" + hex(range) + " wraps around");
}

// ---- call frame programs (row.ts) -------------------------------------------------
export function errStateDepth(fde: u64, at: u64, depth: u32): i32 {
  return fail(Err.CFI_STATE_OVERFLOW, "FDE at " + where(fde) + ": DW_CFA_remember_state nested deeper than " + depth.toString() + " at " + where(at));
}
export function errRestoreState(fde: u64, at: u64): i32 {
  return fail(Err.CFI_BAD_INSTRUCTION, "FDE at " + where(fde) + ": DW_CFA_restore_state without remember_state at " + where(at));
}
export function errOpcode(fde: u64, op: u32, at: u64): i32 {
  return fail(Err.CFI_BAD_INSTRUCTION, "FDE at " + where(fde) + ": unknown call frame instruction " + hex(op) + " at " + where(at));
}
export function errProgramTruncated(fde: u64, at: u64): i32 {
  return fail(Err.CFI_TRUNCATED, "FDE at " + where(fde) + ": call frame instruction at " + where(at) + " runs past the end of its record");
}

// ---- DWARF expressions (expr.ts) ----------------------------------------------------
export const EXPR_TOO_LONG: i32 = 1;
export const EXPR_TRUNCATED: i32 = 2;
export const EXPR_UNDERFLOW: i32 = 3;
export const EXPR_OVERFLOW: i32 = 4;
export const EXPR_BRANCH: i32 = 5;
export const EXPR_DIV_ZERO: i32 = 6;
export const EXPR_EMPTY: i32 = 7;
export const EXPR_UNSUPPORTED: i32 = 8; //  arg: the opcode
export const EXPR_DEREF_SIZE: i32 = 9; //   arg: the size
export const EXPR_PICK: i32 = 10; //        arg: the index

export function errExpr(kind: i32, at: u64, arg: u64, steps: u32): i32 {
  let what: string;
  switch (kind) {
    case EXPR_TOO_LONG: what = "more than " + steps.toString() + " operations (a loop?)"; break;
    case EXPR_TRUNCATED: what = "truncated operand"; break;
    case EXPR_UNDERFLOW: what = "stack underflow"; break;
    case EXPR_OVERFLOW: what = "stack overflow"; break;
    case EXPR_BRANCH: what = "branch outside the expression"; break;
    case EXPR_DIV_ZERO: what = "division by zero"; break;
    case EXPR_EMPTY: what = "empty stack at the end"; break;
    case EXPR_UNSUPPORTED: what = "unsupported operation " + hex(arg); break;
    case EXPR_DEREF_SIZE: what = "DW_OP_deref_size of " + arg.toString() + " bytes"; break;
    default: what = "DW_OP_pick " + arg.toString() + " below the stack"; break;
  }
  return fail(Err.STACK_BAD_EXPRESSION, "DWARF expression: " + what + " at byte " + at.toString());
}
export function errExprRegister(r: u64): i32 {
  return fail(Err.STACK_BAD_RULE, "DWARF expression: DW_OP_breg" + r.toString() + " needs a register the unwinder does not know here");
}
export function errExprMemory(addr: u64): i32 {
  return fail(Err.STACK_NEED_MEMORY, "DWARF expression: reads " + hex(addr) + ", outside the stack memory given");
}

// ---- the unwinder (unwind.ts, scan.ts) ----------------------------------------------
export function errNoFde(pc: u64, exact: bool): i32 {
  return fail(Err.STACK_NO_FDE, "no FDE covers pc " + hex(pc) + (exact ? "" : " (looked up as " + hex(pc - 1) + ")"));
}
export function errCfaRegister(fde: u64, reg: u32, pc: u64): i32 {
  return fail(Err.STACK_BAD_RULE, "FDE " + hex(fde) + ": CFA rule uses register " + reg.toString() + ", unknown at pc " + hex(pc));
}
export function errNoCfa(fde: u64, pc: u64): i32 {
  return fail(Err.STACK_BAD_RULE, "FDE " + hex(fde) + ": no CFA rule at pc " + hex(pc));
}
export function errRaNoRule(fde: u64, pc: u64): i32 {
  return fail(Err.STACK_BAD_RULE, "FDE " + hex(fde) + ": the return address has no rule at pc " + hex(pc));
}
export function errRaUnknown(fde: u64, pc: u64): i32 {
  return fail(Err.STACK_BAD_RULE, "FDE " + hex(fde) + ": the return address is unknown at pc " + hex(pc));
}
export function errCfaDown(fde: u64, pc: u64, nsp: u64, sp: u64): i32 {
  return fail(Err.STACK_BAD_CFA, "FDE " + hex(fde) + ": at pc " + hex(pc) + " the caller's stack pointer " + hex(nsp) + " is not above " + hex(sp) + " (corrupt stack?)");
}
/** reg: the register whose rule read memory; -1: the signal frame of a trampoline without CFI */
export function errRuleMemory(fde: u64, reg: i32, addr: u64, expr: bool): i32 {
  const what = reg < 0
    ? "sigreturn trampoline at " + hex(fde) + ": the signal frame"
    : "FDE " + hex(fde) + ": the " + (expr ? "expression " : "") + "rule of register " + reg.toString();
  return fail(Err.STACK_NEED_MEMORY, what + " reads " + hex(addr) + ", outside the stack memory given");
}
export function errDepth(max: u32): i32 {
  return fail(Err.STACK_DEPTH_LIMIT, "more than " + max.toString() + " frames (the limit given)");
}
