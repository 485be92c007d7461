// Bounds-checked little-endian reads from an input buffer in linear memory.
//
// A read past the input but inside linear memory does not trap in Wasm, so every
// read is checked against the input's length, never against memory. inRange() is
// the one check: it is overflow-safe for any 64-bit offset and size (an offset
// near 2^64 plus a size cannot wrap around to look valid).
//
// Callers check a whole record once with inRange() and then use the unchecked
// getters at fixed offsets inside it.

@final
export class Bytes {
  constructor(public base: usize, public length: u64) {}

  @inline inRange(offset: u64, size: u64): bool {
    return offset <= this.length && size <= this.length - offset;
  }

  @inline u8(offset: u64): u8 { return load<u8>(this.base + <usize>offset); }
  @inline u16(offset: u64): u16 { return load<u16>(this.base + <usize>offset); }
  @inline u32(offset: u64): u32 { return load<u32>(this.base + <usize>offset); }
  @inline i32(offset: u64): i32 { return load<i32>(this.base + <usize>offset); }
  @inline u64(offset: u64): u64 { return load<u64>(this.base + <usize>offset); }
  @inline i64(offset: u64): i64 { return load<i64>(this.base + <usize>offset); }
  @inline ptr(offset: u64): usize { return this.base + <usize>offset; }

  /** Length of the NUL-terminated string at offset, or -1 when no NUL is found before the end. */
  strlen(offset: u64): i64 {
    if (offset >= this.length) return -1;
    const start = this.base + <usize>offset;
    const end = this.base + <usize>this.length;
    let p = start;
    while (p < end) {
      if (load<u8>(p) == 0) return <i64>(p - start);
      p++;
    }
    return -1;
  }
}

/** Decodes the NUL-free byte range as a JS string (UTF-8), for messages and names. */
export function utf8(ptr: usize, len: usize): string {
  return String.UTF8.decodeUnsafe(ptr, len, false);
}

/** FNV-1a over a byte range: the name hash of the symbol index. */
@inline
export function fnv1a(ptr: usize, len: usize): u32 {
  let h: u32 = 2166136261;
  for (let i: usize = 0; i < len; i++) {
    h = (h ^ <u32>load<u8>(ptr + i)) * 16777619;
  }
  return h;
}

@inline
export function bytesEqual(a: usize, b: usize, len: usize): bool {
  return memory.compare(a, b, len) == 0;
}
