// What is applied in a process, read from the process itself: every patch region starts
// with its header (region.ts). Regions are found in /proc/PID/maps: a memfd mapping shows
// as "/memfd:patchc:<patch id> (deleted)"; the anonymous fallback (memfd forbidden) has no
// name, so anonymous readable mappings whose first bytes hold the magic are read too.
// Works from a fresh process: nothing is kept on patchc's side.
import { readFileSync } from "node:fs";
import type { Core } from "../core/instance.js";
import type { StatusPatch, StatusReport } from "./contract.js";
import { ApplyError, processSubject } from "./errors.js";
import { parseMaps, type Mapping } from "./maps.js";
import { ProcMemory, type MemoryReader } from "./proc-memory.js";
import { decodeRegion, hasRegionMagic, RegionError, regionHeaderSize, type RegionHeader } from "./region.js";

export const MEMFD_PREFIX = "patchc:";

export interface FoundRegion {
  header: RegionHeader;
  /** the mapping holding the header */
  mapping: Mapping;
  memfd: boolean;
}

const headers = new WeakMap<StatusPatch, RegionHeader>();

/** The decoded region header behind a StatusPatch that readStatus returned. */
export function regionOf(p: StatusPatch): RegionHeader | undefined {
  return headers.get(p);
}

export function readMaps(pid: number): Mapping[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ApplyError("NO_PROCESS", processSubject(pid), code === "ENOENT" ? "no such process" : `cannot read /proc/${pid}/maps: ${code ?? e}`);
  }
  return parseMaps(text, `/proc/${pid}/maps`);
}

/** Every patch region of the process; corrupt headers go to `problems` (never trusted). */
export function findRegions(pid: number, maps: Mapping[], mem: MemoryReader, problems: string[] = []): FoundRegion[] {
  const out: FoundRegion[] = [];
  for (const m of maps) {
    const memfd = m.path.startsWith("/memfd:" + MEMFD_PREFIX) && m.offset === 0n;
    const anon = m.inode === 0 && m.path === "" && m.read && !m.shared;
    if (!memfd && !anon) continue;
    const where = `process ${pid}, region at 0x${m.start.toString(16)}`;
    let first: Uint8Array;
    try {
      first = mem.read(m.start, 16);
    } catch {
      if (memfd) problems.push(`${where}: unreadable`);
      continue;
    }
    if (!hasRegionMagic(first)) {
      if (memfd) problems.push(`${where}: a patchc mapping without a region header`);
      continue;
    }
    try {
      const size = regionHeaderSize(first, where);
      const header = decodeRegion(mem.read(m.start, size), where);
      if (header.base !== m.start) throw new RegionError(where, `it records the base 0x${header.base.toString(16)}`);
      out.push({ header, mapping: m, memfd });
    } catch (e) {
      if (e instanceof RegionError) problems.push(e.message);
      else problems.push(`${where}: ${(e as Error).message}`);
    }
  }
  return out.sort((a, b) => a.header.sequence - b.header.sequence || (a.header.base < b.header.base ? -1 : 1));
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The status from found regions: which jump each site holds now. */
export function statusOf(pid: number, regions: FoundRegion[], mem: MemoryReader, problems: string[] = []): StatusReport & { problems?: string[] } {
  const patches: StatusPatch[] = regions.map(({ header: h }) => {
    const p: StatusPatch = {
      patchId: h.patchId,
      hash: h.hash,
      state: h.state,
      module: { path: h.modulePath, buildId: h.buildId },
      region: { base: h.base, size: h.size },
      appliedAt: h.appliedAt,
      functions: h.functions.map((f) => {
        let current = false;
        try {
          current = sameBytes(mem.read(f.site, f.jump.length), f.jump);
        } catch {
          current = false;
        }
        const out: StatusPatch["functions"][number] = { name: f.name, site: f.site, newAddr: f.newAddr, current };
        if (f.previous) out.previous = f.previous;
        return out;
      }),
    };
    headers.set(p, h);
    return p;
  });
  const report: StatusReport & { problems?: string[] } = { pid, patches };
  if (problems.length) report.problems = problems;
  return report;
}

export async function readStatus(pid: number, _opts: { core?: Core; maps?: Mapping[] } = {}): Promise<StatusReport> {
  const maps = _opts.maps ?? readMaps(pid);
  let mem: ProcMemory;
  try {
    mem = new ProcMemory(pid);
  } catch (e) {
    throw new ApplyError("NO_PROCESS", processSubject(pid), (e as Error).message.replace(/^process \d+: /, ""));
  }
  try {
    const problems: string[] = [];
    return statusOf(pid, findRegions(pid, maps, mem, problems), mem, problems);
  } finally {
    mem.close();
  }
}
