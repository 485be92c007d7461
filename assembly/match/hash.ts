// The name hash of the symbol index, and name comparison, a 64-bit word at a time.
//
// Symbol names are long (C++ mangled names in node average ~60 bytes), so the hash
// and the compare work on 8-byte words, not bytes. The hash is defined over
// (bytes, length) so that a name read from a string table (NUL-terminated, length
// found while hashing) and a name given by the host (pointer + length, no NUL) hash
// alike:
//
//   h = 0
//   for each full 8-byte little-endian word w:   h = (rotl(h, 5) ^ w) * K
//   if 1..7 bytes remain: w = those bytes, zero-extended;  h = (rotl(h, 5) ^ w) * K
//   h = (rotl(h, 5) ^ len) * K;  hash = low32(h) ^ high32(h)
//
// with K = 0x9E3779B97F4A7C15 (2^64 / golden ratio). The per-word step is rustc's
// FxHash; the final fold brings the high bits (which depend on every input bit) down
// into the low bits used to pick a bucket. bench/core/symbols.c has the same function.
//
// A word containing the terminating NUL is found with the classic zero-byte test
//   (w - 0x0101..01) & ~w & 0x8080..80
// whose lowest set bit marks the first zero byte exactly (false positives only occur
// above a real zero byte). Loads never go past the string table: the last 7 bytes of a
// table are read one at a time.

const K: u64 = 0x9e3779b97f4a7c15;
const ONES: u64 = 0x0101010101010101;
const HIGHS: u64 = 0x8080808080808080;
const DOTS: u64 = 0x2e2e2e2e2e2e2e2e; // '.' in every byte
const ATS: u64 = 0x4040404040404040; // '@' in every byte

@inline function mix(h: u64, w: u64): u64 {
  return (rotl<u64>(h, 5) ^ w) * K;
}

@inline function finish(h: u64, len: u64): u32 {
  const x = mix(h, len);
  return <u32>x ^ <u32>(x >> 32);
}

@inline function zeroBytes(w: u64): u64 {
  return (w - ONES) & ~w & HIGHS;
}

/** The 1..7 bytes at p as a zero-extended little-endian word, without reading past p+rem. */
@inline export function tailWord(p: usize, rem: usize): u64 {
  if (rem >= 4) {
    // Two overlapping u32 loads: the overlap holds the same bytes in both.
    return <u64>load<u32>(p) | (<u64>load<u32>(p + rem - 4) << (<u64>(rem - 4) << 3));
  }
  const mid = rem >> 1;
  return <u64>load<u8>(p) | (<u64>load<u8>(p + mid) << (<u64>mid << 3)) | (<u64>load<u8>(p + rem - 1) << (<u64>(rem - 1) << 3));
}

/** Hash of the `len` bytes at p (a name given with its length). */
@inline export function hashName(p: usize, len: usize): u32 {
  let h: u64 = 0;
  let i: usize = 0;
  while (i + 8 <= len) {
    h = mix(h, load<u64>(p + i));
    i += 8;
  }
  if (i < len) h = mix(h, tailWord(p + i, len - i));
  return finish(h, <u64>len);
}

/** Length of the string found by scanName(). */
export let scanLen: u32 = 0;
/** Whether the string scanned by scanName() may contain a '.' (false positives possible, no false negatives). */
export let scanDot: bool = false;
/** Whether the string scanned by scanName() may contain a '@' (false positives possible, no false negatives). */
export let scanAt: bool = false;

/**
 * Hash of the NUL-terminated string at p, which is known to end before `end` (the end
 * of its string table); its length is left in scanLen.
 */
@inline export function scanName(p: usize, end: usize): u32 {
  let h: u64 = 0;
  let q = p;
  let dots: u64 = 0;
  let ats: u64 = 0;
  while (q + 8 <= end) {
    const w = load<u64>(q);
    const z = zeroBytes(w);
    dots |= zeroBytes(w ^ DOTS);
    ats |= zeroBytes(w ^ ATS);
    if (z != 0) {
      const k = <usize>(ctz<u64>(z) >> 3); // bytes before the NUL
      if (k != 0) h = mix(h, w & ((<u64>1 << (<u64>k << 3)) - 1));
      const len = q - p + k;
      scanLen = <u32>len;
      scanDot = dots != 0;
      scanAt = ats != 0;
      return finish(h, <u64>len);
    }
    h = mix(h, w);
    q += 8;
  }
  // Fewer than 8 bytes left in the table: a byte at a time (the NUL is there).
  let w: u64 = 0;
  let k: usize = 0;
  while (q + k < end) {
    const c = load<u8>(q + k);
    if (c == 0) break;
    if (c == 0x2e) dots = 1;
    if (c == 0x40) ats = 1;
    w |= <u64>c << (<u64>k << 3);
    k++;
  }
  if (k != 0) h = mix(h, w);
  const len = q - p + k;
  scanLen = <u32>len;
  scanDot = dots != 0;
  scanAt = ats != 0;
  return finish(h, <u64>len);
}

/** Whether the `len` bytes at a and b are equal. */
@inline export function sameBytes(a: usize, b: usize, len: usize): bool {
  let i: usize = 0;
  while (i + 8 <= len) {
    if (load<u64>(a + i) != load<u64>(b + i)) return false;
    i += 8;
  }
  if (i < len) return tailWord(a + i, len - i) == tailWord(b + i, len - i);
  return true;
}
