// DWARF call-frame definitions used by the stack-scan analysis: constants only,
// the parsers live in cfi.ts, row.ts, expr.ts.
//
// Sources:
//   DWARF 5, section 6.4 "Call Frame Information", 7.24 (CFA opcodes), 2.5 and
//     7.7.1 (expression opcodes): https://dwarfstd.org/dwarf5std.html
//   LSB 5.0 core, "Exception Frames" (.eh_frame and .eh_frame_hdr, pointer
//     encodings DW_EH_PE_*, augmentation letters z L P R S):
//     https://refspecs.linuxfoundation.org/LSB_5.0.0/LSB-Core-generic/LSB-Core-generic/ehframechpt.html
//   System V x86-64 psABI, 3.6.2 "DWARF Register Number Mapping":
//     https://gitlab.com/x86-psABIs/x86-64-ABI
//
// x86-64 DWARF register numbers (psABI figure 3.36). Column 16 is the return
// address (the caller's rip); the CFA is, by the psABI, the value of rsp in the
// caller just before the call instruction, so the caller's rsp is the CFA.
//
//    0 rax   1 rdx   2 rcx   3 rbx   4 rsi   5 rdi   6 rbp   7 rsp
//    8 r8    9 r9   10 r10  11 r11  12 r12  13 r13  14 r14  15 r15
//   16 return address (rip)        17..32 xmm0-15, 33..40 st0-7, ... (not tracked)

export const NREGS: u32 = 17; // registers the unwinder tracks: 0..16
export const REG_RSP: u32 = 7;
export const REG_RBP: u32 = 6;
export const REG_RIP: u32 = 16;

// ptrace's struct user_regs_struct (<sys/user.h>), the register input of a thread:
// 27 u64 in this order. USER_REGS_OFF (a u32 table in static memory): the byte offset of DWARF register n.
//   r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs
//   eflags rsp ss fs_base gs_base ds es fs gs
export const USER_REGS_SIZE: u32 = 216;
// dwarf:                 rax rdx rcx rbx rsi  rdi  rbp rsp  r8 r9 r10 r11 r12 r13 r14 r15 rip
export const USER_REGS_OFF: usize = memory.data<u32>([80, 96, 88, 40, 104, 112, 32, 152, 72, 64, 56, 48, 24, 16, 8, 0, 128]);

// Linux x86-64 signal frame (arch/x86/include/uapi/asm/sigcontext.h, ucontext.h).
// When the handler returns into the sigreturn trampoline its `ret` has popped
// the frame's pretcode, so rsp points at the struct ucontext:
//
//   rsp+0    uc_flags         u64
//   rsp+8    uc_link          u64
//   rsp+16   uc_stack         stack_t (24 bytes)
//   rsp+40   uc_mcontext      struct sigcontext:
//              r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx rsp rip ...
//
// SIGCONTEXT_OFF (u32 table): the offset of DWARF register n from rsp (glibc's
// __restore_rt CFI uses the same offsets, sysdeps/unix/sysv/linux/x86_64/libc_sigaction.c).
// dwarf:                        rax  rdx  rcx  rbx  rsi  rdi  rbp  rsp r8  r9  r10 r11 r12 r13 r14 r15 rip
export const SIGCONTEXT_OFF: usize = memory.data<u32>([144, 136, 152, 128, 112, 104, 120, 160, 40, 48, 56, 64, 72, 80, 88, 96, 168]);
// mov $15, %rax; syscall: the kernel's rt_sigreturn trampoline (glibc's and musl's __restore_rt).
export const SIGRETURN_CODE: usize = memory.data<u8>([0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05]);

// Call frame instructions (DWARF 5, table 7.29). The high two bits select the
// three "primary" opcodes that carry an operand in the low six bits.
export const DW_CFA_advance_loc: u8 = 0x40; // | delta
export const DW_CFA_offset: u8 = 0x80; //      | reg, ULEB offset
export const DW_CFA_restore: u8 = 0xc0; //     | reg
export const DW_CFA_nop: u8 = 0x00;
export const DW_CFA_set_loc: u8 = 0x01;
export const DW_CFA_advance_loc1: u8 = 0x02;
export const DW_CFA_advance_loc2: u8 = 0x03;
export const DW_CFA_advance_loc4: u8 = 0x04;
export const DW_CFA_offset_extended: u8 = 0x05;
export const DW_CFA_restore_extended: u8 = 0x06;
export const DW_CFA_undefined: u8 = 0x07;
export const DW_CFA_same_value: u8 = 0x08;
export const DW_CFA_register: u8 = 0x09;
export const DW_CFA_remember_state: u8 = 0x0a;
export const DW_CFA_restore_state: u8 = 0x0b;
export const DW_CFA_def_cfa: u8 = 0x0c;
export const DW_CFA_def_cfa_register: u8 = 0x0d;
export const DW_CFA_def_cfa_offset: u8 = 0x0e;
export const DW_CFA_def_cfa_expression: u8 = 0x0f;
export const DW_CFA_expression: u8 = 0x10;
export const DW_CFA_offset_extended_sf: u8 = 0x11;
export const DW_CFA_def_cfa_sf: u8 = 0x12;
export const DW_CFA_def_cfa_offset_sf: u8 = 0x13;
export const DW_CFA_val_offset: u8 = 0x14;
export const DW_CFA_val_offset_sf: u8 = 0x15;
export const DW_CFA_val_expression: u8 = 0x16;
export const DW_CFA_GNU_args_size: u8 = 0x2e;
export const DW_CFA_GNU_negative_offset_extended: u8 = 0x2f;

// .eh_frame pointer encodings (LSB): low nibble = format, bits 4-6 = application,
// bit 7 = indirect; 0xff = omitted.
export const DW_EH_PE_absptr: u8 = 0x00;
export const DW_EH_PE_uleb128: u8 = 0x01;
export const DW_EH_PE_udata2: u8 = 0x02;
export const DW_EH_PE_udata4: u8 = 0x03;
export const DW_EH_PE_udata8: u8 = 0x04;
export const DW_EH_PE_sleb128: u8 = 0x09;
export const DW_EH_PE_sdata2: u8 = 0x0a;
export const DW_EH_PE_sdata4: u8 = 0x0b;
export const DW_EH_PE_sdata8: u8 = 0x0c;
export const DW_EH_PE_pcrel: u8 = 0x10;
export const DW_EH_PE_textrel: u8 = 0x20;
export const DW_EH_PE_datarel: u8 = 0x30;
export const DW_EH_PE_funcrel: u8 = 0x40;
export const DW_EH_PE_aligned: u8 = 0x50;
export const DW_EH_PE_indirect: u8 = 0x80;
export const DW_EH_PE_omit: u8 = 0xff;

// Register rules of a row (DWARF 5, 6.4.1). UNSET: no rule was given; for the
// unwinder that means "same value" (gcc's and gdb's convention for x86-64).
export const RULE_UNSET: u32 = 0;
export const RULE_UNDEFINED: u32 = 1;
export const RULE_SAME: u32 = 2;
export const RULE_OFFSET: u32 = 3; //      saved at CFA + N
export const RULE_VAL_OFFSET: u32 = 4; //  value is CFA + N
export const RULE_REGISTER: u32 = 5; //    value is in register R
export const RULE_EXPRESSION: u32 = 6; //  saved at the address the expression computes
export const RULE_VAL_EXPRESSION: u32 = 7; // value is what the expression computes

export const CFA_UNSET: u32 = 0;
export const CFA_REG_OFFSET: u32 = 1;
export const CFA_EXPRESSION: u32 = 2;

// DWARF expression opcodes (DWARF 5, table 7.9): what gcc, glibc and the
// kernel's vDSO emit in CFI, and the stack machine around them.
export const DW_OP_addr: u8 = 0x03;
export const DW_OP_deref: u8 = 0x06;
export const DW_OP_const1u: u8 = 0x08;
export const DW_OP_const1s: u8 = 0x09;
export const DW_OP_const2u: u8 = 0x0a;
export const DW_OP_const2s: u8 = 0x0b;
export const DW_OP_const4u: u8 = 0x0c;
export const DW_OP_const4s: u8 = 0x0d;
export const DW_OP_const8u: u8 = 0x0e;
export const DW_OP_const8s: u8 = 0x0f;
export const DW_OP_constu: u8 = 0x10;
export const DW_OP_consts: u8 = 0x11;
export const DW_OP_dup: u8 = 0x12;
export const DW_OP_drop: u8 = 0x13;
export const DW_OP_over: u8 = 0x14;
export const DW_OP_pick: u8 = 0x15;
export const DW_OP_swap: u8 = 0x16;
export const DW_OP_rot: u8 = 0x17;
export const DW_OP_abs: u8 = 0x19;
export const DW_OP_and: u8 = 0x1a;
export const DW_OP_div: u8 = 0x1b;
export const DW_OP_minus: u8 = 0x1c;
export const DW_OP_mod: u8 = 0x1d;
export const DW_OP_mul: u8 = 0x1e;
export const DW_OP_neg: u8 = 0x1f;
export const DW_OP_not: u8 = 0x20;
export const DW_OP_or: u8 = 0x21;
export const DW_OP_plus: u8 = 0x22;
export const DW_OP_plus_uconst: u8 = 0x23;
export const DW_OP_shl: u8 = 0x24;
export const DW_OP_shr: u8 = 0x25;
export const DW_OP_shra: u8 = 0x26;
export const DW_OP_xor: u8 = 0x27;
export const DW_OP_bra: u8 = 0x28;
export const DW_OP_eq: u8 = 0x29;
export const DW_OP_ge: u8 = 0x2a;
export const DW_OP_gt: u8 = 0x2b;
export const DW_OP_le: u8 = 0x2c;
export const DW_OP_lt: u8 = 0x2d;
export const DW_OP_ne: u8 = 0x2e;
export const DW_OP_skip: u8 = 0x2f;
export const DW_OP_lit0: u8 = 0x30; // ..lit31 = 0x4f
export const DW_OP_reg0: u8 = 0x50; // ..reg31 = 0x6f
export const DW_OP_breg0: u8 = 0x70; // ..breg31 = 0x8f
export const DW_OP_regx: u8 = 0x90;
export const DW_OP_bregx: u8 = 0x92;
export const DW_OP_deref_size: u8 = 0x94;
export const DW_OP_nop: u8 = 0x96;
