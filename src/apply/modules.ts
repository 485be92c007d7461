// The modules of a live process (the executable, its shared libraries, the vDSO), found
// from /proc/PID/maps and identified by the GNU build-id read from the target itself,
// never by path: an upgraded library shows as "(deleted)", and a process in a container
// sees its own files. The image is read from the target's memory (from the start of
// the mapping that holds the ELF header to the end of the last mapping of the file),
// so what is matched is what runs.
import type { Core } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import type { Mapping } from "./maps.js";
import type { MemoryReader } from "./proc-memory.js";

export interface ProcessModule {
  path: string; // as the target sees it ("[vdso]" for the vDSO)
  deleted: boolean;
  inode: number;
  mappings: Mapping[];
  start: bigint; // start of the mapping at file offset 0 (the ELF header)
  end: bigint; // end of the module's last mapping
}

/** Groups file-backed mappings into modules: one per (path, inode) whose offset-0 mapping is present. */
export function listModules(maps: Mapping[]): ProcessModule[] {
  const out: ProcessModule[] = [];
  const byKey = new Map<string, ProcessModule>();
  for (const m of maps) {
    if (m.path === "[vdso]") {
      out.push({ path: m.path, deleted: false, inode: 0, mappings: [m], start: m.start, end: m.end });
      continue;
    }
    if (m.inode === 0 || !m.path.startsWith("/")) continue;
    const key = `${m.dev}:${m.inode}:${m.path}`;
    let mod = byKey.get(key);
    if (!mod) {
      if (m.offset !== 0n) continue; // a data file mapped at an offset, not the start of an ELF module
      mod = { path: m.path, deleted: m.deleted, inode: m.inode, mappings: [], start: m.start, end: m.end };
      byKey.set(key, mod);
      out.push(mod);
    }
    mod.mappings.push(m);
    if (m.end > mod.end) mod.end = m.end;
  }
  return out;
}

/** Reads a module's image (unreadable or unmapped pages as zeros) and opens it with the core's ELF reader. */
export function readModuleImage(core: Core, mem: MemoryReader, pid: number, mod: ProcessModule): ElfReader {
  const size = Number(mod.end - mod.start);
  const data = new Uint8Array(size);
  for (const m of mod.mappings) {
    if (!m.read) continue;
    data.set(mem.read(m.start, Number(m.end - m.start)), Number(m.start - mod.start));
  }
  return new ElfReader(core, data, `process ${pid}: ${mod.path}${mod.deleted ? " (deleted)" : ""}`, mod.start);
}

export interface LoadedModule {
  module: ProcessModule;
  image: ElfReader;
  /** Load bias: runtime address minus link-time address. */
  bias: bigint;
}

/**
 * The module with this build-id, or undefined. Images of the other modules are closed;
 * the caller closes the returned one. Modules whose image cannot be read or parsed are
 * skipped (a data file mapped executable, say), unless none matches: then the error says
 * which were unreadable.
 */
export function findModuleByBuildId(core: Core, mem: MemoryReader, pid: number, maps: Mapping[], buildId: string): LoadedModule | undefined {
  for (const mod of listModules(maps)) {
    if (!mod.mappings.some((m) => m.exec)) continue;
    let image: ElfReader;
    try {
      image = readModuleImage(core, mem, pid, mod);
    } catch {
      continue;
    }
    if (image.info.buildId === buildId) return { module: mod, image, bias: mod.start - image.info.firstVaddr };
    image.close();
  }
  return undefined;
}

export interface LinkMapEntry {
  addr: bigint; // l_addr: the load bias
  name: string; // l_name ("" for the executable)
  ld: bigint; // l_ld: runtime address of its dynamic section
  map: bigint; // address of the struct link_map itself
}

// struct r_debug (glibc <link.h>): int r_version; struct link_map *r_map (at 8); ...
// struct link_map: l_addr (0), l_name (8), l_ld (16), l_next (24), l_prev (32): the public prefix.
const DT_DEBUG = 21n;
const MAX_LINK_MAP = 65536;

/**
 * The target's link_map chain, in ld.so's load order: the executable, LD_PRELOAD objects,
 * then DT_NEEDED objects breadth-first, then dlopen()ed ones. That is the global lookup
 * scope for the initially loaded objects. Found through DT_DEBUG in the executable's
 * dynamic section, which ld.so fills with &_r_debug.
 */
export function readLinkMap(mem: MemoryReader & { readCString(addr: bigint, max?: number): string }, exe: LoadedModule): LinkMapEntry[] {
  const dyn = exe.image.dynamic();
  const ldAddr = exe.image.segments().find((s) => s.type === 2)?.vaddr;
  if (ldAddr === undefined) throw new Error(`${exe.image.name}: no PT_DYNAMIC: a static executable has no link_map`);
  // DT_DEBUG's value is read afresh from the target: ld.so writes it at start-up.
  const idx = dyn.findIndex((d) => d.tag === DT_DEBUG);
  if (idx < 0) throw new Error(`${exe.image.name}: no DT_DEBUG entry, cannot find the link_map`);
  const rdebug = new DataView(mem.read(exe.bias + ldAddr + BigInt(idx * 16) + 8n, 8).buffer).getBigUint64(0, true);
  if (rdebug === 0n) throw new Error(`${exe.image.name}: DT_DEBUG is 0 (ld.so has not run yet)`);
  let map = new DataView(mem.read(rdebug + 8n, 8).buffer).getBigUint64(0, true);
  const out: LinkMapEntry[] = [];
  const seen = new Set<bigint>();
  while (map !== 0n) {
    if (seen.has(map) || out.length >= MAX_LINK_MAP) throw new Error(`${exe.image.name}: the link_map chain loops at 0x${map.toString(16)}`);
    seen.add(map);
    const v = new DataView(mem.read(map, 40).buffer);
    const namePtr = v.getBigUint64(8, true);
    out.push({ map, addr: v.getBigUint64(0, true), name: namePtr ? mem.readCString(namePtr) : "", ld: v.getBigUint64(16, true) });
    map = v.getBigUint64(24, true);
  }
  return out;
}
