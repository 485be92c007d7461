// `patchc apply --all BINARY FILE`: every process running that executable or having that
// library loaded, matched by build-id, never by path; then the applies, in parallel.
//
// Finding the processes (findProcesses) reads, for each /proc/<pid>, its maps and
// groups them into modules (modules.ts listModules). A module is BINARY when
//   - its mapping is of the same file: the device and inode in /proc/PID/maps are those
//     of stat(BINARY) (no memory read), or
//   - the GNU build-id note read from the target's own image is BINARY's build-id: the
//     ELF header, the program headers and the PT_NOTE segments only, a few hundred bytes
//     through /proc/PID/mem (an upgraded file shows as "(deleted)" and a process in a
//     container maps its own copy: same build, other inode).
// A build-id read is remembered by device and inode for the rest of the scan: a mapped
// file cannot be replaced under the same inode while it is mapped, and the libraries
// every process shares (libc) are read once, not once per process.
//
// Never touched: patchc itself, its ancestors (PPid from process.pid up to 1: the shell,
// a supervisor, init, which may well have the same library loaded) and tracer processes
// (shim/tracer.c, which patchc spawns, shim/addon.cc spawnTracer: told by their
// executable's device and inode, or their name, patchc-tracer).
//
//   ELF header (64 bytes)        e_phoff @32 u64, e_phentsize @54 u16 (56), e_phnum @56 u16
//   Elf64_Phdr (56 bytes)        p_type @0 u32 (PT_LOAD 1, PT_NOTE 4), p_vaddr @16, p_filesz @32, p_align @48
//   Elf64_Nhdr                   namesz u32, descsz u32, type u32 (NT_GNU_BUILD_ID 3), name "GNU\0", desc,
//                                desc and the next note start at the segment's alignment (4 or 8),
//                                counted from the start of the segment (so "GNU\0" at 12 ends at 16)
// (System V gABI, "Program Header" and "Note Section": https://www.sco.com/developers/gabi/latest/ch5.pheader.html)
// The image's first page (the offset-0 mapping, at the first PT_LOAD's page) holds the
// header and, in every binary ld.bfd/lld/gold produce, the program headers; a note is at
// its p_vaddr plus the load bias. Anything out of those bounds falls back to reading the
// whole image with the core's ELF reader (modules.ts readModuleImage).
import { readdirSync, readFileSync, statSync } from "node:fs";
import type { Core } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import { ApplyError, type ApplyErrorCode } from "./errors.js";
import type { ApplyReport } from "./contract.js";
import { parseMaps } from "./maps.js";
import { listModules, readModuleImage, type ProcessModule } from "./modules.js";
import { ProcMemory, type MemoryReader } from "./proc-memory.js";
import { tracerPath } from "../shim/load.js";

/** The file `--all` names: its build-id and where it lives. */
export interface BinaryIdentity {
  path: string;
  buildId: string;
  /** as /proc/PID/maps prints it: "fe:01" (major:minor, hex) */
  dev: string;
  inode: number;
}

/** A device number (stat's st_dev) as /proc/PID/maps prints it (glibc's major/minor split). */
export function mapsDevice(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}`;
}

/** BINARY's build-id (the core's ELF reader over the file) and its device and inode. */
export function binaryIdentity(core: Core, path: string): BinaryIdentity {
  let bytes: Uint8Array;
  let st;
  try {
    st = statSync(path, { bigint: true });
    bytes = readFileSync(path);
  } catch (e) {
    throw new ApplyError("WRONG_BUILD", path, `cannot read the binary: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  const elf = new ElfReader(core, bytes, path);
  try {
    if (elf.info.type !== 2 && elf.info.type !== 3) throw new ApplyError("WRONG_BUILD", path, "not an executable or shared library (ET_EXEC or ET_DYN)");
    if (!elf.info.buildId) throw new ApplyError("WRONG_BUILD", path, "has no GNU build-id note: processes running it cannot be told apart from other builds");
    return { path, buildId: elf.info.buildId, dev: mapsDevice(st.dev), inode: Number(st.ino) };
  } finally {
    elf.close();
  }
}

const NOTE_MAX = 1 << 16;
const PHNUM_MAX = 512;

/**
 * The GNU build-id of the module whose ELF header is mapped at `start` (the first `headSize`
 * bytes of it being one mapping), read from the target's memory: undefined when it has
 * none, null when the header or notes are not where this cheap read looks (use the full image).
 */
export function readBuildIdNote(mem: MemoryReader, start: bigint, headSize: number): string | undefined | null {
  if (headSize < 64) return null;
  const eh = new DataView(mem.read(start, 64).buffer);
  if (eh.getUint32(0, true) !== 0x464c457f || eh.getUint8(4) !== 2 || eh.getUint8(5) !== 1) return null;
  const phoff = eh.getBigUint64(32, true);
  const phentsize = eh.getUint16(54, true);
  const phnum = eh.getUint16(56, true);
  if (phentsize !== 56 || phnum === 0 || phnum > PHNUM_MAX || phoff + BigInt(phnum * 56) > BigInt(headSize)) return null;
  const ph = new DataView(mem.read(start + phoff, phnum * 56).buffer);
  let firstVaddr: bigint | undefined;
  for (let i = 0; i < phnum && firstVaddr === undefined; i++) {
    if (ph.getUint32(i * 56, true) === 1) firstVaddr = ph.getBigUint64(i * 56 + 16, true) & ~0xfffn;
  }
  if (firstVaddr === undefined) return null;
  for (let i = 0; i < phnum; i++) {
    if (ph.getUint32(i * 56, true) !== 4) continue;
    const vaddr = ph.getBigUint64(i * 56 + 16, true);
    const filesz = ph.getBigUint64(i * 56 + 32, true);
    const align = ph.getBigUint64(i * 56 + 48, true) === 8n ? 8 : 4;
    if (vaddr < firstVaddr || filesz > BigInt(NOTE_MAX)) return null;
    const id = scanNotes(mem.read(start + (vaddr - firstVaddr), Number(filesz)), align);
    if (id === null) return null;
    if (id !== undefined) return id;
  }
  return undefined;
}

/** NT_GNU_BUILD_ID in a note segment's bytes (hex), undefined if absent, null if malformed. */
export function scanNotes(b: Uint8Array, align: number): string | undefined | null {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const pad = (n: number) => (n + align - 1) & ~(align - 1);
  for (let p = 0; p + 12 <= b.length; ) {
    const namesz = v.getUint32(p, true);
    const descsz = v.getUint32(p + 4, true);
    const type = v.getUint32(p + 8, true);
    const name = p + 12;
    const desc = pad(name + namesz); // padded from the start of the container
    if (namesz > b.length || descsz > b.length || desc + descsz > b.length) return null;
    if (type === 3 && namesz === 4 && b[name] === 0x47 && b[name + 1] === 0x4e && b[name + 2] === 0x55 && b[name + 3] === 0) {
      return Buffer.from(b.subarray(desc, desc + descsz)).toString("hex");
    }
    p = desc + pad(descsz);
  }
  return undefined;
}

/** pid -> parent pid, from /proc/PID/stat (field 4, after the parenthesised name); undefined if gone. */
export function parentOf(pid: number, proc = "/proc"): number | undefined {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[1]);
  } catch {
    return undefined;
  }
}

/** `self` and its ancestors up to init. */
export function ancestry(self: number, proc = "/proc"): Set<number> {
  const out = new Set<number>();
  for (let p: number | undefined = self; p !== undefined && p > 0 && !out.has(p) && out.size < 4096; p = parentOf(p, proc)) out.add(p);
  return out;
}

export interface MatchedProcess {
  pid: number;
  /** the module as the target sees it */
  path: string;
  deleted: boolean;
  by: "inode" | "build-id";
}

export interface ProcessScan {
  matches: MatchedProcess[];
  /** processes having BINARY that are never touched: patchc, its ancestors, tracers */
  excluded: Array<{ pid: number; why: "patchc" | "ancestor" | "tracer" }>;
  /** processes whose maps or memory patchc may not read (another user's, without privilege) */
  unreadable: number[];
  scanned: number;
}

/**
 * Every process (other than patchc, its ancestors and its children) that has the module
 * `id` mapped executable, by build-id. `self` is patchc's pid (a test may pose as another).
 */
export function findProcesses(core: Core, id: BinaryIdentity, opts: { self?: number; proc?: string } = {}): ProcessScan {
  const proc = opts.proc ?? "/proc";
  const self = opts.self ?? process.pid;
  const ancestors = ancestry(self, proc);
  const tracer = tracerFile();
  const known = new Map<string, string | undefined>(); // dev:inode -> build-id
  known.set(`${id.dev}:${id.inode}`, id.buildId);
  const scan: ProcessScan = { matches: [], excluded: [], unreadable: [], scanned: 0 };
  const pids = readdirSync(proc)
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`${proc}/${pid}/maps`, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") scan.unreadable.push(pid);
      continue; // gone meanwhile (ENOENT, ESRCH)
    }
    scan.scanned++;
    if (text === "") continue; // a kernel thread or a zombie
    let found: MatchedProcess | undefined;
    let mem: ProcMemory | undefined;
    try {
      for (const mod of listModules(parseMaps(text, `${proc}/${pid}/maps`))) {
        if (mod.path === "[vdso]" || !mod.mappings.some((m) => m.exec)) continue;
        const key = `${mod.mappings[0].dev}:${mod.inode}`;
        let by: MatchedProcess["by"] = "build-id";
        let buildId: string | undefined;
        if (key === `${id.dev}:${id.inode}`) {
          by = "inode";
          buildId = id.buildId;
        } else if (known.has(key)) {
          buildId = known.get(key);
        } else {
          mem ??= new ProcMemory(pid); // throws when its memory is not ours to read
          const read = moduleBuildId(core, mem, pid, mod);
          if (read instanceof Error) continue; // unreadable now (it may be exiting): not remembered
          buildId = read;
          known.set(key, buildId);
        }
        if (buildId === id.buildId) {
          found = { pid, path: mod.path, deleted: mod.deleted, by };
          break;
        }
      }
    } catch {
      // Its memory is not ours to read, or it exited during the scan.
      if (alive(pid, proc)) scan.unreadable.push(pid);
      continue;
    } finally {
      mem?.close();
    }
    if (!found) continue;
    if (pid === self) scan.excluded.push({ pid, why: "patchc" });
    else if (ancestors.has(pid)) scan.excluded.push({ pid, why: "ancestor" });
    else if (isTracer(pid, proc, tracer)) scan.excluded.push({ pid, why: "tracer" });
    else scan.matches.push(found);
  }
  return scan;
}

const TRACER_NAME = "patchc-tracer";

/** dev:inode of the tracer executable patchc spawns, when it is built. */
function tracerFile(): string | undefined {
  try {
    const st = statSync(tracerPath(), { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** A tracer process: it runs the tracer executable, or is named like it. */
export function isTracer(pid: number, proc = "/proc", tracer = tracerFile()): boolean {
  try {
    if (readFileSync(`${proc}/${pid}/comm`, "utf8").trim() === TRACER_NAME) return true;
    const st = statSync(`${proc}/${pid}/exe`, { bigint: true });
    return tracer !== undefined && `${st.dev}:${st.ino}` === tracer;
  } catch {
    return false;
  }
}

function alive(pid: number, proc: string): boolean {
  try {
    return readFileSync(`${proc}/${pid}/maps`, "utf8") !== "";
  } catch {
    return false;
  }
}

/** A module's build-id: the cheap note read, else the whole image through the core's ELF reader. */
function moduleBuildId(core: Core, mem: MemoryReader, pid: number, mod: ProcessModule): string | undefined | Error {
  const head = mod.mappings[0];
  if (head.read) {
    try {
      const id = readBuildIdNote(mem, mod.start, Number(head.end - head.start));
      if (id !== null) return id;
    } catch (e) {
      return e as Error;
    }
  }
  try {
    const image = readModuleImage(core, mem, pid, mod);
    try {
      return image.info.buildId;
    } finally {
      image.close();
    }
  } catch {
    return undefined; // not an ELF image we can read: not BINARY
  }
}

// ---- the applies --------------------------------------------------------------

export type ProcessOutcome =
  | { pid: number; ok: true; report: ApplyReport; ms: number }
  | { pid: number; ok: false; error: { code: ApplyErrorCode | "INTERNAL"; subject: string; reason: string; tid: number }; ms: number };

export interface Progress {
  total: number;
  done: number;
  patched: number;
  failed: number;
}

/**
 * Runs `apply(pid, slot)` for every pid, at most `jobs` at a time (`slot` in [0, jobs):
 * which worker runs it, so a caller can give each its own core instance). A failure
 * of one process is its outcome, never the others'. Outcomes are in the order of `pids`.
 */
export async function applyAll(
  pids: readonly number[],
  apply: (pid: number, slot: number) => Promise<ApplyReport>,
  opts: { jobs: number; onProgress?: (p: Progress) => void },
): Promise<ProcessOutcome[]> {
  const out: ProcessOutcome[] = new Array(pids.length);
  const progress: Progress = { total: pids.length, done: 0, patched: 0, failed: 0 };
  let next = 0;
  const worker = async (slot: number) => {
    while (next < pids.length) {
      const i = next++;
      const pid = pids[i];
      const t0 = performance.now();
      try {
        const report = await apply(pid, slot);
        out[i] = { pid, ok: true, report, ms: performance.now() - t0 };
        progress.patched++;
      } catch (e) {
        const error =
          e instanceof ApplyError
            ? { code: e.code, subject: e.subject, reason: e.reason, tid: e.tid }
            : { code: "INTERNAL" as const, subject: `process ${pid}`, reason: `internal error: ${e instanceof Error ? e.message : String(e)}`, tid: 0 };
        out[i] = { pid, ok: false, error, ms: performance.now() - t0 };
        progress.failed++;
      }
      progress.done++;
      opts.onProgress?.({ ...progress });
    }
  };
  const jobs = Math.max(1, Math.min(opts.jobs, pids.length));
  await Promise.all(Array.from({ length: jobs }, (_, slot) => worker(slot)));
  return out;
}
