// x86-64 general registers as ptrace(PTRACE_GETREGS) gives them: struct
// user_regs_struct of <sys/user.h>, 27 u64 in this order. fs_base/gs_base are the
// TLS bases; orig_rax is the syscall number while a thread is inside a syscall
// (-1 otherwise), which the kernel's syscall-restart logic reads.

export const REG_NAMES = [
  "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
  "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp",
  "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
] as const;

export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

/** Index of each register in the 27-entry array. */
export const REG = Object.fromEntries(REG_NAMES.map((n, i) => [n, i])) as Record<RegName, number>;

export const NREGS = REG_NAMES.length;

/** The registers of entry `i` of a packed array (i * 27 ...). */
export function regsAt(a: BigUint64Array, i = 0): Regs {
  const r = {} as Regs;
  for (let k = 0; k < NREGS; k++) r[REG_NAMES[k]] = a[i * NREGS + k];
  return r;
}

export function packRegs(r: Regs): BigUint64Array {
  const a = new BigUint64Array(NREGS);
  for (let k = 0; k < NREGS; k++) {
    const v = r[REG_NAMES[k]];
    if (typeof v !== "bigint") throw new TypeError(`register ${REG_NAMES[k]} must be a bigint`);
    a[k] = BigInt.asUintN(64, v);
  }
  return a;
}
