// `patchc apply --all BINARY FILE`: every process running that executable or having that
// library loaded, matched by build-id, never by path; then the applies, in parallel.
//
// Finding the processes (findProcesses) looks at each /proc/<pid> once, as cheaply as it can:
//   - BINARY an executable only (ET_EXEC, or a PIE: DT_FLAGS_1 has DF_1_PIE, which ld.so
//     refuses to load as a library): the process's own program, /proc/PID/exe. Its
//     device and inode (stat) are BINARY's, or the build-id note read from that file
//     (the magic link opens the process's file even when deleted or in a container) is
//     BINARY's build-id. One stat per process.
//   - otherwise (a library, or libc which is both): /proc/PID/maps, scanned line by line
//     for the modules mapped executable (their offset-0 mapping: the ELF header). A module
//     is BINARY when its device and inode in the maps are those of stat(BINARY), or the
//     build-id note read from the target's own image (/proc/PID/mem: the ELF header, the
//     program headers and the PT_NOTE segments only) is BINARY's build-id.
// Either way a build-id read is remembered by device and inode for the rest of the scan:
// a mapped file cannot be replaced under the same inode while it is mapped, so the
// libraries every process shares (libc) are read once, not once per process. An upgraded
// file ("(deleted)") or a container's copy has another inode and is read.
//
// Never touched: patchc itself, its ancestors (PPid from process.pid up to 1: the shell,
// a supervisor, init, which may well have the same library loaded) and tracer processes
// (shim/tracer.c, which patchc spawns, shim/addon.cc spawnTracer: told by their
// executable's device and inode, or their name, patchc-tracer).
//
//   ELF header (64 bytes)        e_phoff @32 u64, e_phentsize @54 u16 (56), e_phnum @56 u16
//   Elf64_Phdr (56 bytes)        p_type @0 u32 (PT_LOAD 1, PT_NOTE 4), p_offset @8, p_vaddr @16,
//                                p_filesz @32, p_align @48
//   Elf64_Nhdr                   namesz u32, descsz u32, type u32 (NT_GNU_BUILD_ID 3), name "GNU\0", desc;
//                                desc and the next note start at the segment's alignment (4 or 8),
//                                counted from the start of the segment (so "GNU\0" at 12 ends at 16)
// (System V gABI, "Program Header" and "Note Section": https://www.sco.com/developers/gabi/latest/ch5.pheader.html)
// In an image the header and the program headers lie in the first page (the offset-0
// mapping, at the first PT_LOAD's page: every binary ld.bfd/lld/gold produce), and a note
// at its p_vaddr plus the load bias. Anything out of those bounds falls back to reading the
// whole image with the core's ELF reader (modules.ts readModuleImage).
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync } from "node:fs";
import type { Core } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import { ApplyError, processSubject, type ApplyErrorCode } from "./errors.js";
import type { ApplyReport } from "./contract.js";
import { listModules, readModuleImage } from "./modules.js";
import { parseMaps } from "./maps.js";
import { ProcMemory, type MemoryReader } from "./proc-memory.js";
import { tracerPath } from "../shim/load.js";
import { Tracer } from "../shim/index.js";
import { SharerPass } from "../shim/sharers.js";

/** The file `--all` names: its build-id and where it lives. */
export interface BinaryIdentity {
  path: string;
  buildId: string;
  /** as /proc/PID/maps prints it: "fe:01" (major:minor, hex) */
  dev: string;
  inode: number;
  /** only ever a process's program, never a library (ET_EXEC, or a PIE) */
  executable: boolean;
}

/** A device number (stat's st_dev) as /proc/PID/maps prints it (glibc's major/minor split). */
export function mapsDevice(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}`;
}

const DT_FLAGS_1 = 0x6ffffffbn;
const DF_1_PIE = 0x08000000n;

/** BINARY's build-id (the core's ELF reader over the file), its device and inode, and whether it is a program only. */
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
    const pie = elf.dynamic().some((d) => d.tag === DT_FLAGS_1 && (d.val & DF_1_PIE) !== 0n);
    return { path, buildId: elf.info.buildId, dev: mapsDevice(st.dev), inode: Number(st.ino), executable: elf.info.type === 2 || pie };
  } finally {
    elf.close();
  }
}

const NOTE_MAX = 1 << 16;
const PHNUM_MAX = 512;

type Read = (at: bigint, len: number) => Uint8Array;

/**
 * The GNU build-id of an ELF module read piecewise: `layout` "image", the module as mapped
 * at `start` whose first `size` bytes are one mapping; "file", the file (start 0, `size` its
 * length). Undefined when it has none; null when the header or notes are not where this
 * cheap read looks (then read the whole image).
 */
export function readBuildIdNote(read: Read, start: bigint, size: bigint, layout: "image" | "file"): string | undefined | null {
  if (size < 64n) return null;
  const eh = new DataView(read(start, 64).buffer);
  if (eh.getUint32(0, true) !== 0x464c457f || eh.getUint8(4) !== 2 || eh.getUint8(5) !== 1) return null;
  const phoff = eh.getBigUint64(32, true);
  const phentsize = eh.getUint16(54, true);
  const phnum = eh.getUint16(56, true);
  if (phentsize !== 56 || phnum === 0 || phnum > PHNUM_MAX || phoff > size || BigInt(phnum * 56) > size - phoff) return null;
  const ph = new DataView(read(start + phoff, phnum * 56).buffer);
  let firstVaddr: bigint | undefined;
  for (let i = 0; i < phnum && firstVaddr === undefined; i++) {
    if (ph.getUint32(i * 56, true) === 1) firstVaddr = ph.getBigUint64(i * 56 + 16, true) & ~0xfffn;
  }
  if (firstVaddr === undefined) return null;
  for (let i = 0; i < phnum; i++) {
    if (ph.getUint32(i * 56, true) !== 4) continue;
    const filesz = ph.getBigUint64(i * 56 + 32, true);
    const align = ph.getBigUint64(i * 56 + 48, true) === 8n ? 8 : 4;
    const vaddr = ph.getBigUint64(i * 56 + 16, true);
    if (filesz > BigInt(NOTE_MAX)) return null;
    let at: bigint;
    if (layout === "file") {
      at = ph.getBigUint64(i * 56 + 8, true);
      if (at > size || filesz > size - at) return null;
    } else {
      if (vaddr < firstVaddr) return null;
      at = start + (vaddr - firstVaddr);
    }
    const id = scanNotes(read(at, Number(filesz)), align);
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

/** The build-id of a file read through an open path (a /proc/PID/exe link), by its notes only. */
function fileBuildId(core: Core, path: string): string | undefined {
  const fd = openSync(path, "r");
  try {
    const size = BigInt(fstatSync(fd).size);
    const read: Read = (at, len) => {
      const b = new Uint8Array(len);
      if (readSync(fd, b, 0, len, at) !== len) throw new Error(`${path}: short read at ${at}`);
      return b;
    };
    const id = readBuildIdNote(read, 0n, size, "file");
    if (id !== null) return id;
    const elf = new ElfReader(core, readFileSync(fd), path);
    try {
      return elf.info.buildId;
    } finally {
      elf.close();
    }
  } finally {
    closeSync(fd);
  }
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

/** A module mapped executable in a process, as the lean scan of its maps finds it. */
export interface MappedModule {
  /** "dev:inode" as in the maps */
  key: string;
  path: string;
  deleted: boolean;
  /** its offset-0 mapping (the ELF header) */
  start: bigint;
  headSize: bigint;
  headReadable: boolean;
}

/**
 * The file-backed modules of a maps text that have an executable mapping and an offset-0
 * mapping (where their ELF header is): modules.ts listModules' selection, without a
 * regular expression or a BigInt for the lines that do not matter (a process of a large
 * program has thousands).
 */
export function execModules(text: string): MappedModule[] {
  const heads = new Map<string, MappedModule>();
  const exec = new Set<string>();
  for (let p = 0; p < text.length; ) {
    let eol = text.indexOf("\n", p);
    if (eol < 0) eol = text.length;
    // start-end perms offset dev inode [path]
    const sp1 = text.indexOf(" ", p);
    const sp2 = sp1 + 5;
    const sp3 = text.indexOf(" ", sp2 + 1);
    const sp4 = text.indexOf(" ", sp3 + 1);
    const sp5 = text.indexOf(" ", sp4 + 1);
    if (sp1 < 0 || sp5 < 0 || sp5 > eol || text[sp2] !== " ") throw new Error(`not a maps line: ${JSON.stringify(text.slice(p, Math.min(eol, p + 120)))}`);
    const inode = text.slice(sp4 + 1, sp5);
    if (inode !== "0") {
      let q = sp5;
      while (q < eol && text[q] === " ") q++;
      const key = `${text.slice(sp3 + 1, sp4)}:${inode}`;
      if (text[sp1 + 3] === "x") exec.add(key);
      if (!heads.has(key) && /^0+$/.test(text.slice(sp2 + 1, sp3)) && text[q] === "/") {
        let path = text.slice(q, eol);
        const deleted = path.endsWith(" (deleted)");
        if (deleted) path = path.slice(0, -" (deleted)".length);
        const dash = text.indexOf("-", p);
        const start = BigInt("0x" + text.slice(p, dash));
        heads.set(key, { key, path, deleted, start, headSize: BigInt("0x" + text.slice(dash + 1, sp1)) - start, headReadable: text[sp1 + 1] === "r" });
      }
    }
    p = eol + 1;
  }
  return [...heads.values()].filter((m) => exec.has(m.key));
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

const denied = (e: unknown): boolean => ["EACCES", "EPERM"].includes((e as NodeJS.ErrnoException).code ?? "");

/**
 * Every process (other than patchc, its ancestors and tracers) that has the module `id`
 * mapped executable, by build-id. `self` is patchc's pid (a test may pose as another).
 */
export function findProcesses(core: Core, id: BinaryIdentity, opts: { self?: number; proc?: string } = {}): ProcessScan {
  const proc = opts.proc ?? "/proc";
  const self = opts.self ?? process.pid;
  const ancestors = ancestry(self, proc);
  const tracer = tracerFile();
  const idKey = `${id.dev}:${id.inode}`;
  const known = new Map<string, string | undefined>([[idKey, id.buildId]]); // dev:inode -> build-id
  const scan: ProcessScan = { matches: [], excluded: [], unreadable: [], scanned: 0 };
  const pids = readdirSync(proc)
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
  for (const pid of pids) {
    let found: MatchedProcess | undefined;
    try {
      found = id.executable ? matchProgram(core, id, pid, proc, known) : matchModules(core, id, pid, proc, known);
    } catch (e) {
      if (denied(e) && pid !== self && !ancestors.has(pid)) scan.unreadable.push(pid); // (ancestors are never touched anyway)
      continue; // gone meanwhile (ENOENT, ESRCH), or unreadable
    }
    scan.scanned++;
    if (!found) continue;
    if (pid === self) scan.excluded.push({ pid, why: "patchc" });
    else if (ancestors.has(pid)) scan.excluded.push({ pid, why: "ancestor" });
    else if (isTracer(pid, proc, tracer)) scan.excluded.push({ pid, why: "tracer" });
    else scan.matches.push(found);
  }
  return scan;
}

/** BINARY an executable: is it the process's program? (throws when the process is gone or not ours to read) */
function matchProgram(core: Core, id: BinaryIdentity, pid: number, proc: string, known: Map<string, string | undefined>): MatchedProcess | undefined {
  const exe = `${proc}/${pid}/exe`;
  let st;
  try {
    st = statSync(exe, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined; // a kernel thread or a zombie
    throw e;
  }
  const key = `${mapsDevice(st.dev)}:${st.ino}`;
  let buildId = known.get(key);
  if (!known.has(key)) {
    buildId = fileBuildId(core, exe);
    known.set(key, buildId);
  }
  if (buildId !== id.buildId) return undefined;
  let path = readlinkSync(exe);
  const deleted = path.endsWith(" (deleted)");
  if (deleted) path = path.slice(0, -" (deleted)".length);
  return { pid, path, deleted, by: key === `${id.dev}:${id.inode}` ? "inode" : "build-id" };
}

/** BINARY a library (or both): is it among the modules the process maps executable? */
function matchModules(core: Core, id: BinaryIdentity, pid: number, proc: string, known: Map<string, string | undefined>): MatchedProcess | undefined {
  const text = readFileSync(`${proc}/${pid}/maps`, "utf8");
  let mem: ProcMemory | undefined;
  try {
    for (const mod of execModules(text)) {
      let buildId = known.get(mod.key);
      if (!known.has(mod.key)) {
        mem ??= openMemory(pid);
        const read = moduleBuildId(core, mem, pid, mod, text);
        if (read instanceof Error) continue; // unreadable now (it may be exiting): not remembered
        buildId = read;
        known.set(mod.key, buildId);
      }
      if (buildId === id.buildId) return { pid, path: mod.path, deleted: mod.deleted, by: mod.key === `${id.dev}:${id.inode}` ? "inode" : "build-id" };
    }
    return undefined;
  } finally {
    mem?.close();
  }
}

function openMemory(pid: number): ProcMemory {
  try {
    return new ProcMemory(pid);
  } catch (e) {
    // ProcMemory's message names the errno: keep it as the code for denied()
    const err = e as NodeJS.ErrnoException;
    err.code = /EACCES|EPERM/.exec(err.message)?.[0] ?? "ENOENT";
    throw err;
  }
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

/** A module's build-id: the cheap note read, else the whole image through the core's ELF reader. */
function moduleBuildId(core: Core, mem: MemoryReader, pid: number, mod: MappedModule, maps: string): string | undefined | Error {
  if (mod.headReadable) {
    try {
      const id = readBuildIdNote((at, len) => mem.read(at, len), mod.start, mod.headSize, "image");
      if (id !== null) return id;
    } catch (e) {
      return e as Error;
    }
  }
  try {
    const full = listModules(parseMaps(maps, `/proc/${pid}/maps`)).find((m) => m.start === mod.start);
    if (!full || full.end - full.start > 1n << 30n) return undefined;
    const image = readModuleImage(core, mem, pid, full);
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
  | {
      pid: number;
      ok: false;
      error: { code: ApplyErrorCode | "INTERNAL"; subject: string; reason: string; tid: number };
      ms: number;
      /** the process exited before or during its apply (NO_PROCESS, TARGET_GONE, and it is no more): nothing left to patch */
      gone: boolean;
    };

/** The process is no more: no /proc entry, or a zombie. */
export function processGone(pid: number, proc = "/proc"): boolean {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}

export interface Progress {
  total: number;
  done: number;
  patched: number;
  /** failed, the exited ones included */
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
        const gone = (error.code === "NO_PROCESS" || error.code === "TARGET_GONE") && processGone(pid);
        out[i] = { pid, ok: false, error, ms: performance.now() - t0, gone };
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

/**
 * One tracer process per parallel job of applyAll, reused for the job's successive
 * targets (applyPatch attaches it and leaves it detached: ApplyOptions.tracer), instead of
 * starting and ending one per process. After a failed apply the slot's tracer is asked
 * whether it still answers (hello) and replaced if not, so a tracer lost with one process
 * costs no other. close() ends them all.
 */
export class TracerPool {
  private slots: Array<Tracer | undefined> = [];
  constructor(private readonly open: (slot: number) => Tracer) {}

  get(slot: number): Tracer {
    return (this.slots[slot] ??= this.open(slot));
  }

  /** After a failure in `slot`: keep its tracer only if it still answers. */
  async check(slot: number): Promise<void> {
    const t = this.slots[slot];
    if (!t) return;
    try {
      await t.hello();
    } catch {
      this.slots[slot] = undefined;
      await t.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const all = this.slots.filter((t): t is Tracer => t !== undefined);
    this.slots = [];
    await Promise.all(all.map((t) => t.close().catch(() => undefined)));
  }
}

/**
 * `apply(pid, slot, tracer)` run by applyAll with a TracerPool's tracer per slot, closed at
 * the end. The tracers find each target's address-space sharers from one SharerPass
 * (src/shim/sharers.ts: one pass over /proc for the run, then only the processes created
 * since per attach) instead of comparing every target with every process; `opts.sharers`
 * to give it (and read its stats).
 */
export async function applyAllPooled(
  pids: readonly number[],
  apply: (pid: number, slot: number, tracer: Tracer) => Promise<ApplyReport>,
  opts: { jobs: number; onProgress?: (p: Progress) => void; open: (slot: number) => Tracer; sharers?: SharerPass },
): Promise<ProcessOutcome[]> {
  const sharers = opts.sharers ?? new SharerPass();
  const pool = new TracerPool((slot) => {
    const t = opts.open(slot);
    t.useSharerPass(sharers);
    return t;
  });
  try {
    return await applyAll(
      pids,
      async (pid, slot) => {
        let t: Tracer;
        try {
          t = pool.get(slot);
        } catch (e) {
          throw new ApplyError("TRACE", processSubject(pid), `cannot start the tracer: ${(e as Error).message}`);
        }
        try {
          return await apply(pid, slot, t);
        } catch (e) {
          await pool.check(slot);
          throw e;
        }
      },
      opts,
    );
  } finally {
    await pool.close();
    if (!opts.sharers) sharers.close();
  }
}
