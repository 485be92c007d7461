// Instruction boundaries of a function, from the x86 length decoder (assembly/x86),
// decoded linearly from the function's first byte. gcc puts no data in x86-64 code
// sections (jump tables go to .rodata), so under -ffunction-sections a linear sweep of
// a function finds every instruction; when it cannot (hand-written code with data in
// it), the callers fall back to reading backwards (tail.ts) or to "changed".
import { decodeOne, insnOpcode, insnModrm, insnFlags, Flag } from "../x86/decode";

/** The instruction starts of one code range, cached for the last range asked for. */
export class Insns {
  base: usize = 0; // first byte of the range
  size: u64 = 0;
  ok: bool = false; // the whole range decoded
  starts: StaticArray<u32> = new StaticArray<u32>(64);
  n: u32 = 0;

  /** Decodes [base, base+size) unless it is the range decoded last. */
  decode(base: usize, size: u64): bool {
    if (base == this.base && size == this.size && this.n > 0) return this.ok;
    this.base = base;
    this.size = size;
    this.n = 0;
    this.ok = false;
    const end = base + <usize>size;
    let off: u64 = 0;
    while (off < size) {
      const len = decodeOne(base + <usize>off, end, off);
      if (len == 0) return false;
      if (<i32>this.n >= this.starts.length) {
        const grown = new StaticArray<u32>(this.starts.length * 2);
        memory.copy(changetype<usize>(grown), changetype<usize>(this.starts), <usize>this.n * 4);
        this.starts = grown;
      }
      unchecked(this.starts[this.n++] = <u32>off);
      off += len;
    }
    this.ok = true;
    return true;
  }

  /** Index of the instruction holding offset `off` (decode() succeeded), or -1. */
  at(off: u64): i32 {
    if (!this.ok || off >= this.size) return -1;
    let lo: u32 = 0;
    let hi = this.n;
    while (hi - lo > 1) {
      const mid = lo + ((hi - lo) >> 1);
      if (<u64>unchecked(this.starts[mid]) <= off) lo = mid;
      else hi = mid;
    }
    return <i32>lo;
  }

  @inline start(i: i32): u64 { return <u64>unchecked(this.starts[i]); }
  @inline end(i: i32): u64 { return <u32>i + 1 < this.n ? <u64>unchecked(this.starts[i + 1]) : this.size; }
}

/**
 * Width of the immediate of instruction i when it is one of the forms that load a
 * constant argument — `mov $imm32, %r32` (b8+r), `movabs $imm64, %r64` (REX.W b8+r),
 * `mov $imm32, r/m` (c7 /0), `push $imm32` (68), `push $imm8` (6a) — whose immediate is
 * the instruction's last bytes; else 0. Decodes the instruction again for its opcode.
 */
export function constantLoadImm(ins: Insns, i: i32): u32 {
  const s = ins.start(i);
  const e = ins.end(i);
  if (decodeOne(ins.base + <usize>s, ins.base + <usize>e, s) == 0) return 0;
  if ((insnFlags & (Flag.OPSIZE | Flag.VEX)) != 0) return 0;
  if ((insnOpcode >> 8) != 0) return 0; // one-byte map only
  const op = insnOpcode & 0xff;
  if (op >= 0xb8 && op <= 0xbf) return (insnFlags & Flag.REX_W) != 0 ? 8 : 4;
  if (op == 0xc7 && ((insnModrm >> 3) & 7) == 0) return 4;
  if (op == 0x68) return 4;
  if (op == 0x6a) return 1;
  return 0;
}
