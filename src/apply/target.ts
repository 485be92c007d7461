// The process a package is applied to, as apply sees it before touching it: its maps,
// the module the package patches (matched by the GNU build-id read from the target's
// own memory, never by path), and its link_map (ld.so's load order).
//
// Why never by path: an upgraded library is still mapped from the old, now unlinked
// file, and /proc/PID/maps shows it as "PATH (deleted)"; the file at PATH today is the
// new build. A process in a container sees its own mount namespace: PATH means
// /proc/PID/root/PATH to us. The bytes in the target's memory are what runs, so the
// build-id note is read from there (modules.ts findModuleByBuildId).
//
// The executable (the head of the link_map) is the module holding AT_PHDR from the
// auxiliary vector (/proc/PID/auxv: pairs of u64 type, u64 value; AT_PHDR = 3, the
// runtime address of the program headers ld.so was given; ELF gABI / System V ABI
// "Process initialization", https://refspecs.linuxbase.org/elf/x86_64-abi-0.99.pdf 3.4.3).
//
// Refusals (errors.ts): NO_PROCESS for a PID that does not exist, a zombie (it has
// no memory left), or one we may not read (ptrace access mode: another user's
// process, or kernel.yama.ptrace_scope); WRONG_BUILD when no mapped module has the
// package's build-id.
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import type { Core } from "../core/instance.js";
import type { TargetProcess } from "./contract.js";
import { ApplyError, processSubject } from "./errors.js";
import { parseMaps, type Mapping } from "./maps.js";
import { findModuleByBuildId, listModules, readLinkMap, readModuleImage, type LoadedModule, type ProcessModule } from "./modules.js";
import { ProcMemory } from "./proc-memory.js";

const AT_PHDR = 3n;
const PT_DYNAMIC = 2;

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? String(e);
}

function ptraceScope(): string {
  try {
    const v = readFileSync("/proc/sys/kernel/yama/ptrace_scope", "utf8").trim();
    return `, kernel.yama.ptrace_scope is ${v}`;
  } catch {
    return "";
  }
}

function noPermission(pid: number, what: string, e: unknown): ApplyError {
  const me = process.getuid?.();
  return new ApplyError(
    "NO_PROCESS",
    processSubject(pid),
    `not permitted to read it (${what}: ${errnoOf(e)}): trace it as its own user or as root (patchc runs as uid ${me}${ptraceScope()})`,
  );
}

/** The process's state letter from /proc/PID/stat (R, S, D, T, t, Z, X, ...); throws NO_PROCESS when there is none. */
export function processState(pid: number): string {
  if (!Number.isInteger(pid) || pid <= 0) throw new ApplyError("NO_PROCESS", processSubject(pid), `${pid} is not a process id`);
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch (e) {
    if (errnoOf(e) === "ENOENT" || errnoOf(e) === "ESRCH") throw new ApplyError("NO_PROCESS", processSubject(pid), "no such process (it exited, or never existed)");
    throw noPermission(pid, `/proc/${pid}/stat`, e);
  }
  // "pid (comm) S ..." where comm may itself hold ") ": the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  // A thread id is also visible as /proc/TID; a package is applied to a process.
  const tgid = /^Tgid:\s*(\d+)/m.exec(safeRead(`/proc/${pid}/status`) ?? "")?.[1];
  if (tgid !== undefined && Number(tgid) !== pid) throw new ApplyError("NO_PROCESS", processSubject(pid), `${pid} is a thread of process ${tgid}, not a process: give ${tgid}`);
  if (state === "Z") throw new ApplyError("NO_PROCESS", processSubject(pid), "is a zombie: it has exited and has no memory left (its parent has not reaped it yet)");
  if (state === "X") throw new ApplyError("NO_PROCESS", processSubject(pid), "is dead (exiting)");
  return state;
}

function safeRead(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The maps of a live process; NO_PROCESS when it is gone or may not be read. */
export function readProcessMaps(pid: number): Mapping[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, "utf8");
  } catch (e) {
    if (errnoOf(e) === "ENOENT" || errnoOf(e) === "ESRCH") throw new ApplyError("NO_PROCESS", processSubject(pid), "no such process (it exited)");
    throw noPermission(pid, `/proc/${pid}/maps`, e);
  }
  const maps = parseMaps(text, `/proc/${pid}/maps`);
  // A kernel thread, or a process between exit and zombie: no address space.
  if (maps.length === 0) throw new ApplyError("NO_PROCESS", processSubject(pid), "has no address space (a kernel thread, or exiting)");
  return maps;
}

/** AT_PHDR from /proc/PID/auxv: the runtime address of the executable's program headers. */
export function auxvPhdr(pid: number): bigint | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(`/proc/${pid}/auxv`);
  } catch {
    return undefined;
  }
  for (let o = 0; o + 16 <= buf.length; o += 16) {
    const type = buf.readBigUInt64LE(o);
    if (type === 0n) break;
    if (type === AT_PHDR) return buf.readBigUInt64LE(o + 8);
  }
  return undefined;
}

/** The executable of the process: the module holding AT_PHDR (undefined when it cannot be told). */
export function findExecutable(core: Core, mem: ProcMemory, pid: number, maps: Mapping[], known?: LoadedModule): LoadedModule | undefined {
  const phdr = auxvPhdr(pid);
  if (phdr === undefined) return undefined;
  const mod = listModules(maps).find((m) => m.path !== "[vdso]" && m.mappings.some((x) => phdr >= x.start && phdr < x.end));
  if (!mod) return undefined;
  if (known && known.module.start === mod.start) return known;
  const image = readModuleImage(core, mem, pid, mod);
  return { module: mod, image, bias: mod.start - image.info.firstVaddr };
}

/**
 * Candidate files of a mapped module, as we can open them: /proc/PID/map_files/START-END
 * (the very file mapped, also when deleted; opening it needs CAP_SYS_ADMIN), then the
 * path in the target's root (/proc/PID/root/PATH: the file there now, maybe another
 * build). Callers check the build-id of what they read.
 */
export function moduleFileCandidates(pid: number, mod: ProcessModule): string[] {
  const first = mod.mappings[0];
  const out = [`/proc/${pid}/map_files/${first.start.toString(16)}-${first.end.toString(16)}`];
  if (mod.path.startsWith("/") && !mod.deleted) out.push(`/proc/${pid}/root${mod.path}`);
  return out;
}

/** Debug files of a build-id: DIR/.build-id/xx/rest.debug in the target's root, then the host's, for each DIR. */
export function debugFileCandidates(pid: number, buildId: string, dirs: string[] = ["/usr/lib/debug"]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    const rel = `${dir.replace(/\/+$/, "")}/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`;
    out.push(`/proc/${pid}/root${rel}`, rel);
  }
  return out;
}

/** Reads a file if it exists and is readable; undefined otherwise. */
export function tryReadFile(path: string): Uint8Array | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    return readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function describeModules(core: Core, mem: ProcMemory, pid: number, maps: Mapping[]): string {
  const parts: string[] = [];
  for (const mod of listModules(maps)) {
    if (!mod.mappings.some((m) => m.exec)) continue;
    let id = "unreadable";
    try {
      const img = readModuleImage(core, mem, pid, mod);
      id = img.info.buildId ?? "no build-id";
      img.close();
    } catch {
      // listed as unreadable
    }
    parts.push(`${mod.path}${mod.deleted ? " (deleted)" : ""} ${id}`);
  }
  return parts.join("; ");
}

/**
 * Opens the process for a package built for `buildId` (read from `packageFile`; `pathHint`
 * is the package's target path, for messages). The returned module's image stays open:
 * closeTarget() releases it.
 */
export function openTarget(core: Core, pid: number, buildId: string, packageFile: string, pathHint?: string): TargetProcess {
  processState(pid);
  const maps = readProcessMaps(pid);
  let mem: ProcMemory;
  try {
    mem = new ProcMemory(pid);
  } catch (e) {
    if (!existsSync(`/proc/${pid}`)) throw new ApplyError("NO_PROCESS", processSubject(pid), "no such process (it exited)");
    throw noPermission(pid, `/proc/${pid}/mem`, (e as Error).message.replace(/.*: /, ""));
  }
  let module: LoadedModule | undefined;
  let exe: LoadedModule | undefined;
  try {
    try {
      module = findModuleByBuildId(core, mem, pid, maps, buildId);
    } catch (e) {
      if (!existsSync(`/proc/${pid}`)) throw new ApplyError("NO_PROCESS", processSubject(pid), "exited while being read");
      throw e;
    }
    if (!module) {
      const hint = pathHint ? ` (built for ${pathHint})` : "";
      throw new ApplyError(
        "WRONG_BUILD",
        processSubject(pid),
        `the package ${packageFile} is for build-id ${buildId}${hint}, and no module mapped in the process has it; mapped: ${describeModules(core, mem, pid, maps)}`,
      );
    }
    exe = findExecutable(core, mem, pid, maps, module);
    let linkMap: TargetProcess["linkMap"] = [];
    if (exe && exe.image.segments().some((s) => s.type === PT_DYNAMIC)) {
      try {
        linkMap = readLinkMap(mem, exe);
      } catch (e) {
        // A static executable, or one whose ld.so has not run yet: no link_map; a
        // dynamic reference then fails to resolve, naming this.
        linkMap = [];
        void e;
      }
    }
    return { pid, maps, module, linkMap };
  } catch (e) {
    module?.image.close();
    throw e;
  } finally {
    if (exe && exe !== module) exe.image.close();
    mem.close();
  }
}

/** Releases what openTarget() holds (the module's image in core memory). */
export function closeTarget(target: TargetProcess): void {
  target.module.image.close();
}
