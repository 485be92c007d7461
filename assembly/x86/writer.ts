// x86-64 code writer. Like frida-gum's GumX86Writer it keeps apart where bytes are
// written (`cursor`, in core memory) and the pc they will run at (`pc`, in the
// target), since the code is built for another process. Emitters are named after
// what they encode and return false, writing nothing, when the encoding cannot
// reach or the buffer is full.
//
// Facts (Intel SDM vol. 2, JMP/CALL):
//   jmp rel32          E9 rel32                  5 bytes, reach: next pc +- 2 GiB
//   jmp [rip+0]        FF 25 00000000 + imm64   14 bytes, any address
// rel32 is relative to the address of the next instruction.

export const JMP_REL32_SIZE: u32 = 5;
export const JMP_ABS_SIZE: u32 = 14;

// Jump stub of the relocation engine: where a rel32 call or jump cannot reach its
// target, the branch goes to a stub, which reaches any address.
//   ff 25 00 00 00 00     jmp qword ptr [rip+0]
//   <8-byte address>      (the qword the jmp reads)
//   cc cc                 int3; int3 (pads the stub to 16 bytes)
export const JUMP_STUB_SIZE: u32 = 16;

/** Whether `dest` is reachable by a rel32 displacement from an instruction ending at `next`. */
@inline
export function fitsRel32(next: u64, dest: u64): bool {
  const d = <i64>(dest - next);
  return d >= -2147483648 && d <= 2147483647;
}

@final
export class X86Writer {
  /** Bytes written so far. */
  size: u32 = 0;

  /**
   * @param buf   where bytes go, in core memory
   * @param cap   capacity of buf
   * @param pc    the address in the target where buf[0] will run
   */
  constructor(public buf: usize, public cap: u32, public pc: u64) {}

  /** The target pc of the next byte to be written. */
  @inline get here(): u64 {
    return this.pc + <u64>this.size;
  }

  @inline private room(n: u32): bool {
    return this.size <= this.cap && n <= this.cap - this.size;
  }

  putU8(v: u8): bool {
    if (!this.room(1)) return false;
    store<u8>(this.buf + this.size, v);
    this.size += 1;
    return true;
  }

  putU32(v: u32): bool {
    if (!this.room(4)) return false;
    store<u32>(this.buf + this.size, v);
    this.size += 4;
    return true;
  }

  putU64(v: u64): bool {
    if (!this.room(8)) return false;
    store<u64>(this.buf + this.size, v);
    this.size += 8;
    return true;
  }

  /** jmp rel32 (E9 cd). False when dest is beyond +-2 GiB or there is no room. */
  putJmpRel32(dest: u64): bool {
    const next = this.here + JMP_REL32_SIZE;
    if (!fitsRel32(next, dest) || !this.room(JMP_REL32_SIZE)) return false;
    store<u8>(this.buf + this.size, 0xe9);
    store<i32>(this.buf + this.size + 1, <i32>(<i64>(dest - next)));
    this.size += JMP_REL32_SIZE;
    return true;
  }

  /** jmp qword [rip+0] (FF 25 00 00 00 00) followed by the 8-byte absolute address. */
  putJmpAbs(dest: u64): bool {
    if (!this.room(JMP_ABS_SIZE)) return false;
    const p = this.buf + this.size;
    store<u8>(p, 0xff);
    store<u8>(p + 1, 0x25);
    store<u32>(p + 2, 0);
    store<u64>(p + 6, dest);
    this.size += JMP_ABS_SIZE;
    return true;
  }

  /** The shortest jump that reaches dest: rel32 when it reaches, else the 14-byte absolute form. */
  putJmp(dest: u64): bool {
    return this.putJmpRel32(dest) || this.putJmpAbs(dest);
  }

  /** A 16-byte jump stub to dest (jmp [rip+0], the address, int3 padding). */
  putJumpStub(dest: u64): bool {
    if (!this.room(JUMP_STUB_SIZE)) return false;
    this.putJmpAbs(dest);
    store<u16>(this.buf + this.size, 0xcccc);
    this.size += JUMP_STUB_SIZE - JMP_ABS_SIZE;
    return true;
  }
}
