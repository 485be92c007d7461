// DWARF expression evaluator for CFI (DW_CFA_def_cfa_expression, DW_CFA_expression,
// DW_CFA_val_expression): a stack machine over u64 (DWARF 5, 2.5.1).
//
// What it meets on Linux x86-64:
//   glibc __restore_rt:  DW_OP_breg7 (rsp) N; DW_OP_deref      (the signal frame)
//   PLT (ld's .eh_frame): DW_OP_breg7 8; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and;
//                         DW_OP_lit11; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus
//   gcc stack realignment: DW_OP_breg6 (rbp) -N; DW_OP_deref
// It implements the whole arithmetic/stack/control set so hand-written CFI works
// too. For DW_CFA_expression and DW_CFA_val_expression the CFA is pushed first.
//
// Bounds: at most EXPR_STACK entries, at most EXPR_STEPS operations (DW_OP_skip
// and DW_OP_bra can loop), every operand read within the block.
import {
  errExpr, errExprRegister, errExprMemory, EXPR_TOO_LONG, EXPR_TRUNCATED, EXPR_UNDERFLOW, EXPR_OVERFLOW,
  EXPR_BRANCH, EXPR_DIV_ZERO, EXPR_EMPTY, EXPR_UNSUPPORTED, EXPR_DEREF_SIZE, EXPR_PICK,
} from "./errors";
import { Cursor } from "./cfi";
import { readMem, memFault, MEM_OK } from "./mem";
import {
  NREGS, DW_OP_addr, DW_OP_deref, DW_OP_const1u, DW_OP_const1s, DW_OP_const2u, DW_OP_const2s,
  DW_OP_const4u, DW_OP_const4s, DW_OP_const8u, DW_OP_const8s, DW_OP_constu, DW_OP_consts,
  DW_OP_dup, DW_OP_drop, DW_OP_over, DW_OP_pick, DW_OP_swap, DW_OP_rot, DW_OP_abs, DW_OP_and,
  DW_OP_div, DW_OP_minus, DW_OP_mod, DW_OP_mul, DW_OP_neg, DW_OP_not, DW_OP_or, DW_OP_plus,
  DW_OP_plus_uconst, DW_OP_shl, DW_OP_shr, DW_OP_shra, DW_OP_xor, DW_OP_bra, DW_OP_eq, DW_OP_ge,
  DW_OP_gt, DW_OP_le, DW_OP_lt, DW_OP_ne, DW_OP_skip, DW_OP_lit0, DW_OP_breg0, DW_OP_bregx,
  DW_OP_deref_size, DW_OP_nop,
} from "./dwarf";

export const EXPR_STACK: u32 = 64;
export const EXPR_STEPS: u32 = 4096;

/** Result of the last successful evalExpr. */
export let exprValue: u64 = 0;
/** Set when evalExpr failed on a memory read (the caller asks for more memory). */
export let exprMemFault: bool = false;

const stack: usize = heap.alloc(<usize>EXPR_STACK * 8);
const c = new Cursor();

/**
 * Evaluates the expression [ptr, ptr+len). `regs` holds DWARF registers 0..16 (u64
 * each), `valid` which of them are known. push: whether `initial` starts the stack.
 * Returns 0 with the result in exprValue, or an error code.
 */
export function evalExpr(ptr: usize, len: u64, regs: usize, valid: u32, push: bool, initial: u64): i32 {
  exprMemFault = false;
  c.set(ptr, 0, 0, len);
  let sp: u32 = 0;
  if (push) { store<u64>(stack, initial); sp = 1; }
  for (let steps: u32 = 0; c.pos < c.end; steps++) {
    if (steps >= EXPR_STEPS) return errExpr(EXPR_TOO_LONG, c.pos, 0, EXPR_STEPS);
    const at = c.pos;
    const op = <u8>c.u8();
    // Operands first; then pop/push.
    let v: u64 = 0;
    let pushes = true;
    let need: u32 = 0; // entries the operation consumes
    if (op >= DW_OP_lit0 && op < DW_OP_lit0 + 32) {
      v = <u64>(op - DW_OP_lit0);
    } else if (op >= DW_OP_breg0 && op < DW_OP_breg0 + 32 || op == DW_OP_bregx) {
      const r: u64 = op == DW_OP_bregx ? c.uleb() : <u64>(op - DW_OP_breg0);
      const off = c.sleb();
      if (!c.ok) return errExpr(EXPR_TRUNCATED, at, 0, 0);
      if (r >= <u64>NREGS || (valid & (1 << <u32>r)) == 0) {
        return errExprRegister(r);
      }
      v = load<u64>(regs + <usize>r * 8) + <u64>off;
    } else {
      switch (op) {
        case DW_OP_addr: case DW_OP_const8u: case DW_OP_const8s: v = c.u64(); break;
        case DW_OP_const1u: v = <u64>c.u8(); break;
        case DW_OP_const1s: v = <u64><i64><i8>c.u8(); break;
        case DW_OP_const2u: v = c.u16(); break;
        case DW_OP_const2s: v = <u64><i64><i16>c.u16(); break;
        case DW_OP_const4u: v = c.u32(); break;
        case DW_OP_const4s: v = <u64><i64><i32>c.u32(); break;
        case DW_OP_constu: v = c.uleb(); break;
        case DW_OP_consts: v = <u64>c.sleb(); break;
        case DW_OP_nop: pushes = false; break;
        case DW_OP_skip: case DW_OP_bra: {
          const d = <i64><i16>c.u16();
          if (!c.ok) return errExpr(EXPR_TRUNCATED, at, 0, 0);
          let take = true;
          if (op == DW_OP_bra) {
            if (sp < 1) return errExpr(EXPR_UNDERFLOW, at, 0, 0);
            sp--;
            take = load<u64>(stack + <usize>sp * 8) != 0;
          }
          if (take) {
            const target = <i64>c.pos + d;
            if (target < 0 || <u64>target > c.end) return errExpr(EXPR_BRANCH, at, 0, 0);
            c.pos = <u64>target;
          }
          pushes = false;
          break;
        }
        case DW_OP_dup: need = 1; break;
        case DW_OP_drop: need = 1; break;
        case DW_OP_over: need = 2; break;
        case DW_OP_pick: need = 0; break;
        case DW_OP_swap: need = 2; break;
        case DW_OP_rot: need = 3; break;
        case DW_OP_deref: case DW_OP_deref_size: case DW_OP_abs: case DW_OP_neg: case DW_OP_not:
        case DW_OP_plus_uconst: need = 1; break;
        case DW_OP_and: case DW_OP_div: case DW_OP_minus: case DW_OP_mod: case DW_OP_mul: case DW_OP_or:
        case DW_OP_plus: case DW_OP_shl: case DW_OP_shr: case DW_OP_shra: case DW_OP_xor: case DW_OP_eq:
        case DW_OP_ge: case DW_OP_gt: case DW_OP_le: case DW_OP_lt: case DW_OP_ne: need = 2; break;
        default: return errExpr(EXPR_UNSUPPORTED, at, <u64>op, 0);
      }
      if (!c.ok) return errExpr(EXPR_TRUNCATED, at, 0, 0);
      if (sp < need) return errExpr(EXPR_UNDERFLOW, at, 0, 0);
      if (need > 0) {
        const top = load<u64>(stack + <usize>(sp - 1) * 8);
        switch (op) {
          case DW_OP_dup: v = top; break;
          case DW_OP_drop: sp--; pushes = false; break;
          case DW_OP_over: v = load<u64>(stack + <usize>(sp - 2) * 8); break;
          case DW_OP_swap: {
            store<u64>(stack + <usize>(sp - 1) * 8, load<u64>(stack + <usize>(sp - 2) * 8));
            store<u64>(stack + <usize>(sp - 2) * 8, top);
            pushes = false;
            break;
          }
          case DW_OP_rot: {
            // (a b c -- c a b): the top moves to third place
            const b = load<u64>(stack + <usize>(sp - 2) * 8);
            const a = load<u64>(stack + <usize>(sp - 3) * 8);
            store<u64>(stack + <usize>(sp - 3) * 8, top);
            store<u64>(stack + <usize>(sp - 2) * 8, a);
            store<u64>(stack + <usize>(sp - 1) * 8, b);
            pushes = false;
            break;
          }
          case DW_OP_deref: case DW_OP_deref_size: {
            let size: u32 = 8;
            if (op == DW_OP_deref_size) {
              size = c.u8();
              if (!c.ok) return errExpr(EXPR_TRUNCATED, at, 0, 0);
              if (size < 1 || size > 8) return errExpr(EXPR_DEREF_SIZE, at, <u64>size, 0);
            }
            const m = readMem(top, size);
            if (memFault != MEM_OK) {
              exprMemFault = true;
              return errExprMemory(top);
            }
            sp--; v = m;
            break;
          }
          case DW_OP_abs: sp--; v = <i64>top < 0 ? <u64>(-<i64>top) : top; break;
          case DW_OP_neg: sp--; v = <u64>(-<i64>top); break;
          case DW_OP_not: sp--; v = ~top; break;
          case DW_OP_plus_uconst: {
            const k = c.uleb();
            if (!c.ok) return errExpr(EXPR_TRUNCATED, at, 0, 0);
            sp--; v = top + k;
            break;
          }
          default: {
            // binary: second = below top, v = second OP top
            const s = load<u64>(stack + <usize>(sp - 2) * 8);
            sp -= 2;
            switch (op) {
              case DW_OP_and: v = s & top; break;
              case DW_OP_or: v = s | top; break;
              case DW_OP_xor: v = s ^ top; break;
              case DW_OP_plus: v = s + top; break;
              case DW_OP_minus: v = s - top; break;
              case DW_OP_mul: v = s * top; break;
              case DW_OP_div: {
                if (top == 0) return errExpr(EXPR_DIV_ZERO, at, 0, 0);
                if (<i64>top == -1) v = <u64>(-<i64>s); // avoids the i64 overflow trap
                else v = <u64>(<i64>s / <i64>top);
                break;
              }
              case DW_OP_mod: {
                if (top == 0) return errExpr(EXPR_DIV_ZERO, at, 0, 0);
                v = s % top;
                break;
              }
              case DW_OP_shl: v = top >= 64 ? 0 : s << top; break;
              case DW_OP_shr: v = top >= 64 ? 0 : s >> top; break;
              case DW_OP_shra: v = top >= 64 ? (<i64>s < 0 ? <u64>-1 : 0) : <u64>(<i64>s >> <i64>top); break;
              case DW_OP_eq: v = s == top ? 1 : 0; break;
              case DW_OP_ne: v = s != top ? 1 : 0; break;
              case DW_OP_lt: v = <i64>s < <i64>top ? 1 : 0; break;
              case DW_OP_le: v = <i64>s <= <i64>top ? 1 : 0; break;
              case DW_OP_gt: v = <i64>s > <i64>top ? 1 : 0; break;
              case DW_OP_ge: v = <i64>s >= <i64>top ? 1 : 0; break;
            }
          }
        }
      } else if (op == DW_OP_pick) {
        const k = <u32>c.u8();
        if (!c.ok) return errExpr(EXPR_TRUNCATED, at, 0, 0);
        if (k >= sp) return errExpr(EXPR_PICK, at, <u64>k, 0);
        v = load<u64>(stack + <usize>(sp - 1 - k) * 8);
      }
    }
    if (pushes) {
      if (sp >= EXPR_STACK) return errExpr(EXPR_OVERFLOW, at, 0, 0);
      store<u64>(stack + <usize>sp * 8, v);
      sp++;
    }
  }
  if (sp == 0) return errExpr(EXPR_EMPTY, c.pos, 0, 0);
  exprValue = load<u64>(stack + <usize>(sp - 1) * 8);
  return 0;
}
