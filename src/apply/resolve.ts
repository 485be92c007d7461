// Every reference of a package bound to one definite thing in the running process,
// before anything is touched (docs/format.md, "References"). The rules, per binding:
//
//   direct, module   the module's symbol at `addr` + load bias, checked against the
//                    module's symbol table (its file's .symtab, or its debug file found
//                    by build-id): the name, and for a static (a local) the file and
//                    position (sympos), must be a symbol at exactly that address.
//   direct, dynamic  ld.so's lookup over the process's global scope: the link_map order
//                    (executable, LD_PRELOAD objects, DT_NEEDED breadth-first, then
//                    dlopen()ed ones), each module's .dynsym read from the target's memory,
//                    with symbol versions (src/core/symbols.ts lookupInScope). An undefined
//                    weak reference binds to 0, as ld.so binds it.
//   direct, patch    the symbol of an earlier patch (the caller knows where it is).
//   got / plt        the target's own slot / PLT entry + load bias: what ld.so bound there
//                    (interposition, LD_PRELOAD, IFUNC) is what the new code then uses.
//   tls              the variable's module id and the thread-pointer offset of its block.
//
// IFUNC (STT_GNU_IFUNC: memcpy, strlen, ... in glibc): the symbol's value is a resolver
// that returns the implementation for this CPU. The new code must call what the target
// calls, so: first a GOT slot some loaded module has for that symbol that ld.so has
// already bound (GLOB_DAT always is; a JUMP_SLOT is once called, or with BIND_NOW) and
// that points into the defining module's code; otherwise the resolver is called inside
// the target (Tracer.call: a function call on a stopped thread, registers restored).
// glibc's x86-64 dl-irel.h calls a resolver with no arguments (elf_ifunc_invoke).
//
// TLS on x86-64 (psABI "Thread-Local Storage", variant II, Drepper "ELF Handling For
// Thread-Local Storage" https://www.akkadia.org/drepper/tls.pdf 3.4.6): the thread pointer
// (%fs base) points at the TCB; static TLS blocks lie below it. The executable's block is
// module 1 and comes first, right below the TCB:
//     tpoff(exe block) = -(alignUp(p_memsz - firstbyte, p_align) + firstbyte)
//     firstbyte = -(p_vaddr mod p_align) mod p_align    (0 for every linker we know)
// which is glibc's _dl_determine_tlsoffset for the first module (elf/dl-tls.c,
// TLS_TCB_AT_TP). A library's block offset and module id are what ld.so chose at load
// time; they live in its struct link_map, in this field order (glibc include/link.h,
// unchanged since 2.3):
//     void *l_tls_initimage; size_t l_tls_initimage_size; size_t l_tls_blocksize;
//     size_t l_tls_align; size_t l_tls_firstbyte_offset; ptrdiff_t l_tls_offset;
//     size_t l_tls_modid;
// The offset of that group inside the private part of link_map differs between glibc
// builds, so it is found, not assumed: the five words that must equal the module's own
// PT_TLS facts (image address, p_filesz, p_memsz, p_align, firstbyte) are searched for
// in the first bytes of its link_map, and the two after them are read. l_tls_offset 0
// (NO_TLS_OFFSET) or -1 (FORCED_DYNAMIC_TLS_OFFSET) means the block is dynamic
// (dlopen()ed): no fixed thread-pointer offset. Where the fields cannot be found, the
// module's own TPOFF64 / DTPMOD64 GOT slots, as ld.so filled them, give the same facts:
//     TPOFF64  slot = S + A - l_tls_offset   (elf/dl-machine.h, x86-64)
//     DTPMOD64 slot = l_tls_modid
import { existsSync, readdirSync } from "node:fs";
import type { Core } from "../core/instance.js";
import type { ElfReader } from "../core/elf.js";
import { LookupFlags, SymbolIndex, SymbolTable, lookupInScope, R_X86_64_DTPMOD64, R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE, R_X86_64_JUMP_SLOT, R_X86_64_TPOFF64, type Binding as SymBinding, type ScopeEntry } from "../core/symbols.js";
import { ElfReader as Elf } from "../core/elf.js";
import type { ReadPackage } from "../format/reader.js";
import type { Reference } from "../format/model.js";
import { describeName } from "../format/model.js";
import type { Tracer } from "../shim/index.js";
import type { Binding, ResolvedReference, TargetProcess } from "./contract.js";
import { ApplyError, processSubject } from "./errors.js";
import type { Mapping } from "./maps.js";
import { listModules, readModuleImage, type LinkMapEntry, type ProcessModule } from "./modules.js";
import { ProcMemory } from "./proc-memory.js";
import { debugFileCandidates, moduleFileCandidates, tryReadFile } from "./target.js";

export interface ResolveOptions {
  /** a tracer attached to the target, for calling IFUNC resolvers; without one, a tracer is opened for that */
  tracer?: Tracer;
  /** where an earlier patch's symbol is (scope patch); undefined when it has none of that name */
  patchSymbol?: (patchId: string, name: string) => bigint | undefined;
  /** where debug files are looked up by build-id (DIR/.build-id/xx/rest.debug), in the target's root and then the host's; default /usr/lib/debug */
  debugDirs?: string[];
}

const PT_INTERP = 3;
const PT_TLS = 7;
const STB_LOCAL = 0;
const STT_TLS = 6;
const SHN_UNDEF = 0;
const LINK_MAP_SCAN = 2048;

const hex = (v: bigint): string => "0x" + BigInt.asUintN(64, v).toString(16);
const u64 = (b: Uint8Array, o = 0): bigint => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(o, true);
const i64 = (v: bigint): bigint => BigInt.asIntN(64, v);

/** The module's symbols from a file: its own .symtab, or its debug file's. */
interface SymbolSource {
  elf: ElfReader;
  index: SymbolIndex;
  file: string;
}

/** A module of the lookup scope: its link_map entry and its image read from memory. */
interface ScopeModule {
  entry: LinkMapEntry;
  mod: ProcessModule;
  image: ElfReader;
  index?: SymbolIndex;
  name: string;
}

// Images and .dynsym indexes of the lookup scope's modules, kept across calls (apply --all
// resolves the same libraries in many processes). What is kept is what does not depend on
// the process: the module's read-only tables (.dynsym, .dynstr, hashes, versions, the
// relocation tables naming its slots), read at link-time addresses; every address is then
// made with this process's own l_addr, and slot contents are read from this process. An
// entry is used only for the same file (device, inode, path, mapping layout) whose first
// page (ELF header, program headers, the build-id note) reads the same in this process.
// Entries in use by a running resolveReferences (several may run at once: apply --all)
// are never closed; eviction happens when a call ends.
interface CachedModule {
  head: Uint8Array;
  image: ElfReader;
  index?: SymbolIndex;
  users: number;
  dropped: boolean; // out of the cache, closed once its last user is done
}
const MODULE_CACHE_MAX = 128;
const moduleCaches = new WeakMap<Core, Map<string, CachedModule>>();
// The patched module's symbol table by build-id (its file or debug file was checked to have it).
const symbolCaches = new WeakMap<Core, Map<string, SymbolSource & { users: number }>>();
const SYMBOL_CACHE_MAX = 16;

function moduleKey(mod: ProcessModule): string {
  return `${mod.mappings[0]?.dev}:${mod.inode}:${mod.path}:${mod.mappings.map((m) => `${m.start - mod.start}/${m.end - m.start}/${m.offset}`).join(",")}`;
}

function evictOldest<T extends { users: number }>(cache: Map<string, T>, max: number, close: (v: T) => void): void {
  for (const [k, v] of [...cache]) {
    if (cache.size <= max) return;
    if (v.users > 0) continue;
    cache.delete(k);
    close(v);
  }
}

function closeModule(c: CachedModule): void {
  c.index?.close();
  c.image.close();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Drops what resolve keeps between calls (images, indexes, symbol tables) for `core`. */
export function clearResolveCache(core: Core): void {
  const mods = moduleCaches.get(core);
  if (mods) evictOldest(mods, 0, closeModule);
  const syms = symbolCaches.get(core);
  if (syms)
    evictOldest(syms, 0, (v) => {
      v.index.close();
      v.elf.close();
    });
}

interface TlsFacts {
  module: bigint;
  blockTpoff?: bigint;
  how: string;
}

function refName(r: Reference): string {
  return r.version ? `${r.name}@${r.version}` : r.name;
}

function moduleName(m: { path: string; deleted?: boolean }): string {
  return `${m.path}${m.deleted ? " (deleted)" : ""}`;
}

function inMappings(maps: Mapping[], addr: bigint, exec: boolean): boolean {
  return maps.some((m) => addr >= m.start && addr < m.end && (!exec || m.exec));
}

class Resolver {
  private mem: ProcMemory;
  private symbols?: (SymbolSource & { users: number }) | null;
  private usedModules = new Set<CachedModule>();
  private scopeMods?: ScopeModule[];
  private scopeEntries?: ScopeEntry[];
  private moduleDyn?: SymbolIndex | null;
  private tlsCache = new Map<bigint, TlsFacts>();
  private ownTracer?: Tracer;
  private notes: string[] = [];
  readonly subject: string;

  constructor(
    private readonly core: Core,
    private readonly target: TargetProcess,
    private readonly pkg: ReadPackage,
    private readonly opts: ResolveOptions,
  ) {
    this.subject = processSubject(target.pid);
    try {
      this.mem = new ProcMemory(target.pid);
    } catch (e) {
      throw new ApplyError("NO_PROCESS", this.subject, (e as Error).message);
    }
  }

  async close(): Promise<void> {
    this.mem.close();
    this.moduleDyn?.close();
    for (const s of this.scopeMods ?? []) {
      // the patched module's own index is ours; the others belong to the cache
      if (s.image === this.target.module.image) s.index?.close();
    }
    for (const c of this.usedModules) {
      c.users--;
      if (c.dropped && c.users === 0) closeModule(c);
    }
    if (this.symbols) this.symbols.users--;
    const mods = moduleCaches.get(this.core);
    if (mods) evictOldest(mods, MODULE_CACHE_MAX, closeModule);
    const syms = symbolCaches.get(this.core);
    if (syms)
      evictOldest(syms, SYMBOL_CACHE_MAX, (v) => {
        v.index.close();
        v.elf.close();
      });
    if (this.ownTracer) await this.ownTracer.close().catch(() => undefined);
  }

  private fail(r: Reference, reason: string): never {
    throw new ApplyError("UNRESOLVED", this.subject, `reference ${describeName(refName(r), r.local)} (${r.bind}, scope ${r.scope}) of ${this.pkg.file}: ${reason}`);
  }

  private get bias(): bigint {
    return this.target.module.bias;
  }

  private get modName(): string {
    return moduleName(this.target.module.module);
  }

  private readU64(addr: bigint): bigint {
    return u64(this.mem.read(addr, 8));
  }

  // ---- the module's symbol table ----

  /** .symtab of the module's file or its debug file (matching build-id), or null when neither is at hand. */
  private moduleSymbols(): SymbolSource | null {
    if (this.symbols !== undefined) return this.symbols;
    const id = this.target.module.image.info.buildId!;
    let cache = symbolCaches.get(this.core);
    if (!cache) symbolCaches.set(this.core, (cache = new Map()));
    const hit = cache.get(id);
    if (hit) {
      hit.users++;
      return (this.symbols = hit);
    }
    const files = [...moduleFileCandidates(this.target.pid, this.target.module.module), ...debugFileCandidates(this.target.pid, id, this.opts.debugDirs)];
    for (const file of files) {
      const bytes = tryReadFile(file);
      if (!bytes) continue;
      let elf: ElfReader;
      try {
        elf = new Elf(this.core, bytes, file);
      } catch {
        continue;
      }
      if (elf.info.buildId !== id || !elf.info.hasSymtab) {
        elf.close();
        continue;
      }
      this.symbols = { elf, index: new SymbolIndex(this.core, elf, SymbolTable.SYMTAB), file, users: 1 };
      cache.set(id, this.symbols);
      return this.symbols;
    }
    return (this.symbols = null);
  }

  /** The module's .dynsym read from its image in memory. */
  private moduleDynsym(): SymbolIndex | null {
    if (this.moduleDyn !== undefined) return this.moduleDyn;
    try {
      return (this.moduleDyn = this.target.module.image.info.hasDynsym ? new SymbolIndex(this.core, this.target.module.image, SymbolTable.DYNSYM) : null);
    } catch {
      return (this.moduleDyn = null);
    }
  }

  /** The symbol file for people: the mapped file itself, or a path (the target's root and ours are the same place for this). */
  private static sourceName(file: string): string {
    if (/^\/proc\/\d+\/map_files\//.test(file)) return "the mapped file's .symtab";
    return file.replace(/^\/proc\/\d+\/root(?=\/)/, "");
  }

  /** Checks that the module's symbol table has `r` at link-time `addr`; returns words for `how`. */
  private checkModuleSymbol(r: Reference, addr: bigint): string {
    const src = this.moduleSymbols();
    if (src) {
      const where = Resolver.sourceName(src.file);
      if (r.local) {
        const id = src.index.findLocal(r.name, { file: r.local.file, sympos: r.local.sympos });
        if (id === undefined) this.fail(r, `${where} has no local symbol ${r.name} of ${r.local.file} at position ${r.local.sympos}`);
        const s = src.index.get(id);
        if (s.value !== addr) this.fail(r, `the package has it at ${hex(addr)}, ${where} at ${hex(s.value)}`);
        return `checked in ${where}`;
      }
      const ids = src.index.findAll(r.name);
      if (ids.length === 0) this.fail(r, `${where} has no symbol ${r.name}`);
      const syms = ids.map((i) => src.index.get(i)).filter((s) => s.defined);
      if (!syms.some((s) => s.value === addr && s.bind !== STB_LOCAL) && !syms.some((s) => s.value === addr)) {
        this.fail(r, `the package has it at ${hex(addr)}, ${where} at ${syms.map((s) => hex(s.value)).join(", ") || "no defined address"}`);
      }
      return `checked in ${where}`;
    }
    // No symbol table at hand (stripped, no debug file): .dynsym covers exported symbols.
    const dyn = this.moduleDynsym();
    const id = !r.local && dyn ? dyn.find(r.name) : undefined;
    if (dyn && id !== undefined) {
      const s = dyn.get(id);
      if (s.defined && s.value !== addr) this.fail(r, `the package has it at ${hex(addr)}, the module's .dynsym at ${hex(s.value)}`);
      return "checked in its .dynsym";
    }
    this.notes.push(`${this.modName}: no symbol table (stripped, no debug file): ${r.name} taken at the package's address, trusting the build-id`);
    return "unchecked: no symbol table (stripped, no debug file under /usr/lib/debug/.build-id), trusted by build-id";
  }

  // ---- the lookup scope ----

  private scope(): { mods: ScopeModule[]; entries: ScopeEntry[] } {
    if (this.scopeMods && this.scopeEntries) return { mods: this.scopeMods, entries: this.scopeEntries };
    const mods: ScopeModule[] = [];
    const all = listModules(this.target.maps);
    for (const entry of this.target.linkMap) {
      const mod = all.find((m) => m.mappings.some((x) => entry.ld >= x.start && entry.ld < x.end));
      if (!mod) continue; // not mapped (should not happen for a live link_map)
      const name = entry.name || moduleName(mod);
      if (mod.start === this.target.module.module.start) {
        const image = this.target.module.image;
        const sm: ScopeModule = { entry, mod, image, name };
        try {
          if (image.info.hasDynsym) sm.index = new SymbolIndex(this.core, image, SymbolTable.DYNSYM);
        } catch {
          // a module whose .dynsym cannot be read defines nothing for the lookup
        }
        mods.push(sm);
        continue;
      }
      const c = this.cachedModule(mod);
      if (c) mods.push({ entry, mod, image: c.image, index: c.index, name });
    }
    this.scopeMods = mods;
    this.scopeEntries = mods.filter((m) => m.index).map((m) => ({ index: m.index!, bias: m.entry.addr }));
    return { mods, entries: this.scopeEntries };
  }

  /** A module's image and .dynsym index, from the cache when this process maps the same file. */
  private cachedModule(mod: ProcessModule): CachedModule | undefined {
    let cache = moduleCaches.get(this.core);
    if (!cache) moduleCaches.set(this.core, (cache = new Map()));
    const key = moduleKey(mod);
    const first = mod.mappings[0];
    let head: Uint8Array;
    try {
      head = this.mem.read(first.start, Math.min(4096, Number(first.end - first.start)));
    } catch {
      return undefined;
    }
    const hit = cache.get(key);
    if (hit && sameBytes(hit.head, head)) {
      cache.delete(key); // most recently used last
      cache.set(key, hit);
      if (!this.usedModules.has(hit)) {
        hit.users++;
        this.usedModules.add(hit);
      }
      return hit;
    }
    let image: ElfReader;
    try {
      image = readModuleImage(this.core, this.mem, this.target.pid, mod);
    } catch {
      return undefined;
    }
    const c: CachedModule = { head, image, users: 1, dropped: false };
    try {
      if (image.info.hasDynsym) c.index = new SymbolIndex(this.core, image, SymbolTable.DYNSYM);
    } catch {
      // a module whose .dynsym cannot be read defines nothing for the lookup
    }
    if (hit) {
      // another file under the same identity (an inode reused): the old entry goes
      cache.delete(key);
      hit.dropped = true;
      if (hit.users === 0) closeModule(hit);
    }
    cache.set(key, c);
    this.usedModules.add(c);
    return c;
  }

  private scopeModuleOf(b: SymBinding): ScopeModule {
    return this.scope().mods.filter((m) => m.index)[b.position];
  }

  // ---- TLS ----

  /** The TLS facts (module id, block offset) of a module, from its link_map entry, ld.so's GOT slots, or (executable) the psABI. */
  private tlsOf(mod: ProcessModule, image: ElfReader, bias: bigint, entry: LinkMapEntry | undefined, isExe: boolean, dyn: SymbolIndex | undefined | null): TlsFacts | string {
    const cached = this.tlsCache.get(mod.start);
    if (cached) return cached;
    const tls = image.segments().find((s) => s.type === PT_TLS);
    if (!tls) return `${moduleName(mod)} has no TLS segment (PT_TLS)`;
    const align = tls.align > 0n ? tls.align : 1n;
    const firstbyte = (align - (tls.vaddr & (align - 1n))) & (align - 1n);
    const fromMap = entry ? this.tlsFromLinkMap(entry, tls, bias) : undefined;
    let facts: TlsFacts | undefined;
    if (isExe) {
      const tpoff = -((((tls.memsz - firstbyte + align - 1n) / align) * align) + firstbyte);
      if (fromMap && (fromMap.modid !== 1n || fromMap.tpoff !== tpoff)) {
        return `the executable's TLS block is at tpoff ${tpoff} module 1 by the psABI, but its link_map says tpoff ${fromMap.tpoff} module ${fromMap.modid}`;
      }
      facts = { module: 1n, blockTpoff: tpoff, how: `the executable's TLS block (module 1, at tp${tpoff}: psABI variant II${fromMap ? ", as its link_map says" : ""})` };
    } else if (fromMap) {
      facts = {
        module: fromMap.modid,
        blockTpoff: fromMap.tpoff,
        how: `the TLS block of ${moduleName(mod)} (module ${fromMap.modid}, ${fromMap.tpoff === undefined ? "dynamic" : `at tp${fromMap.tpoff}`}: its link_map)`,
      };
    } else if (dyn) {
      // ld.so's own values in the module's TPOFF64 / DTPMOD64 slots.
      let modid: bigint | undefined;
      let tpoff: bigint | undefined;
      for (const s of dyn.slots()) {
        if (s.type !== R_X86_64_TPOFF64 && s.type !== R_X86_64_DTPMOD64) continue;
        let symValue = 0n;
        if (s.symbol > 0) {
          const sym = dyn.get(s.symbol);
          if (sym.shndx === SHN_UNDEF || sym.type !== STT_TLS) continue; // another module's variable
          symValue = sym.value;
        }
        const v = this.readU64(bias + s.address);
        if (s.type === R_X86_64_DTPMOD64) modid ??= v;
        else tpoff ??= i64(v - symValue - s.addend);
      }
      if (modid === undefined && tpoff === undefined) return `neither ${moduleName(mod)}'s link_map nor its GOT slots tell its TLS block`;
      if (modid === undefined) return `${moduleName(mod)}'s GOT slots give its TLS block's offset (tp${tpoff}) but not its module id`;
      facts = { module: modid, blockTpoff: tpoff, how: `the TLS block of ${moduleName(mod)} (module ${modid}, ${tpoff === undefined ? "dynamic" : `at tp${tpoff}`}: its GOT slots as ld.so filled them)` };
    } else {
      return `${moduleName(mod)}'s TLS block cannot be found (no link_map entry, no .dynsym)`;
    }
    this.tlsCache.set(mod.start, facts);
    return facts;
  }

  /** l_tls_offset / l_tls_modid of a link_map entry, found by the module's own PT_TLS facts (see the top of the file). */
  private tlsFromLinkMap(entry: LinkMapEntry, tls: { vaddr: bigint; filesz: bigint; memsz: bigint; align: bigint }, bias: bigint): { modid: bigint; tpoff?: bigint } | undefined {
    let bytes: Uint8Array | undefined;
    for (let len = LINK_MAP_SCAN; len >= 256 && !bytes; len /= 2) {
      try {
        bytes = this.mem.read(entry.map, len);
      } catch {
        // near the end of a mapping: try less
      }
    }
    if (!bytes) return undefined;
    const firstbyte = tls.align > 0n ? tls.vaddr & (tls.align - 1n) : 0n;
    for (let o = 40; o + 56 <= bytes.length; o += 8) {
      const img = u64(bytes, o);
      if ((img !== bias + tls.vaddr && img !== tls.vaddr) || u64(bytes, o + 8) !== tls.filesz || u64(bytes, o + 16) !== tls.memsz) continue;
      if (u64(bytes, o + 24) !== tls.align || u64(bytes, o + 32) !== firstbyte) continue;
      const off = i64(u64(bytes, o + 40));
      const modid = u64(bytes, o + 48);
      if (modid === 0n || modid > 1n << 20n) continue;
      return { modid, tpoff: off === 0n || off === -1n ? undefined : -off };
    }
    return undefined;
  }

  private isExecutable(mod: ProcessModule, image: ElfReader): boolean {
    const head = this.target.linkMap[0];
    if (head) return mod.mappings.some((m) => head.ld >= m.start && head.ld < m.end);
    return image.info.type === 2 || image.segments().some((s) => s.type === PT_INTERP);
  }

  private entryOf(mod: ProcessModule): LinkMapEntry | undefined {
    return this.target.linkMap.find((e) => mod.mappings.some((m) => e.ld >= m.start && e.ld < m.end));
  }

  private resolveTls(r: Reference): { binding: Binding; how: string } {
    const tlsRef = r.tls!;
    let facts: TlsFacts | string;
    let offset = tlsRef.offset;
    let where: string;
    if (r.scope === "module") {
      const m = this.target.module;
      facts = this.tlsOf(m.module, m.image, m.bias, this.entryOf(m.module), this.isExecutable(m.module, m.image), this.moduleDynsym());
      where = this.modName;
    } else if (r.scope === "dynamic") {
      const b = this.lookup(r);
      if (!b) this.fail(r, `no module in the process's search order defines ${refName(r)} (${this.searched()})`);
      if (b.kind !== "tls") this.fail(r, `${refName(r)} is a ${b.kind} in ${this.scopeModuleOf(b).name}, not a TLS variable`);
      const sm = this.scopeModuleOf(b);
      facts = this.tlsOf(sm.mod, sm.image, sm.entry.addr, sm.entry, this.isExecutable(sm.mod, sm.image), sm.index);
      offset = b.value;
      where = sm.name;
    } else {
      this.fail(r, "a TLS variable of an earlier patch: a patch has no TLS");
    }
    if (typeof facts === "string") this.fail(r, facts);
    let blockTpoff = facts.blockTpoff;
    let how = `${r.name} at +${offset} in ${facts.how}`;
    // Initial exec through the target's own TPOFF slot: what ld.so wrote there is the truth.
    if (r.gotSlot !== undefined && r.scope === "module") {
      const slot = this.bias + r.gotSlot;
      const v = i64(this.readU64(slot));
      if (blockTpoff !== undefined && v !== blockTpoff + offset) {
        this.fail(r, `its TPOFF GOT slot ${hex(slot)} holds tp${v}, but its block at tp${blockTpoff} + ${offset} gives tp${blockTpoff + offset}`);
      }
      blockTpoff = v - offset;
      how += `; TPOFF slot ${hex(slot)} agrees`;
    }
    if ((tlsRef.model === "ie" || tlsRef.model === "le") && blockTpoff === undefined) {
      this.fail(r, `accessed as ${tlsRef.model.toUpperCase()} (a fixed thread-pointer offset), but ${where}'s TLS block is dynamic (dlopen()ed)`);
    }
    return { binding: { kind: "tls", module: facts.module, offset, ...(blockTpoff !== undefined ? { blockTpoff } : {}) }, how };
  }

  // ---- dynamic lookup ----

  private lookup(r: Reference): SymBinding | undefined {
    const { entries } = this.scope();
    if (entries.length === 0) return undefined;
    return lookupInScope(this.core, entries, refName(r), r.type === "object" ? LookupFlags.DATA : LookupFlags.NONE);
  }

  private searched(): string {
    const { mods } = this.scope();
    if (mods.length === 0) return "the process has no link_map: a static executable, or ld.so has not run";
    return `searched ${mods.map((m) => m.name || "the executable").join(", ")}`;
  }

  private async resolveDynamic(r: Reference): Promise<{ binding: Binding; how: string }> {
    const b = this.lookup(r);
    if (!b) {
      const sym = this.pkg.model.symbols[r.symbol];
      if (sym?.bind === "weak") return { binding: { kind: "addr", addr: 0n }, how: `${refName(r)}: undefined weak, no module defines it: 0, as ld.so binds it` };
      this.fail(r, `no module in the process's search order defines ${refName(r)}${r.library ? ` (expected in ${r.library})` : ""} (${this.searched()})`);
    }
    const sm = this.scopeModuleOf(b);
    const def = `${refName(r)} in ${sm.name}`;
    if (b.kind === "tls") this.fail(r, `${def} is a TLS variable, but the package binds it as an address`);
    if (b.kind === "ifunc") {
      const { addr, how } = await this.resolveIfunc(r, b.resolver!, sm);
      return { binding: { kind: "addr", addr }, how: `${def} (IFUNC: ${how})` };
    }
    return { binding: { kind: "addr", addr: b.address! }, how: `${def} at ${hex(b.address!)}${b.weak ? " (weak)" : ""}` };
  }

  /** The implementation an IFUNC resolves to in this process: a bound GOT slot, else the resolver called in the target. */
  private async resolveIfunc(r: Reference, resolver: bigint, defining: { mod: ProcessModule; name: string }): Promise<{ addr: bigint; how: string }> {
    const code = defining.mod.mappings.filter((m) => m.exec);
    const ref = refName(r);
    const candidates: Array<{ index: SymbolIndex; bias: bigint; name: string; sameModule: boolean }> = [];
    for (const m of this.scope().mods) if (m.index) candidates.push({ index: m.index, bias: m.entry.addr, name: m.name, sameModule: m.mod.start === defining.mod.start });
    if (!this.scope().mods.some((m) => m.mod.start === this.target.module.module.start)) {
      const dyn = this.moduleDynsym();
      if (dyn) candidates.push({ index: dyn, bias: this.bias, name: this.modName, sameModule: this.target.module.module.start === defining.mod.start });
    }
    for (const c of candidates) {
      let slots;
      try {
        slots = c.index.slotsOf(ref);
      } catch {
        continue;
      }
      for (const s of slots) {
        // A JUMP_SLOT not yet called holds its own PLT stub; in the defining module itself
        // that stub is in the same code, so only its GLOB_DAT slots count there.
        if (s.type !== R_X86_64_GLOB_DAT && !(s.type === R_X86_64_JUMP_SLOT && !c.sameModule)) continue;
        const slot = c.bias + s.address;
        let v: bigint;
        try {
          v = this.readU64(slot);
        } catch {
          continue;
        }
        if (v === resolver || !inMappings(code, v, true)) continue;
        return { addr: v, how: `${hex(v)}, as the ${s.type === R_X86_64_GLOB_DAT ? "GLOB_DAT" : "JUMP_SLOT"} slot ${hex(slot)} of ${c.name} holds it` };
      }
    }
    // An IFUNC of the module being patched, called from inside it: ld.so resolved its
    // IRELATIVE slots (addend = the resolver's link-time address) at load time.
    if (defining.mod.start === this.target.module.module.start) {
      const dyn = this.moduleDynsym();
      const want = resolver - this.bias;
      for (const s of dyn ? dyn.slots() : []) {
        if (s.type !== R_X86_64_IRELATIVE || s.addend !== want) continue;
        const slot = this.bias + s.address;
        const v = this.readU64(slot);
        if (v === resolver || !inMappings(code, v, true)) continue;
        return { addr: v, how: `${hex(v)}, as the IRELATIVE slot ${hex(slot)} of ${this.modName} holds it` };
      }
    }
    // No module has it bound: ask the resolver, in the target.
    let tracer = this.opts.tracer ?? this.ownTracer;
    if (!tracer) {
      const { Tracer } = await import("../shim/index.js");
      this.ownTracer = tracer = Tracer.open({ core: this.core });
      try {
        await tracer.attach(this.target.pid);
      } catch (e) {
        this.fail(r, `its IFUNC resolver must run in the target, and attaching failed: ${(e as Error).message}`);
      }
    }
    if (typeof (tracer as Partial<Tracer>).call !== "function") this.fail(r, "its IFUNC resolver must run in the target, and this tracer cannot call functions");
    let v: bigint | undefined;
    // In the main thread; in another one if that has exited (a process lives on while any thread does).
    const tids = [this.target.pid, ...taskIds(this.target.pid).filter((t) => t !== this.target.pid)];
    for (const tid of tids) {
      try {
        v = await tracer.call(tid, resolver, [], { timeoutMs: 1000 });
        break;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if ((code === "NO_SUCH_THREAD" || code === "THREAD_EXITED" || code === "ESRCH") && tid !== tids[tids.length - 1]) continue;
        this.fail(r, `calling its IFUNC resolver ${hex(resolver)} in the target failed: ${(e as Error).message}`);
      }
    }
    if (v === undefined) this.fail(r, `its IFUNC resolver ${hex(resolver)} could not be called: the process has no thread left`);
    if (!inMappings(this.target.maps, v, true)) this.fail(r, `its IFUNC resolver ${hex(resolver)} returned ${hex(v)}, which is not in executable memory`);
    return { addr: v, how: `${hex(v)}, as its resolver ${hex(resolver)} returned when called in the target (no module has it bound yet)` };
  }

  // ---- one reference ----

  async resolve(i: number, r: Reference): Promise<ResolvedReference> {
    const one = async (): Promise<{ binding: Binding; how: string }> => {
      if (r.bind === "tls") return this.resolveTls(r);
      if (r.bind === "got") {
        const slot = this.bias + r.gotSlot!;
        if (!inMappings(this.target.module.module.mappings, slot, false) || !inMappings(this.target.module.module.mappings, slot + 7n, false)) {
          this.fail(r, `its GOT slot ${hex(slot)} is not in the memory of ${this.modName}`);
        }
        return { binding: { kind: "got", slot }, how: `GOT slot ${hex(slot)} of ${this.modName} (for ${refName(r)}; holds ${hex(this.readU64(slot))} now)` };
      }
      if (r.bind === "plt") {
        const addr = this.bias + r.pltEntry!;
        if (!inMappings(this.target.module.module.mappings, addr, true)) this.fail(r, `its PLT entry ${hex(addr)} is not in the code of ${this.modName}`);
        return { binding: { kind: "plt", addr }, how: `PLT entry ${hex(addr)} of ${this.modName} (for ${refName(r)})` };
      }
      // direct
      if (r.scope === "patch") {
        const v = this.opts.patchSymbol?.(r.patch!, r.name);
        if (v === undefined) this.fail(r, `patch ${r.patch} is not applied in the process, or defines no ${r.name}`);
        return { binding: { kind: "addr", addr: v }, how: `${r.name} of patch ${r.patch} at ${hex(v)}` };
      }
      if (r.scope === "dynamic") return this.resolveDynamic(r);
      const checked = this.checkModuleSymbol(r, r.addr!);
      const addr = this.bias + r.addr!;
      if (r.type === "ifunc") {
        const { addr: impl, how } = await this.resolveIfunc(r, addr, { mod: this.target.module.module, name: this.modName });
        return { binding: { kind: "addr", addr: impl }, how: `${describeName(r.name, r.local)} of ${this.modName} (IFUNC, ${checked}: ${how})` };
      }
      return { binding: { kind: "addr", addr }, how: `${describeName(r.name, r.local)} at ${hex(addr)} in ${this.modName} (${hex(r.addr!)} + bias ${hex(this.bias)}, ${checked})` };
    };
    const { binding, how } = await one();
    return { reference: i, binding, how };
  }
}

/**
 * One ResolvedReference per `pkg.model.references` entry, in order. Throws ApplyError
 * UNRESOLVED naming the process, the reference and why. Reads the target (memory,
 * /proc/PID/root, map_files) and, for an IFUNC no module has bound yet, calls its
 * resolver in the target (through `opts.tracer`, or a tracer of its own).
 * The second argument may also be the tracer itself.
 */
export async function resolveReferences(core: Core, target: TargetProcess, pkg: ReadPackage, opts: ResolveOptions | Tracer = {}): Promise<ResolvedReference[]> {
  const o: ResolveOptions = isTracer(opts) ? { tracer: opts } : opts;
  const r = new Resolver(core, target, pkg, o);
  const refs = pkg.model.references;
  let i = 0;
  try {
    const out: ResolvedReference[] = [];
    for (; i < refs.length; i++) out.push(await r.resolve(i, refs[i]));
    return out;
  } catch (e) {
    if (e instanceof ApplyError) throw e;
    // Reading the target failed: it exited meanwhile, or its memory is not what we read.
    if (!existsSync(`/proc/${target.pid}/stat`)) throw new ApplyError("NO_PROCESS", r.subject, "exited while its references were being resolved");
    const ref = refs[i];
    throw new ApplyError("UNRESOLVED", r.subject, `reference ${ref ? describeName(ref.name, ref.local) : i} of ${pkg.file}: ${(e as Error).message}`);
  } finally {
    await r.close();
  }
}

/** The thread ids of a process (/proc/PID/task), empty when it is gone. */
function taskIds(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter((n) => n > 0);
  } catch {
    return [];
  }
}

function isTracer(x: unknown): x is Tracer {
  return typeof x === "object" && x !== null && typeof (x as { attach?: unknown }).attach === "function";
}
