// Where patch code may live: a free range of the target's address space that every
// rel32 in it can reach. A `jmp rel32`/`call rel32` or a RIP-relative operand reaches
// +-2 GiB from the end of its instruction, so a patch whose code refers to a module
// (its data, its PLT) or is jumped to from it must lie, as a whole, within 2 GiB of
// every byte of that module. Non-PIE code with R_X86_64_32/32S relocations must also
// lie below 2 GiB (sign-extended 32-bit absolute addresses).
//
// The mapping is then taken with MAP_FIXED_NOREPLACE, so a race with the target's
// own mmap fails cleanly instead of clobbering it.
import type { Mapping } from "./maps.js";

export const PAGE = 4096n;
const TWO_GIB = 1n << 31n;
/** Lowest address patchc will map at (vm.mmap_min_addr is 64 KiB; stay at or above it). */
const MIN_ADDR = 0x10000n;
/** End of the user address space with 4-level paging (47 bits). */
const USER_END = 1n << 47n;

export interface GapRequest {
  size: bigint; // bytes needed (rounded up to pages)
  reach: Array<{ start: bigint; end: bigint }>; // ranges every byte of the patch must reach with rel32
  below2G?: boolean; // the code needs an address below 2 GiB (R_X86_64_32/32S)
  guard?: bigint; // free bytes to keep between the patch and any neighbour (default: one page)
}

const alignUp = (v: bigint, a: bigint) => ((v + a - 1n) / a) * a;
const alignDown = (v: bigint, a: bigint) => (v / a) * a;
const max = (a: bigint, b: bigint) => (a > b ? a : b);
const min = (a: bigint, b: bigint) => (a < b ? a : b);

/**
 * The address of a free range for the request, as close as possible to the first range
 * it must reach, or undefined when there is none. `maps` must be in address order (as
 * /proc gives them).
 */
export function findGap(maps: Mapping[], req: GapRequest): bigint | undefined {
  const size = alignUp(req.size, PAGE);
  const guard = req.guard ?? PAGE;
  // The window of start addresses from which every byte of [start, start+size) reaches
  // every byte of every range: the farthest pairs are (patch start, range end) and
  // (patch end, range start).
  let lo = MIN_ADDR;
  let hi = USER_END - size;
  for (const r of req.reach) {
    lo = max(lo, r.end - TWO_GIB + 1n);
    hi = min(hi, r.start + TWO_GIB - 1n - size);
  }
  if (req.below2G) hi = min(hi, TWO_GIB - size);
  lo = alignUp(lo, PAGE);
  hi = alignDown(hi, PAGE);
  if (lo > hi) return undefined;
  const target = req.reach.length ? req.reach[0].start : lo;
  let best: bigint | undefined;
  let bestDist = 0n;
  // Each free hole (between mappings, keeping a guard on both sides), cut to the window:
  // its address nearest the target.
  let prevEnd = 0n;
  for (let i = 0; i <= maps.length; i++) {
    const first = alignUp(max(prevEnd === 0n ? MIN_ADDR : prevEnd + guard, lo), PAGE);
    const holeEnd = i < maps.length ? maps[i].start - guard : USER_END;
    const last = alignDown(min(holeEnd - size, hi), PAGE);
    if (holeEnd >= size && last >= first) {
      const a = target <= first ? first : target >= last ? last : alignDown(target, PAGE);
      const d = a > target ? a - target : target - a;
      if (best === undefined || d < bestDist) {
        best = a;
        bestDist = d;
      }
    }
    if (i < maps.length) prevEnd = max(prevEnd, maps[i].end);
  }
  return best;
}
