// The precise unwinder: one step takes a frame's registers to its caller's, by the
// DWARF CFI row of the frame's pc (DWARF 5, 6.4; x86-64 psABI 3.7 "Stack Unwind
// Algorithm").
//
//   CFA            = the row's CFA rule (register + offset, or an expression)
//   caller's rsp   = CFA (x86-64: the CFA is rsp before the call)
//   caller's rip   = the return-address column's rule (c-8 for every gcc frame)
//   callee-saved   = their rules; registers without a rule keep their value
//
// Which pc selects the row: the pc itself for frame 0 and for a frame a signal
// interrupted (its pc is the next instruction to run), pc-1 for every other frame
// (its pc is a return address, which may already belong to the next function
// when the call was the last instruction, e.g. a call to a noreturn function).
// "Interrupted by a signal" is what the previous frame said: its FDE's CIE has
// the 'S' augmentation (glibc's __restore_rt has it; its FDE starts one byte
// before the trampoline so that pc-1 finds it), or its pc is a known sigreturn
// trampoline without CFI, unwound through the kernel's rt_sigframe (dwarf.ts).
//
// The unwinding ends cleanly where the return-address rule is DW_CFA_undefined
// (glibc marks _start and clone3 so). It fails, and says why, on a pc no FDE
// covers, a CFA that does not move up the stack, a register it needs but does
// not know, or memory outside what the host gave (mem.ts).
import { Registry, Fde, Module, lastFindError } from "./cfi";
import { errNoFde, errCfaRegister, errNoCfa, errRaNoRule, errRaUnknown, errCfaDown, errRuleMemory } from "./errors";
import { computeRow, ROW_SIZE, ruleAt } from "./row";
import { evalExpr, exprValue, exprMemFault } from "./expr";
import { readMem, memFault, MEM_OK, needAddr } from "./mem";
import {
  NREGS, REG_RSP, REG_RIP, CFA_REG_OFFSET, CFA_EXPRESSION, RULE_UNSET, RULE_UNDEFINED, RULE_SAME,
  RULE_OFFSET, RULE_VAL_OFFSET, RULE_REGISTER, RULE_EXPRESSION, RULE_VAL_EXPRESSION, SIGCONTEXT_OFF, USER_REGS_OFF,
} from "./dwarf";

export const ALL_VALID: u32 = (1 << NREGS) - 1;

// Frame registers: DWARF 0..16, u64 each, and which are known.
export const regs: usize = heap.alloc(<usize>NREGS * 8);
export let valid: u32 = 0;
const next: usize = heap.alloc(<usize>NREGS * 8);
const row: usize = heap.alloc(ROW_SIZE);
const fde = new Fde();

// Results of the last step.
export const STEP_OK: i32 = 0; //       regs now hold the caller's frame
export const STEP_OUTERMOST: i32 = -1; // the frame has no caller (return address undefined)
export let stepCfa: u64 = 0; //         CFA of the frame just unwound
export let stepSignal: bool = false; //  the frame was a signal trampoline: the caller's pc is exact
export let stepRaSlot: u64 = 0; //      where the return address was read (0: not from memory)
export let stepMemory: bool = false; //  the step failed on a memory read (mem.ts says which)

/** Copies the 17 registers (136 bytes). */
@inline function copyRegs(dst: usize, src: usize): void {
  if (ASC_FEATURE_SIMD) {
    for (let i: usize = 0; i < 128; i += 16) v128.store(dst + i, v128.load(src + i));
    store<u64>(dst + 128, load<u64>(src + 128));
  } else {
    for (let i: usize = 0; i < 136; i += 8) store<u64>(dst + i, load<u64>(src + i));
  }
}

@inline function memFailed(fde: u64, reg: i32, expr: bool): i32 {
  stepMemory = true;
  return errRuleMemory(fde, reg, needAddr, expr);
}

/**
 * Unwinds one frame: `exact` says whether regs' pc is exact (see above).
 * Returns STEP_OK, STEP_OUTERMOST, or an error code (> 0, recorded with fail() in errors.ts).
 */
export function step(reg: Registry, exact: bool): i32 {
  stepMemory = false;
  stepSignal = false;
  stepRaSlot = 0;
  const pc = load<u64>(regs + <usize>REG_RIP * 8);
  // A declared trampoline wins over CFI: pc-1 may fall in the preceding function's FDE.
  if (reg.trampCount > 0 && reg.isTrampoline(pc)) return sigreturnStep();
  const lookup = exact ? pc : pc - 1;
  const mp = reg.find(lookup, fde);
  if (mp == 0) {
    if (lastFindError != 0) return lastFindError;
    return errNoFde(pc, exact);
  }
  const m = changetype<Module>(mp);
  let r = computeRow(m, fde, lookup, row);
  if (r != 0) return r;

  // CFA
  let cfa: u64 = 0;
  const cfaType = load<u32>(row);
  if (cfaType == CFA_REG_OFFSET) {
    const cr = load<u32>(row, 4);
    if (cr >= NREGS || (valid & (1 << cr)) == 0) {
      return errCfaRegister(fde.pcBegin, cr, pc);
    }
    cfa = load<u64>(regs + <usize>cr * 8) + <u64>load<i64>(row, 8);
  } else if (cfaType == CFA_EXPRESSION) {
    r = evalExpr(<usize>load<u64>(row, 16), <u64>load<u32>(row, 24), regs, valid, false, 0);
    if (r != 0) { stepMemory = exprMemFault; return r; }
    cfa = exprValue;
  } else {
    return errNoCfa(fde.pcBegin, pc);
  }
  stepCfa = cfa;
  const ra = m.cie.raReg;
  const raType = load<u32>(ruleAt(row, ra));
  if (raType == RULE_UNDEFINED) return STEP_OUTERMOST;
  if (raType == RULE_UNSET || raType == RULE_SAME) {
    return errRaNoRule(fde.pcBegin, pc);
  }

  // Caller's registers: those without a rule keep their value (rsp: the CFA);
  // only the registers in the row's mask have work to do.
  copyRegs(next, regs);
  let nvalid: u32 = valid;
  if ((load<u32>(row, 28) & (1 << REG_RSP)) == 0) {
    store<u64>(next + <usize>REG_RSP * 8, cfa);
    nvalid |= 1 << REG_RSP;
  }
  let mask = load<u32>(row, 28);
  while (mask != 0) {
    const i = <u32>ctz(mask);
    mask &= mask - 1;
    const p = ruleAt(row, i);
    const t = load<u32>(p);
    let v: u64 = load<u64>(regs + <usize>i * 8);
    switch (t) {
      case RULE_SAME:
        if (i == REG_RSP) { v = cfa; nvalid |= 1 << i; }
        break;
      case RULE_UNDEFINED: nvalid &= ~(1 << i); break;
      case RULE_OFFSET: {
        const a = cfa + <u64>load<i64>(p, 8);
        v = readMem(a, 8);
        if (memFault != MEM_OK) return memFailed(fde.pcBegin, <i32>i, false);
        if (i == ra) stepRaSlot = a;
        nvalid |= 1 << i;
        break;
      }
      case RULE_VAL_OFFSET: v = cfa + <u64>load<i64>(p, 8); nvalid |= 1 << i; break;
      case RULE_REGISTER: {
        const src = load<u32>(p, 4);
        if (src >= NREGS || (valid & (1 << src)) == 0) nvalid &= ~(1 << i);
        else { v = load<u64>(regs + <usize>src * 8); nvalid |= 1 << i; }
        break;
      }
      case RULE_EXPRESSION: case RULE_VAL_EXPRESSION: {
        r = evalExpr(<usize>load<u64>(p, 8), load<u64>(p, 16), regs, valid, true, cfa);
        if (r != 0) { stepMemory = exprMemFault; return r; }
        v = exprValue;
        if (t == RULE_EXPRESSION) {
          if (i == ra) stepRaSlot = v;
          v = readMem(v, 8);
          if (memFault != MEM_OK) return memFailed(fde.pcBegin, <i32>i, true);
        }
        nvalid |= 1 << i;
        break;
      }
    }
    store<u64>(next + <usize>i * 8, v);
  }
  if (ra != REG_RIP) {
    store<u64>(next + <usize>REG_RIP * 8, load<u64>(next + <usize>ra * 8));
    if ((nvalid & (1 << ra)) != 0) nvalid |= 1 << REG_RIP; else nvalid &= ~(1 << REG_RIP);
  }
  if ((nvalid & (1 << REG_RIP)) == 0) return errRaUnknown(fde.pcBegin, pc);
  const signal = m.cie.signal;
  if (!signal) {
    // A call pushed the return address: the caller's stack pointer is above ours.
    const sp = load<u64>(regs + <usize>REG_RSP * 8);
    const nsp = load<u64>(next + <usize>REG_RSP * 8);
    if (nsp <= sp) {
      return errCfaDown(fde.pcBegin, pc, nsp, sp);
    }
  }
  copyRegs(regs, next);
  valid = nvalid;
  stepSignal = signal;
  return STEP_OK;
}

/** Starts an unwind at the registers of a ptrace user_regs_struct (dwarf.ts). */
export function startFrame(userRegs: usize): void {
  for (let i: u32 = 0; i < NREGS; i++) {
    store<u64>(regs + <usize>i * 8, load<u64>(userRegs + <usize>load<u32>(USER_REGS_OFF + <usize>i * 4)));
  }
  valid = ALL_VALID;
}

/** A sigreturn trampoline without CFI: the kernel's rt_sigframe is at rsp (see dwarf.ts). */
function sigreturnStep(): i32 {
  const sp = load<u64>(regs + <usize>REG_RSP * 8);
  for (let i: u32 = 0; i < NREGS; i++) {
    const v = readMem(sp + <u64>load<u32>(SIGCONTEXT_OFF + <usize>i * 4), 8);
    if (memFault != MEM_OK) return memFailed(load<u64>(regs + <usize>REG_RIP * 8), -1, false);
    store<u64>(next + <usize>i * 8, v);
  }
  stepCfa = load<u64>(next + <usize>REG_RSP * 8);
  stepRaSlot = sp + <u64>load<u32>(SIGCONTEXT_OFF + <usize>REG_RIP * 4);
  copyRegs(regs, next);
  valid = ALL_VALID;
  stepSignal = true;
  return STEP_OK;
}
