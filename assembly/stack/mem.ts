// The target memory the unwinder may read: a thread's stack segments.
//
// The host copies a bounded window of each stack (the pause must not copy
// megabytes) and says which mapping it lies in. A segment record, 40 bytes:
//
//   0  u64 window pointer (core memory)   8  u64 window length
//   16 u64 window address (in the target) 24 u64 mapping start   32 u64 mapping end
//
//            map_lo            window_addr        window_addr+len        map_hi
//   target:    |.....(not copied)...|=====copied=====|.....(not copied).....|
//
// A read inside a segment's window succeeds. A read inside its mapping but
// outside the window is NEED_MORE (the host can copy more and try again), a
// read in no segment is OUTSIDE (another mapping: a sigaltstack, or garbage).
// Either way `needAddr` is the address that was wanted.

export const SEG_SIZE: usize = 40;
export const MAX_SEGS: u32 = 16;

export const MEM_OK: i32 = 0;
export const MEM_NEED_MORE: i32 = 1;
export const MEM_OUTSIDE: i32 = 2;

export let segs: usize = 0;
export let nsegs: u32 = 0;
export let memFault: i32 = MEM_OK;
export let needAddr: u64 = 0;

export function setSegments(p: usize, n: u32): void {
  segs = p;
  nsegs = n;
  memFault = MEM_OK;
  needAddr = 0;
}

/** Reads `size` (1..8) bytes at target address addr, zero-extended; on a fault sets memFault and returns 0. */
export function readMem(addr: u64, size: u32): u64 {
  const n = <u64>size;
  for (let i: u32 = 0; i < nsegs; i++) {
    const s = segs + <usize>i * SEG_SIZE;
    const lo = load<u64>(s, 24);
    const hi = load<u64>(s, 32);
    if (addr < lo || hi < n || addr > hi - n) continue;
    const wa = load<u64>(s, 16);
    const wl = load<u64>(s, 8);
    if (addr >= wa && wl >= n && addr - wa <= wl - n) {
      const p = <usize>load<u64>(s) + <usize>(addr - wa);
      switch (size) {
        case 8: return load<u64>(p);
        case 4: return <u64>load<u32>(p);
        case 2: return <u64>load<u16>(p);
        case 1: return <u64>load<u8>(p);
        default: {
          let v: u64 = 0;
          for (let k: u32 = 0; k < size; k++) v |= <u64>load<u8>(p + k) << (<u64>k * 8);
          return v;
        }
      }
    }
    if (memFault == MEM_OK) { memFault = MEM_NEED_MORE; needAddr = addr; }
    return 0;
  }
  if (memFault == MEM_OK) { memFault = MEM_OUTSIDE; needAddr = addr; }
  return 0;
}
