// Sorting of raw 16-byte records by a u64 key: an LSD radix sort, stable, O(n) per pass.
//
//   record (16 bytes):  0 key u64   8 value u64 (carried along)
//
// Only the bits in which keys differ are sorted: keys are taken relative to the
// smallest one and the number of 11-bit passes follows from the span (function
// addresses of a 100 MB executable span 27 bits: 3 passes). The histograms of all
// passes are counted in one read of the keys. Records with equal keys keep their input
// order. bench/core/symbols.c has the same algorithm.

const DIGIT_BITS: u32 = 11;
const RADIX: u32 = 1 << DIGIT_BITS;
const RADIX_MASK: u64 = <u64>RADIX - 1;

/** Copies a 16-byte record (one SIMD move when the build has SIMD). */
@inline export function copy16(dst: usize, src: usize): void {
  if (ASC_FEATURE_SIMD) {
    v128.store(dst, v128.load(src));
  } else {
    store<u64>(dst, load<u64>(src));
    store<u64>(dst, load<u64>(src, 8), 8);
  }
}

/** Room `counts` needs: one 2048-entry u32 histogram per 11-bit digit of a 64-bit key. */
export const RADIX_COUNTS_BYTES: usize = 6 * (2048 << 2);

/**
 * Sorts `n` records at `recs` by key, using `tmp` (room for n records) and `counts`
 * (RADIX_COUNTS_BYTES). The sorted records end up at `recs`.
 */
export function radixSort16(recs: usize, tmp: usize, counts: usize, n: u32): void {
  if (n < 2) return;
  if (n <= 32) {
    insertionSort16(recs, n);
    return;
  }
  let lo: u64 = load<u64>(recs);
  let hi: u64 = lo;
  for (let i: u32 = 1; i < n; i++) {
    const k = load<u64>(recs + (<usize>i << 4));
    if (k < lo) lo = k;
    if (k > hi) hi = k;
  }
  const span = hi - lo;
  if (span == 0) return;
  const bits: u32 = 64 - <u32>clz<u64>(span);
  const passes = (bits + DIGIT_BITS - 1) / DIGIT_BITS;
  // All the passes' histograms in one read of the keys (counts: passes x 2048 u32).
  memory.fill(counts, 0, <usize>passes * (<usize>RADIX << 2));
  for (let i: u32 = 0; i < n; i++) {
    const k = load<u64>(recs + (<usize>i << 4)) - lo;
    for (let p: u32 = 0; p < passes; p++) {
      const c = counts + (<usize>p << (DIGIT_BITS + 2)) + (<usize>((k >> (<u64>p * DIGIT_BITS)) & RADIX_MASK) << 2);
      store<u32>(c, load<u32>(c) + 1);
    }
  }
  let src = recs;
  let dst = tmp;
  for (let p: u32 = 0; p < passes; p++) {
    const cp = counts + (<usize>p << (DIGIT_BITS + 2));
    const shift = <u64>p * DIGIT_BITS;
    let sum: u32 = 0;
    for (let d: u32 = 0; d < RADIX; d++) {
      const c = cp + (<usize>d << 2);
      const v = load<u32>(c);
      store<u32>(c, sum);
      sum += v;
    }
    for (let i: u32 = 0; i < n; i++) {
      const s = src + (<usize>i << 4);
      const k = load<u64>(s);
      const c = cp + (<usize>(((k - lo) >> shift) & RADIX_MASK) << 2);
      const at = load<u32>(c);
      store<u32>(c, at + 1);
      copy16(dst + (<usize>at << 4), s);
    }
    const t = src;
    src = dst;
    dst = t;
  }
  if (src != recs) memory.copy(recs, src, <usize>n << 4);
}

function insertionSort16(recs: usize, n: u32): void {
  for (let i: u32 = 1; i < n; i++) {
    const k = load<u64>(recs + (<usize>i << 4));
    const v = load<u64>(recs + (<usize>i << 4), 8);
    let j = i;
    while (j > 0 && load<u64>(recs + (<usize>(j - 1) << 4)) > k) {
      const p = recs + (<usize>(j - 1) << 4);
      store<u64>(p, load<u64>(p), 16);
      store<u64>(p, load<u64>(p, 8), 24);
      j--;
    }
    const o = recs + (<usize>j << 4);
    store<u64>(o, k);
    store<u64>(o, v, 8);
  }
}
