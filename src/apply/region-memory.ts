// The patch region in the target: remote syscalls through the shim's Tracer.
//
//   fd = memfd_create("patchc:<patch id>", MFD_CLOEXEC)     named: /proc/PID/maps shows
//   ftruncate(fd, size)                                      "/memfd:patchc:<id> (deleted)"
//   mmap(gap, size, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0)
//   close(fd)                                                the mapping keeps the file
//   write the bytes through /proc/PID/mem (writeText: read-only pages included)
//   mprotect(part, prot) per part                            r-x, r--, rw-: never w+x
//
// MAP_PRIVATE: a fork child gets its own copy, and writing the pages never reaches the
// file. MAP_FIXED_NOREPLACE (Linux 4.17, mmap(2)) fails with EEXIST instead of replacing
// what the target mapped meanwhile: another gap is tried. When the target may not create
// a memfd (seccomp, an old kernel, vm.memfd_noexec refusing execution), the region is a
// plain anonymous private mapping, found again by its header's magic. Every step is
// undone when a later one fails.
import { MAP, PROT, ShimError, type Tracer } from "../shim/index.js";
import type { PatchImage } from "./contract.js";
import { ApplyError, processSubject } from "./errors.js";
import { findGap, PAGE } from "./gap.js";
import type { Mapping } from "./maps.js";
import { MEMFD_PREFIX, readMaps } from "./status.js";

export interface RegionRequest {
  pid: number;
  /** the thread the remote syscalls run in */
  tid: number;
  patchId: string;
  size: bigint;
  reach: Array<{ start: bigint; end: bigint }>;
  below2G: boolean;
  maps: Mapping[];
  /** lays the patch out at the base found: the bytes to write and the parts' protections */
  layout(base: bigint): PatchImage;
  /** force the anonymous fallback (tests) */
  noMemfd?: boolean;
}

export interface MappedRegion {
  base: bigint;
  size: bigint;
  memfd: boolean;
  /** as /proc/PID/maps names it */
  name: string;
  image: PatchImage;
  /** why the memfd was not used, when it was not */
  fallback?: string;
}

const hex = (v: bigint) => "0x" + v.toString(16);
const MAX_TRIES = 8;

function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Maps, fills and protects the region; on failure nothing of it is left in the target. */
export async function mapRegion(t: Tracer, req: RegionRequest): Promise<MappedRegion> {
  const subject = processSubject(req.pid);
  const size = ((req.size + PAGE - 1n) / PAGE) * PAGE;
  let maps = req.maps;
  const taken: Mapping[] = [];
  let fallback: string | undefined = req.noMemfd ? "anonymous mapping requested" : undefined;
  for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
    const all = [...maps, ...taken].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const base = findGap(all, { size, reach: req.reach, below2G: req.below2G });
    if (base === undefined) {
      throw new ApplyError("NO_MEMORY", subject, `no free ${size}-byte range within reach (${req.reach.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(", ")}${req.below2G ? ", below 2 GiB" : ""})`);
    }
    let mapped: { memfd: boolean } | "eexist";
    if (fallback === undefined) {
      try {
        mapped = await mapMemfd(t, req, base, size);
      } catch (e) {
        if (e instanceof ApplyError) throw e;
        fallback = `memfd_create refused: ${why(e)}`;
        mapped = await mapAnon(t, req, base, size);
      }
    } else {
      mapped = await mapAnon(t, req, base, size);
    }
    if (mapped === "eexist") {
      // The target mapped something there meanwhile: look again.
      taken.push({ start: base, end: base + size, read: false, write: false, exec: false, shared: false, offset: 0n, dev: "", inode: 0, path: "", deleted: false });
      maps = readMaps(req.pid);
      continue;
    }
    const memfd = mapped.memfd;
    try {
      const image = req.layout(base);
      if (BigInt(image.bytes.length) !== size) throw new Error(`patchc bug: an image of ${image.bytes.length} bytes for a region of ${size}`);
      await t.writeText(base, image.bytes);
      for (const p of image.parts) {
        if (p.prot === PROT.READ) continue;
        if (p.prot & PROT.WRITE && p.prot & PROT.EXEC) throw new Error(`patchc bug: part at +${p.offset} is writable and executable`);
        await t.mprotect(req.tid, base + BigInt(p.offset), p.size, p.prot);
      }
      return { base, size, memfd, name: memfd ? `/memfd:${MEMFD_PREFIX}${req.patchId} (deleted)` : "(anonymous)", image, fallback };
    } catch (e) {
      await t.munmap(req.tid, base, size).catch(() => undefined);
      if (memfd && !(e instanceof ApplyError) && e instanceof ShimError && e.op === "mprotect" && fallback === undefined) {
        // vm.memfd_noexec and the like: the memfd may not be executable. Anonymous memory then.
        fallback = `the memfd mapping may not be made executable: ${why(e)}`;
        attempt--;
        continue;
      }
      throw mapError(e, subject, "filling the region");
    }
  }
  throw new ApplyError("NO_MEMORY", subject, `the target kept mapping over the gaps found (${MAX_TRIES} tries)`);
}

async function mapMemfd(t: Tracer, req: RegionRequest, base: bigint, size: bigint): Promise<{ memfd: boolean } | "eexist"> {
  const fd = await t.memfdCreate(req.tid, MEMFD_PREFIX + req.patchId);
  let ok = false;
  try {
    await t.ftruncate(req.tid, fd, size);
    const r = await mmapAt(t, req, base, size, MAP.PRIVATE | MAP.FIXED_NOREPLACE, fd);
    ok = r !== "eexist";
    return r === "eexist" ? r : { memfd: true };
  } finally {
    try {
      await t.closeFd(req.tid, fd);
    } catch (e) {
      if (ok) {
        await t.munmap(req.tid, base, size).catch(() => undefined);
        throw e;
      }
    }
  }
}

async function mapAnon(t: Tracer, req: RegionRequest, base: bigint, size: bigint): Promise<{ memfd: boolean } | "eexist"> {
  try {
    const r = await mmapAt(t, req, base, size, MAP.PRIVATE | MAP.ANONYMOUS | MAP.FIXED_NOREPLACE, -1);
    return r === "eexist" ? r : { memfd: false };
  } catch (e) {
    throw mapError(e, processSubject(req.pid), "mapping the region");
  }
}

async function mmapAt(t: Tracer, req: RegionRequest, base: bigint, size: bigint, flags: number, fd: number): Promise<"eexist" | bigint> {
  let got: bigint;
  try {
    got = await t.mmap(req.tid, { addr: base, length: size, prot: PROT.READ, flags, fd });
  } catch (e) {
    if (e instanceof ShimError && e.code === "EEXIST") return "eexist";
    throw e;
  }
  if (got !== base) {
    // A kernel without MAP_FIXED_NOREPLACE treats the address as a hint.
    await t.munmap(req.tid, got, size).catch(() => undefined);
    throw new ApplyError("NO_MEMORY", processSubject(req.pid), `mmap at ${hex(base)} returned ${hex(got)} (a kernel without MAP_FIXED_NOREPLACE)`);
  }
  return got;
}

function mapError(e: unknown, subject: string, what: string): unknown {
  if (e instanceof ApplyError) return e;
  if (e instanceof ShimError) {
    if (e.code === "ESRCH" || e.code === "TRACER_GONE") return new ApplyError("TARGET_GONE", subject, `${what}: ${e.message}`);
    if (e.code === "ENOMEM") return new ApplyError("NO_MEMORY", subject, `${what}: ${e.message}`);
    return new ApplyError("TRACE", subject, `${what}: ${e.message}`);
  }
  return e;
}

/** Unmaps a region (revert, or undo). */
export async function unmapRegion(t: Tracer, tid: number, base: bigint, size: bigint): Promise<void> {
  await t.munmap(tid, base, size);
}
