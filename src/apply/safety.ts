// Is it safe to redirect these functions now? The stack check of `patchc apply`,
// run inside the pause (ARCHITECTURE.md, "The two flows", step 6).
//
// Two levels (issue 6, "Safety has two levels"):
//   always      no thread's pc strictly inside an entry window (lo < pc < hi): it would
//               resume in the middle of the jump written there (pc == lo runs the new
//               jump, which is fine); the same for a return address (the callee would
//               return into the middle of it) and a signal frame's interrupted pc.
//   function    no frame (pc, or return address - 1) inside a function being replaced
//               (its forbidden ranges: the old function and its .cold/.part pieces, or
//               patch code about to be freed). The caller waits on the return address
//               of the OUTERMOST such frame (`returnAddr`, with the stack pointer it
//               returns with, `returnSp`): once that frame returned, no frame of the
//               thread is inside any of them any more, except by a new call, which
//               takes the new code.
//
// Unwinding is the core's (assembly/stack, docs/core-abi.md "Stack-scan analysis"):
// precise with DWARF CFI (.eh_frame) of every module mapped in the target, the
// conservative word scan (every aligned stack word taken as a return address) where
// precise unwinding fails. A conservative hit has no known return address (0n).
//
// Where the CFI comes from, for each module in /proc/PID/maps (System V gABI, and
// the LSB's .eh_frame_hdr):
//
//   module image in the target (from its offset-0 mapping)
//   +--------+--------+-- ... --+---------------+------------------+-- ...
//   | Ehdr   | Phdrs  |  text   | .eh_frame_hdr | .eh_frame ... 0  |
//   +--------+--------+-- ... --+---------------+------------------+-- ...
//   PT_GNU_EH_FRAME -> .eh_frame_hdr: u8 version(1) u8 eh_frame_ptr_enc
//                      u8 fde_count_enc u8 table_enc, eh_frame_ptr, fde_count, table
//   .eh_frame runs at most to the end of the PT_LOAD holding it (ld ends it with a
//   zero terminator).
//
// Everything is read from the target's memory (what runs: a "(deleted)" library, a
// container's files), before the target is stopped. Inside the pause only stack
// memory is read, through the tracer, in one request per round for all threads.
//
// A sigreturn trampoline without CFI (musl's, a static binary's or a program's own
// restorer: `mov $15,%rax; syscall`) is found by its bytes in the modules' text and
// declared to the core; glibc's __restore_rt has CFI with the 'S' augmentation.
//
// Specs: https://refspecs.linuxfoundation.org/LSB_5.0.0/LSB-Core-generic/LSB-Core-generic/ehframechpt.html
//        https://gitlab.com/x86-psABIs/x86-64-ABI (3.7 Stack Unwind Algorithm)
import { readFileSync } from "node:fs";
import type { Core } from "../core/instance.js";
import { CfiRegistry, StackScan, type ScanOptions, type StackSegment, type ThreadResult } from "../core/stack.js";
import type { Tracer, World, ThreadState } from "../shim/index.js";
import type { Range } from "./contract.js";
import { parseMaps, type Mapping } from "./maps.js";
import { listModules, type ProcessModule } from "./modules.js";
import { ProcMemory, type MemoryReader } from "./proc-memory.js";

export interface Blocker {
  tid: number;
  /** "window": a pc inside an entry window (always refused); "inside": a frame inside a forbidden range */
  kind: "window" | "inside";
  /** the entry window or forbidden range (for a thread that could not be analysed: a range named so, lo = hi = 0) */
  range: Range;
  /** the frame's pc (exact, or a return address; conservative: the stack word) */
  pc: bigint;
  /** "inside": where the outermost frame inside `range` returns to; 0n when unknown (conservative scan) */
  returnAddr: bigint;
  /** the stack pointer once it has returned (its CFA); 0n when unknown */
  returnSp: bigint;
  /** frame depth (0: the innermost); -1 for a stack word of the conservative scan */
  depth: number;
  /** how it was found, for messages: "precise", or "conservative: <why precise failed>" */
  how?: string;
}

export interface SafetyStats {
  threads: number;
  /** threads analysed by precise unwinding, and by the conservative scan */
  precise: number;
  conservative: number;
  /** rounds of stack reads through the tracer, and the bytes they brought */
  reads: number;
  bytesRead: number;
  /** why precise unwinding failed, per thread that fell back */
  fallbacks: Array<{ tid: number; reason: string }>;
}

export interface SafetyVerdict {
  safe: boolean;
  blockers: Blocker[];
  /** time spent in check(), reads included */
  analysisNs: number;
  stats?: SafetyStats;
}

/** What prepare() found in the target, for messages and tests. */
export interface PreparedModule {
  path: string;
  start: bigint;
  end: bigint;
  /** core registry module id; 0 when the module gave no CFI */
  id: number;
  /** why it gave no CFI */
  skipped?: string;
  fdes?: number;
}

/** Stack bytes per thread worth asking stopWorld() for: most threads unwind within it. */
export const SAFETY_STACK_WINDOW = 8192;

// Bounds of the reads inside the pause.
const MAX_STACK_BYTES = 8 << 20; // per thread, all segments
const MAX_ROUNDS = 24;
const GROW = 16384; // read at least this much more when a window is too short
const MAX_SEGMENTS = 16; // the core's limit

const PT_LOAD = 1;
const PT_GNU_EH_FRAME = 0x6474e550;
const PAGE = 4096n;

// mov $0xf,%rax; syscall: the rt_sigreturn trampoline (glibc's __restore_rt, musl's too).
const SIGRETURN = Uint8Array.from([0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05]);

const hex = (v: bigint) => "0x" + v.toString(16);

function u64At(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
}

interface Seg {
  mapLo: bigint;
  mapHi: bigint;
  addr: bigint;
  bytes: Uint8Array;
}

interface ThreadWork {
  t: ThreadState;
  regs: Uint8Array;
  segs: Seg[];
  bytes: number;
  noMore: boolean;
  res?: ThreadResult;
}

export class ProcessUnwind {
  private maps: Mapping[];
  private closed = false;
  /** module ids the engine added (patch regions) */
  private extra = new Set<number>();

  private constructor(
    readonly core: Core,
    readonly pid: number,
    maps: Mapping[],
    readonly registry: CfiRegistry,
    readonly modules: PreparedModule[],
    /** declared sigreturn trampolines without CFI */
    readonly trampolines: bigint[],
    /** executable mappings without CFI (patch regions, JIT code): frames there fall back to the conservative scan */
    readonly unwindless: Mapping[],
  ) {
    this.maps = maps;
  }

  /**
   * Registers the CFI of every module mapped in the target at its runtime address,
   * and the sigreturn trampolines without CFI. All reading happens here, before any stop.
   */
  static prepare(core: Core, target: { pid: number; maps: Mapping[] }, opts: { mem?: MemoryReader } = {}): ProcessUnwind {
    const mem = opts.mem ?? new ProcMemory(target.pid);
    const registry = new CfiRegistry(core);
    const modules: PreparedModule[] = [];
    const trampolines: bigint[] = [];
    try {
      for (const mod of listModules(target.maps)) {
        const pm: PreparedModule = { path: mod.path, start: mod.start, end: mod.end, id: 0 };
        modules.push(pm);
        try {
          pm.id = addModuleFromMemory(registry, mem, mod);
          if (pm.id) pm.fdes = registry.moduleInfo(pm.id).fdes;
          else pm.skipped = "no PT_GNU_EH_FRAME";
        } catch (e) {
          pm.skipped = (e as Error).message;
        }
      }
      // Trampolines without CFI, by their bytes in executable file mappings.
      for (const mod of listModules(target.maps)) {
        for (const m of mod.mappings) {
          if (!m.exec || !m.read) continue;
          let text: Uint8Array;
          try {
            text = mem.read(m.start, Number(m.end - m.start));
          } catch {
            continue;
          }
          for (let i = indexOf(text, SIGRETURN, 0); i >= 0; i = indexOf(text, SIGRETURN, i + 1)) {
            const addr = m.start + BigInt(i);
            const row = registry.row(addr);
            if (row && row.signalFrame) continue; // glibc: described by its 'S' FDE
            registry.addSigreturn(addr);
            trampolines.push(addr);
          }
        }
      }
    } catch (e) {
      registry.free();
      throw e;
    } finally {
      if (!opts.mem) mem.close();
    }
    const covered = (m: Mapping) => modules.some((pm) => pm.id !== 0 && m.start >= pm.start && m.end <= pm.end);
    const unwindless = target.maps.filter((m) => m.exec && !covered(m) && m.path !== "[vsyscall]");
    return new ProcessUnwind(core, target.pid, target.maps.slice(), registry, modules, trampolines, unwindless);
  }

  /**
   * Adds CFI the maps do not show (a patch region's relocated .eh_frame, at its runtime
   * address ehAddr; its .eh_frame_hdr at hdrAddr, optional). Returns the module id for
   * removeModuleCfi(). Call it before the stop.
   */
  addModuleCfi(ehFrame: Uint8Array, ehAddr: bigint, hdr?: Uint8Array, hdrAddr = 0n, name = "patch region"): number {
    const id = this.registry.addModule(ehFrame, ehAddr, hdr, hdrAddr, `process ${this.pid}: ${name}`);
    this.extra.add(id);
    return id;
  }

  removeModuleCfi(id: number): void {
    this.registry.remove(id);
    this.extra.delete(id);
  }

  /** Replaces the maps used to find each thread's stack mapping (after the region was mapped, say). */
  setMaps(maps: Mapping[]): void {
    this.maps = maps.slice();
  }

  /**
   * With the world stopped: which threads are in an entry window (`windows`) or inside
   * a forbidden range (`forbidden`). Reads more stack through `tracer` where a
   * thread's window was too short, all threads' needs in one request per round.
   */
  async check(tracer: Tracer, world: World, forbidden: Range[], windows: Range[]): Promise<SafetyVerdict> {
    if (this.closed) throw new Error(`process ${this.pid}: the stack check was closed`);
    const t0 = process.hrtime.bigint();
    const stats: SafetyStats = { threads: world.threads.length, precise: 0, conservative: 0, reads: 0, bytesRead: 0, fallbacks: [] };
    const blockers: Blocker[] = [];
    const scan = new StackScan(this.registry);
    try {
      forbidden.forEach((r, i) => r.hi > r.lo && scan.addForbidden(r.lo, r.hi, i));
      windows.forEach((r, i) => r.hi > r.lo && scan.addWindow(r.lo, r.hi, i));
      if (forbidden.length === 0 && windows.length === 0) {
        return { safe: true, blockers, analysisNs: Number(process.hrtime.bigint() - t0), stats };
      }
      let refreshed = false;
      const regsAll = new Uint8Array(world.raw.regs.buffer, world.raw.regs.byteOffset, world.raw.regs.byteLength);
      const work: ThreadWork[] = world.threads.map((t, i) => {
        let m = this.mappingOf(t.sp);
        if (!m && !refreshed) {
          this.refreshMaps();
          refreshed = true;
          m = this.mappingOf(t.sp);
        }
        const seg: Seg = m
          ? { mapLo: m.start, mapHi: m.end, addr: t.sp, bytes: t.stack }
          : { mapLo: t.sp, mapHi: t.sp + BigInt(t.stack.length), addr: t.sp, bytes: t.stack };
        return { t, regs: regsAll.subarray(i * 216, i * 216 + 216), segs: [seg], bytes: t.stack.length, noMore: !m };
      });

      let pending = work;
      for (let round = 0; pending.length > 0; round++) {
        const reads: Array<{ w: ThreadWork; seg: Seg | null; map: Mapping | null; addr: bigint; len: number; below: boolean }> = [];
        const next: ThreadWork[] = [];
        for (const w of pending) {
          const opts: ScanOptions = { noMore: w.noMore || round >= MAX_ROUNDS };
          const res = this.scanThread(scan, w, opts);
          w.res = res;
          if (res.status !== "need-memory") continue;
          const plan = this.planRead(w, res, refreshed);
          if (plan === "refresh") {
            this.refreshMaps();
            refreshed = true;
            next.push(w);
            continue;
          }
          if (plan === null) {
            w.noMore = true;
            next.push(w);
            continue;
          }
          reads.push({ w, ...plan });
          next.push(w);
        }
        if (reads.length) {
          const got = await tracer.readMemory(reads.map((r) => ({ addr: r.addr, len: r.len })));
          stats.reads++;
          reads.forEach((r, i) => {
            const b = got[i];
            stats.bytesRead += b.length;
            if (b.length === 0) {
              r.w.noMore = true;
              return;
            }
            r.w.bytes += b.length;
            if (r.seg === null) {
              r.w.segs.push({ mapLo: r.map!.start, mapHi: r.map!.end, addr: r.addr, bytes: b });
            } else if (r.below) {
              r.seg.bytes = concat(b.subarray(0, Number(r.seg.addr - r.addr)), r.seg.bytes);
              r.seg.addr = r.addr;
              if (b.length < r.len) r.w.noMore = true;
            } else {
              r.seg.bytes = concat(r.seg.bytes, b);
              if (b.length < r.len) r.w.noMore = true;
            }
          });
        }
        pending = next;
      }

      for (const w of work) {
        const res = w.res!;
        const how = res.mode === "precise" ? "precise" : `conservative: ${res.fallback ? res.fallback.message : "precise unwinding off"}`;
        if (res.mode === "precise") stats.precise++;
        else {
          stats.conservative++;
          stats.fallbacks.push({ tid: w.t.tid, reason: res.fallback ? res.fallback.message : "?" });
        }
        if (res.windowId >= 0) {
          let pc = w.t.pc;
          if (res.windowDepth > 0) {
            const again = this.scanThread(scan, w, { noMore: true, frames: res.windowDepth + 1 });
            pc = again.frames[res.windowDepth]?.pc ?? pc;
          }
          blockers.push({ tid: w.t.tid, kind: "window", range: windows[res.windowId], pc, returnAddr: 0n, returnSp: 0n, depth: res.windowDepth, how });
        }
        if (res.rangeId >= 0) {
          const precise = res.mode === "precise";
          blockers.push({
            tid: w.t.tid,
            kind: "inside",
            range: forbidden[res.rangeId],
            pc: res.pc,
            returnAddr: precise ? res.returnAddr : 0n,
            returnSp: precise && res.returnAddr !== 0n ? res.returnSp : 0n,
            depth: precise ? res.depth : -1,
            how,
          });
        } else if (res.status === "failed" || (res.mode === "conservative" && res.incomplete)) {
          // Could not see the whole stack: it may hold a frame inside a forbidden range.
          const why = res.status === "failed" ? `unwinding failed: ${res.fallback?.message ?? "?"}` : `stack memory unreadable beyond what was read (${w.bytes} bytes)`;
          blockers.push({ tid: w.t.tid, kind: "inside", range: { lo: 0n, hi: 0n, name: `(the stack of thread ${w.t.tid}: ${why})` }, pc: w.t.pc, returnAddr: 0n, returnSp: 0n, depth: -1, how });
        }
      }
    } finally {
      scan.free();
    }
    return { safe: blockers.length === 0, blockers, analysisNs: Number(process.hrtime.bigint() - t0), stats };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.registry.free();
  }

  private scanThread(scan: StackScan, w: ThreadWork, opts: ScanOptions): ThreadResult {
    const segments: StackSegment[] = w.segs.map((s) => ({ window: s.bytes, windowAddr: s.addr, mapLo: s.mapLo, mapHi: s.mapHi }));
    return scan.thread({ regs: w.regs, segments }, opts);
  }

  /**
   * What to read for a thread that needs memory at res.needAddr: more of a segment's
   * window (above, or below its start), or a new segment in another mapping (the stack
   * a signal on a sigaltstack interrupted). null: nothing can be read (give up: noMore).
   */
  private planRead(w: ThreadWork, res: ThreadResult, refreshed: boolean): { seg: Seg | null; map: Mapping | null; addr: bigint; len: number; below: boolean } | null | "refresh" {
    const a = res.needAddr & ~7n;
    const room = MAX_STACK_BYTES - w.bytes;
    if (room <= 0) return null;
    const seg = w.segs.find((s) => a >= s.mapLo && a < s.mapHi);
    if (seg) {
      const end = seg.addr + BigInt(seg.bytes.length);
      if (a < seg.addr) {
        const len = Number(seg.addr - a);
        if (len > room) return null;
        return { seg, map: null, addr: a, len, below: true };
      }
      if (a < end) return null; // the core asked for what it has: give up rather than loop
      // Conservative wants everything to the mapping's top; precise a little more.
      const want = res.mode === "conservative" ? seg.mapHi : maxB(a + 8n, end) + BigInt(GROW);
      const stop = minB(seg.mapHi, want, end + BigInt(room));
      if (stop <= end) return null;
      return { seg, map: null, addr: end, len: Number(stop - end), below: false };
    }
    if (w.segs.length >= MAX_SEGMENTS) return null;
    const m = this.mappingOf(a);
    if (!m) return refreshed ? null : "refresh";
    const stop = minB(m.end, a + BigInt(GROW), a + BigInt(room));
    return { seg: null, map: m, addr: a, len: Number(stop - a), below: false };
  }

  private mappingOf(addr: bigint): Mapping | undefined {
    const maps = this.maps;
    let lo = 0, hi = maps.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (maps[mid].end <= addr) lo = mid + 1;
      else hi = mid;
    }
    const m = maps[lo];
    return m && m.start <= addr && addr < m.end ? m : undefined;
  }

  private refreshMaps(): void {
    try {
      this.maps = parseMaps(readFileSync(`/proc/${this.pid}/maps`, "utf8"), `/proc/${this.pid}/maps`);
    } catch {
      /* the process is gone: the stacks we have are all there is */
    }
  }
}

const minB = (...v: bigint[]) => v.reduce((a, b) => (b < a ? b : a));
const maxB = (a: bigint, b: bigint) => (a > b ? a : b);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(needle, from);
}

/**
 * Registers a module's .eh_frame (and .eh_frame_hdr) read from the target's memory:
 * the ELF and program headers from the module's first page, then only the header and
 * .eh_frame, at their runtime addresses. Returns the module id, 0 when the module has
 * no PT_GNU_EH_FRAME; throws when it is not an ELF image or cannot be read.
 */
function addModuleFromMemory(reg: CfiRegistry, mem: MemoryReader, mod: ProcessModule): number {
  const name = `${mod.path}${mod.deleted ? " (deleted)" : ""}`;
  const first = mod.mappings[0];
  const headLen = Number(minB(first.end - first.start, PAGE));
  const head = mem.read(mod.start, headLen);
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length < 64 || v.getUint32(0, true) !== 0x464c457f || head[4] !== 2 || head[5] !== 1)
    throw new Error(`${name}: not an ELF64 little-endian image at ${hex(mod.start)}`);
  const phoff = Number(v.getBigUint64(32, true));
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  let ph = head;
  let phBase = phoff;
  if (phentsize < 56 || phoff + phentsize * phnum > head.length) {
    if (phentsize < 56) throw new Error(`${name}: program header entries of ${phentsize} bytes`);
    ph = mem.read(mod.start + BigInt(phoff), phentsize * phnum);
    phBase = 0;
  }
  const pv = new DataView(ph.buffer, ph.byteOffset, ph.byteLength);
  const loads: Array<{ vaddr: bigint; filesz: bigint }> = [];
  let hdrVaddr = -1n, hdrSize = 0n;
  for (let i = 0; i < phnum; i++) {
    const p = phBase + i * phentsize;
    const type = pv.getUint32(p, true);
    if (type === PT_LOAD) loads.push({ vaddr: pv.getBigUint64(p + 16, true), filesz: pv.getBigUint64(p + 32, true) });
    else if (type === PT_GNU_EH_FRAME) {
      hdrVaddr = pv.getBigUint64(p + 16, true);
      hdrSize = pv.getBigUint64(p + 32, true);
    }
  }
  if (!loads.length) throw new Error(`${name}: no PT_LOAD segment`);
  if (hdrVaddr < 0n) return 0;
  const firstPage = loads.reduce((m, l) => (l.vaddr < m ? l.vaddr : m), loads[0].vaddr) & ~(PAGE - 1n);
  const at = (vaddr: bigint) => mod.start + (vaddr - firstPage);
  const hdrAddr = at(hdrVaddr);
  if (hdrSize < 8n || hdrSize > 64n << 20n) throw new Error(`${name}: .eh_frame_hdr of ${hdrSize} bytes`);
  const hdr = mem.read(hdrAddr, Number(hdrSize));
  if (hdr[0] !== 1) throw new Error(`${name}: .eh_frame_hdr version ${hdr[0]}`);
  const ehAddr = decodePointer(hdr, 4, hdr[1], hdrAddr, name);
  // .eh_frame ends at most with the PT_LOAD that holds it.
  const ehVaddr = ehAddr - mod.start + firstPage;
  const seg = loads.find((l) => ehVaddr >= l.vaddr && ehVaddr < l.vaddr + l.filesz);
  if (!seg) throw new Error(`${name}: .eh_frame at ${hex(ehAddr)} is in no PT_LOAD segment`);
  const end = minB(at(seg.vaddr + seg.filesz), mod.end);
  if (end <= ehAddr) throw new Error(`${name}: .eh_frame at ${hex(ehAddr)} is outside the mapped module`);
  const eh = mem.read(ehAddr, Number(end - ehAddr));
  return reg.addModule(eh, ehAddr, hdr, hdrAddr, `${name}: .eh_frame`);
}

/** A DW_EH_PE-encoded pointer in .eh_frame_hdr (absptr/udata/sdata 4 or 8, pcrel or datarel). */
function decodePointer(b: Uint8Array, off: number, enc: number, hdrAddr: bigint, name: string): bigint {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let x: bigint;
  switch (enc & 0x0f) {
    case 0x00: case 0x04: x = v.getBigUint64(off, true); break; // absptr, udata8
    case 0x0c: x = v.getBigInt64(off, true); break; // sdata8
    case 0x03: x = BigInt(v.getUint32(off, true)); break; // udata4
    case 0x0b: x = BigInt(v.getInt32(off, true)); break; // sdata4
    default: throw new Error(`${name}: .eh_frame_hdr eh_frame_ptr encoding 0x${enc.toString(16)}`);
  }
  switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: x += hdrAddr + BigInt(off); break; // pcrel
    case 0x30: x += hdrAddr; break; // datarel: from the start of .eh_frame_hdr
    default: throw new Error(`${name}: .eh_frame_hdr eh_frame_ptr encoding 0x${enc.toString(16)}`);
  }
  return BigInt.asUintN(64, x);
}

/** The thread's pc as the check sees it, for messages. */
export function describeBlocker(b: Blocker): string {
  const where = b.kind === "window" ? `at ${hex(b.pc)} inside the entry of ${b.range.name}` : `inside ${b.range.name} (frame ${b.depth}, pc ${hex(b.pc)})`;
  const wait = b.returnAddr ? `, returns to ${hex(b.returnAddr)}` : "";
  return `thread ${b.tid} ${where}${wait}`;
}
