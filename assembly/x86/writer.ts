// x86-64 code writer. Like frida-gum's GumX86Writer it keeps apart where bytes are
// written (`buf`, in core memory) and the pc they will run at (`pc`, in the target),
// since the code is built for another process. Emitters are named after what they
// encode and return false, writing nothing, when the encoding cannot reach or the
// buffer is full; `failure` then says which (X86_OUT_OF_RANGE or X86_NO_ROOM).
//
// Facts (Intel SDM vol. 2: JMP, CALL, NOP, ENDBR64). rel8/rel32 and RIP-relative
// disp32 count from the address of the next instruction; they reach next +- 127 and
// next +- 2 GiB (-2^31 .. 2^31-1).
//
//   eb rel8                          jmp rel8                2 bytes
//   e9 rel32                         jmp rel32               5 bytes
//   ff 25 00 00 00 00 <imm64>        jmp *0(%rip); .quad     14 bytes, any address
//   ff 25 disp32                     jmp *slot(%rip)          6 bytes: through a GOT slot
//   e8 rel32                         call rel32              5 bytes
//   ff 15 disp32                     call *slot(%rip)         6 bytes: through a GOT slot
//   ff 15 02 00 00 00                call *2(%rip)           16 bytes, any address: calls
//   eb 08                            jmp .+10                   the qword after the jmp,
//   <imm64>                          .quad dest                 returns onto the jmp
//   f3 0f 1e fa                      endbr64                  4 bytes (CET landing pad)
//
// Stubs, 16 bytes each (so tables of them stay aligned):
//
//   jump stub (relocation engine)          PLT stub (like ld's .plt.sec, no bnd)
//   ff 25 00 00 00 00  jmp *0(%rip)        f3 0f 1e fa        endbr64
//   <imm64>            .quad dest          ff 25 disp32       jmp *slot(%rip)
//   cc cc              int3; int3          66 0f 1f 44 00 00  nopw 0(%rax,%rax,1)
//
// Multi-byte NOPs are the SDM's recommended sequences (vol. 2B, NOP), longest first.
import { Err } from "../error";

export const JMP_REL8_SIZE: u32 = 2;
export const JMP_REL32_SIZE: u32 = 5;
export const JMP_ABS_SIZE: u32 = 14;
export const JMP_RIP_SIZE: u32 = 6;
export const CALL_REL32_SIZE: u32 = 5;
export const CALL_RIP_SIZE: u32 = 6;
export const CALL_ABS_SIZE: u32 = 16;
export const ENDBR64_SIZE: u32 = 4;
/** Jump stub of the relocation engine: where a rel32 call or jump cannot reach its target. */
export const JUMP_STUB_SIZE: u32 = 16;
export const PLT_STUB_SIZE: u32 = 16;

/** Whether `dest` is reachable by a rel32 displacement from an instruction ending at `next`. */
@inline
export function fitsRel32(next: u64, dest: u64): bool {
  const d = <i64>(dest - next);
  return d >= -2147483648 && d <= 2147483647;
}

@inline
export function fitsRel8(next: u64, dest: u64): bool {
  const d = <i64>(dest - next);
  return d >= -128 && d <= 127;
}

/** Size of the shortest jump from `at` to `dest`: 2 (rel8), 5 (rel32) or 14 (absolute). */
export function jmpSize(at: u64, dest: u64): u32 {
  if (fitsRel8(at + JMP_REL8_SIZE, dest)) return JMP_REL8_SIZE;
  if (fitsRel32(at + JMP_REL32_SIZE, dest)) return JMP_REL32_SIZE;
  return JMP_ABS_SIZE;
}

// SDM recommended NOPs of 1..9 bytes, 9 bytes per row (unused tail zero).
const NOPS: StaticArray<u8> = [
  0x90, 0, 0, 0, 0, 0, 0, 0, 0, //                              nop
  0x66, 0x90, 0, 0, 0, 0, 0, 0, 0, //                           xchg %ax,%ax
  0x0f, 0x1f, 0x00, 0, 0, 0, 0, 0, 0, //                        nopl (%rax)
  0x0f, 0x1f, 0x40, 0x00, 0, 0, 0, 0, 0, //                     nopl 0x0(%rax)
  0x0f, 0x1f, 0x44, 0x00, 0x00, 0, 0, 0, 0, //                  nopl 0x0(%rax,%rax,1)
  0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0, 0, 0, //               nopw 0x0(%rax,%rax,1)
  0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00, 0, 0, //            nopl 0x0(%rax)
  0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0, //         nopl 0x0(%rax,%rax,1)
  0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, //      nopw 0x0(%rax,%rax,1)
];

@final
export class X86Writer {
  /** Bytes written so far. */
  size: u32 = 0;
  /** Why the last emitter returned false: Err.X86_NO_ROOM or Err.X86_OUT_OF_RANGE (0 after a success). */
  failure: i32 = 0;

  /**
   * @param buf   where bytes go, in core memory
   * @param cap   capacity of buf
   * @param pc    the address in the target where buf[0] will run
   */
  constructor(public buf: usize, public cap: u32, public pc: u64) {}

  /** Starts over on another buffer (the writer is reused, not reallocated). */
  reset(buf: usize, cap: u32, pc: u64): void {
    this.buf = buf;
    this.cap = cap;
    this.pc = pc;
    this.size = 0;
    this.failure = 0;
  }

  /** The target pc of the next byte to be written. */
  @inline get here(): u64 {
    return this.pc + <u64>this.size;
  }

  @inline private room(n: u32): bool {
    if (this.size <= this.cap && n <= this.cap - this.size) {
      this.failure = 0;
      return true;
    }
    this.failure = Err.X86_NO_ROOM;
    return false;
  }

  @inline private outOfRange(): bool {
    this.failure = Err.X86_OUT_OF_RANGE;
    return false;
  }

  @inline private at(): usize {
    return this.buf + this.size;
  }

  putU8(v: u8): bool {
    if (!this.room(1)) return false;
    store<u8>(this.at(), v);
    this.size += 1;
    return true;
  }

  putU32(v: u32): bool {
    if (!this.room(4)) return false;
    store<u32>(this.at(), v);
    this.size += 4;
    return true;
  }

  putU64(v: u64): bool {
    if (!this.room(8)) return false;
    store<u64>(this.at(), v);
    this.size += 8;
    return true;
  }

  /** jmp rel8 (EB cb). */
  putJmpRel8(dest: u64): bool {
    const next = this.here + JMP_REL8_SIZE;
    if (!fitsRel8(next, dest)) return this.outOfRange();
    if (!this.room(JMP_REL8_SIZE)) return false;
    store<u8>(this.at(), 0xeb);
    store<i8>(this.at() + 1, <i8>(<i64>(dest - next)));
    this.size += JMP_REL8_SIZE;
    return true;
  }

  /** jmp rel32 (E9 cd). */
  putJmpRel32(dest: u64): bool {
    const next = this.here + JMP_REL32_SIZE;
    if (!fitsRel32(next, dest)) return this.outOfRange();
    if (!this.room(JMP_REL32_SIZE)) return false;
    store<u8>(this.at(), 0xe9);
    store<i32>(this.at() + 1, <i32>(<i64>(dest - next)));
    this.size += JMP_REL32_SIZE;
    return true;
  }

  /** jmp qword [rip+0] (FF 25 00 00 00 00) followed by the 8-byte absolute address. */
  putJmpAbs(dest: u64): bool {
    if (!this.room(JMP_ABS_SIZE)) return false;
    const p = this.at();
    store<u8>(p, 0xff);
    store<u8>(p + 1, 0x25);
    store<u32>(p + 2, 0);
    store<u64>(p + 6, dest);
    this.size += JMP_ABS_SIZE;
    return true;
  }

  /** The shortest jump that reaches dest: rel8, rel32, else the 14-byte absolute form. */
  putJmp(dest: u64): bool {
    const n = jmpSize(this.here, dest);
    if (n == JMP_REL8_SIZE) return this.putJmpRel8(dest);
    if (n == JMP_REL32_SIZE) return this.putJmpRel32(dest);
    return this.putJmpAbs(dest);
  }

  /** jmp qword [rip+disp32] (FF 25 cd): through the 8-byte slot at `slot` (a GOT entry). */
  putJmpRip(slot: u64): bool {
    return this.putRip(0x25, slot);
  }

  /** call rel32 (E8 cd). */
  putCallRel32(dest: u64): bool {
    const next = this.here + CALL_REL32_SIZE;
    if (!fitsRel32(next, dest)) return this.outOfRange();
    if (!this.room(CALL_REL32_SIZE)) return false;
    store<u8>(this.at(), 0xe8);
    store<i32>(this.at() + 1, <i32>(<i64>(dest - next)));
    this.size += CALL_REL32_SIZE;
    return true;
  }

  /** call qword [rip+disp32] (FF 15 cd): through the 8-byte slot at `slot`. */
  putCallRip(slot: u64): bool {
    return this.putRip(0x15, slot);
  }

  /** call qword [rip+2]; jmp .+10; .quad dest: a call to any address, 16 bytes. */
  putCallAbs(dest: u64): bool {
    if (!this.room(CALL_ABS_SIZE)) return false;
    const p = this.at();
    store<u8>(p, 0xff);
    store<u8>(p + 1, 0x15);
    store<u32>(p + 2, 2);
    store<u8>(p + 6, 0xeb);
    store<u8>(p + 7, 0x08);
    store<u64>(p + 8, dest);
    this.size += CALL_ABS_SIZE;
    return true;
  }

  /** call rel32 when it reaches, else the 16-byte absolute call. */
  putCall(dest: u64): bool {
    if (fitsRel32(this.here + CALL_REL32_SIZE, dest)) return this.putCallRel32(dest);
    return this.putCallAbs(dest);
  }

  /** endbr64 (F3 0F 1E FA): where an indirect jmp/call may land under CET. */
  putEndbr64(): bool {
    if (!this.room(ENDBR64_SIZE)) return false;
    store<u32>(this.at(), 0xfa1e0ff3);
    this.size += ENDBR64_SIZE;
    return true;
  }

  /** `n` bytes of the SDM's multi-byte NOPs (9 bytes at most each). */
  putNops(n: u32): bool {
    if (!this.room(n)) return false;
    let left = n;
    while (left > 0) {
      const k = left > 9 ? 9 : left;
      memory.copy(this.at(), changetype<usize>(NOPS) + <usize>(k - 1) * 9, k);
      this.size += k;
      left -= k;
    }
    return true;
  }

  /** `n` int3 (CC) bytes. */
  putInt3(n: u32): bool {
    if (!this.room(n)) return false;
    memory.fill(this.at(), 0xcc, n);
    this.size += n;
    return true;
  }

  /** A 16-byte jump stub to dest (jmp [rip+0], the address, int3 padding). */
  putJumpStub(dest: u64): bool {
    if (!this.room(JUMP_STUB_SIZE)) return false;
    this.putJmpAbs(dest);
    store<u16>(this.at(), 0xcccc);
    this.size += JUMP_STUB_SIZE - JMP_ABS_SIZE;
    return true;
  }

  /** A 16-byte PLT stub: endbr64; jmp *slot(%rip); 6-byte nop. */
  putPltStub(slot: u64): bool {
    if (!this.room(PLT_STUB_SIZE)) return false;
    if (!fitsRel32(this.here + ENDBR64_SIZE + JMP_RIP_SIZE, slot)) return this.outOfRange();
    this.putEndbr64();
    this.putJmpRip(slot);
    this.putNops(PLT_STUB_SIZE - ENDBR64_SIZE - JMP_RIP_SIZE);
    return true;
  }

  private putRip(modrm: u8, slot: u64): bool {
    const next = this.here + 6;
    if (!fitsRel32(next, slot)) return this.outOfRange();
    if (!this.room(6)) return false;
    const p = this.at();
    store<u8>(p, 0xff);
    store<u8>(p + 1, modrm);
    store<i32>(p + 2, <i32>(<i64>(slot - next)));
    this.size += 6;
    return true;
  }
}
