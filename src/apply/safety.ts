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
//               of the OUTERMOST such frame (`returnAddr`, with its return slot CFA - 8,
//               `returnSp`, as Tracer.waitReturn takes them): once it returned, no frame of the
//               thread is inside any of them any more, except by a new call, which
//               takes the new code.
//
// Unwinding is the core's (assembly/stack, docs/core-abi.md "Stack-scan analysis"):
// precise with DWARF CFI (.eh_frame) of every module mapped in the target, the
// conservative word scan (every aligned stack word taken as a return address) where
// precise unwinding fails. A conservative hit has no known return address (0n). The
// word scan covers the stacks it is given: where precise unwinding failed before it
// crossed a signal frame (a handler on a sigaltstack), the stack the signal
// interrupted is found through the rt_sigframe's saved rsp, next to a return address
// into a sigreturn trampoline among the words.
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
import { readFileSync, readdirSync } from "node:fs";
import type { Core } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import { CfiRegistry, StackScan, type StackSegment } from "../core/stack.js";
import type { Span, Tracer, World, ThreadState } from "../shim/index.js";
import type { Range } from "./contract.js";
import { parseMaps, type Mapping } from "./maps.js";
import { listModules, type ProcessModule } from "./modules.js";
import { ProcMemory, type MemoryReader } from "./proc-memory.js";
import { findRegions, type FoundRegion } from "./status.js";

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
  /**
   * "inside": its return slot, CFA - 8 (the CFA is the stack pointer once it has
   * returned): what Tracer.waitReturn takes as `sp`, which hits when the thread
   * executes `returnAddr` with rsp > `sp`, i.e. once this frame returned (a deeper
   * recursive call returning to the same address has a lower rsp). 0n when unknown.
   */
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
  /** its CFI has a signal-frame CIE ('S' augmentation): its sigreturn trampoline is described */
  signalCie?: boolean;
}

/**
 * Stack bytes per thread worth asking stopWorld() for. Parked threads of the fixtures,
 * python3 and coreutils unwind to their outermost frame within 350..1450 bytes; each
 * 4 KiB more per thread costs the stop about 4 us per thread (measured at 100 threads:
 * 4096 -> 8192 bytes added ~0.5 ms). A thread that needs more costs one more round
 * (one tracer request for all such threads).
 */
export const SAFETY_STACK_WINDOW = 4096;

// Bounds of the reads inside the pause.
const MAX_STACK_BYTES = 8 << 20; // per thread, all segments
const MAX_ROUNDS = 24;
const GROW = 65536; // read this much more (to the mapping's top at most) when a window is too short: one more round, rarely two
const MAX_SEGMENTS = 16; // the core's limit

const PT_LOAD = 1;
const PT_GNU_EH_FRAME = 0x6474e550;
const PAGE = 4096n;

// mov $0xf,%rax; syscall: the rt_sigreturn trampoline (glibc's __restore_rt, musl's too).
const SIGRETURN = Uint8Array.from([0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05]);

const hex = (v: bigint) => "0x" + v.toString(16);

let warmedUp = false;

function u64At(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
}

interface Seg {
  mapLo: bigint;
  mapHi: bigint;
  addr: bigint;
  bytes: Uint8Array;
  /** where `bytes` are in core memory (0: not there yet) */
  ptr: number;
}

interface ThreadWork {
  t: ThreadState;
  index: number;
  segs: Seg[];
  bytes: number;
  noMore: boolean;
  /** no mapping holds its stack pointer: a word scan of its window alone proves nothing */
  unmapped: boolean;
  sigSearched?: boolean;
  res?: RawResult;
}

// stack_scan_thread's result record (docs/core-abi.md), the fields the check uses.
const NEED_MEMORY = 2;
// The precise unwind wanted memory it was not given (the word scan then saw only the
// stacks it was given: a stack the unwind was going to, beyond a signal frame, is missing).
const STACK_NEED_MEMORY = 524;
const FAILED = 3;
const CONSERVATIVE = 2;
interface RawResult {
  status: number;
  mode: number;
  incomplete: boolean;
  depth: number;
  rangeId: number;
  windowId: number;
  windowDepth: number;
  /** why precise unwinding failed ("" when it did not), and its code (0 when it did not) */
  fallback: string;
  fallbackCode: number;
  needAddr: bigint;
  pc: bigint;
  returnAddr: bigint;
  returnSp: bigint;
}

type ScanExport = (h: number, regs: number, segs: number, nsegs: number, flags: number, maxFrames: number, frames: number, cap: number, out: number) => number;

/**
 * One check's core memory: every thread's registers and stack window copied in once
 * (two copies for the whole world), the segment records and the result record
 * reused for every thread. The hot path of the pause: no allocation per thread
 * unless a thread's stack needed more memory.
 */
class ScanRun {
  readonly regs: number;
  readonly stacks: number;
  private readonly segRecs: number;
  private readonly out: number;
  private readonly owned: number[] = [];
  private readonly fn: ScanExport;

  constructor(
    private readonly core: Core,
    private readonly scan: StackScan,
    world: World,
  ) {
    const e = core.exports;
    const raw = world.raw;
    const regBytes = new Uint8Array(raw.regs.buffer, raw.regs.byteOffset, raw.regs.byteLength);
    this.regs = this.alloc(Math.max(regBytes.length, 8));
    this.stacks = this.alloc(Math.max(raw.stacks.length, 8));
    this.segRecs = this.alloc(MAX_SEGMENTS * 40);
    this.out = this.alloc(96);
    const mem = core.bytes;
    mem.set(regBytes, this.regs);
    mem.set(raw.stacks, this.stacks);
    this.fn = (e as unknown as { stack_scan_thread: ScanExport }).stack_scan_thread;
  }

  private alloc(n: number): number {
    const p = this.core.exports.alloc(n);
    this.owned.push(p);
    return p;
  }

  regsOf(w: ThreadWork): Uint8Array {
    return this.core.bytes.slice(this.regs + 216 * w.index, this.regs + 216 * (w.index + 1));
  }

  thread(w: ThreadWork, noMore: boolean): RawResult {
    const c = this.core;
    for (const s of w.segs) {
      if (s.ptr !== 0) continue;
      s.ptr = this.alloc(Math.max(s.bytes.length, 8));
      c.bytes.set(s.bytes, s.ptr);
    }
    let v = c.view;
    w.segs.forEach((s, i) => {
      const b = this.segRecs + 40 * i;
      v.setBigUint64(b, BigInt(s.ptr), true);
      v.setBigUint64(b + 8, BigInt(s.bytes.length), true);
      v.setBigUint64(b + 16, s.addr, true);
      v.setBigUint64(b + 24, s.mapLo, true);
      v.setBigUint64(b + 32, s.mapHi, true);
    });
    const flags = 1 | 2 | (noMore ? 4 : 0);
    const r = this.fn(this.scan.handle, this.regs + 216 * w.index, this.segRecs, w.segs.length, flags, 65536, 0, 0, this.out);
    if (r !== 0) throw c.lastError(`thread ${w.t.tid}: stack_scan_thread`);
    if (v.buffer !== c.exports.memory.buffer) v = c.view;
    const o = this.out;
    const fb = v.getInt32(o + 36, true);
    return {
      status: v.getUint32(o, true),
      mode: v.getUint32(o + 4, true),
      incomplete: (v.getUint32(o + 12, true) & 2) !== 0,
      depth: v.getInt32(o + 16, true),
      rangeId: v.getInt32(o + 20, true),
      windowId: v.getInt32(o + 24, true),
      windowDepth: v.getInt32(o + 28, true),
      fallback: fb !== 0 ? c.lastError().message : "",
      fallbackCode: fb,
      needAddr: v.getBigUint64(o + 40, true),
      pc: v.getBigUint64(o + 48, true),
      returnAddr: v.getBigUint64(o + 56, true),
      returnSp: v.getBigUint64(o + 64, true),
    };
  }

  free(): void {
    for (const p of this.owned) this.core.exports.free(p);
    this.owned.length = 0;
  }
}

export class ProcessUnwind {
  private maps: Mapping[];
  private closed = false;
  /** module ids the engine added (patch regions) */
  private extra = new Set<number>();
  private cached?: { key: string; scan: StackScan };
  private warming = false;

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
    /** code a signal handler returns to (sigreturn trampolines): the 'S' FDEs' ranges and the declared trampolines */
    readonly sigRanges: Array<{ lo: bigint; hi: bigint }>,
  ) {
    this.maps = maps;
  }

  /**
   * Registers the CFI of every module mapped in the target at its runtime address,
   * and the sigreturn trampolines without CFI. All reading happens here, before any stop.
   */
  static prepare(core: Core, target: { pid: number; maps: Mapping[] }, opts: { mem?: MemoryReader; regions?: FoundRegion[] } = {}): ProcessUnwind {
    const mem = opts.mem ?? new ProcMemory(target.pid);
    const registry = new CfiRegistry(core);
    const modules: PreparedModule[] = [];
    const trampolines: bigint[] = [];
    const sigRanges: Array<{ lo: bigint; hi: bigint }> = [];
    try {
      const regions = opts.regions ?? findRegions(target.pid, target.maps, mem);
      for (const mod of listModules(target.maps)) {
        if (regions.some((r) => r.mapping.start === mod.start)) continue; // a memfd region: below
        const pm: PreparedModule = { path: mod.path, start: mod.start, end: mod.end, id: 0 };
        modules.push(pm);
        try {
          let r = addModuleFromMemory(registry, mem, mod);
          if (r.id === 0 && mod.inode !== 0) r = addModuleFromFile(core, registry, target.pid, mod);
          pm.id = r.id;
          pm.signalCie = r.signal.length > 0;
          sigRanges.push(...r.signal);
          if (pm.id) pm.fdes = registry.moduleInfo(pm.id).fdes;
          else pm.skipped = "no PT_GNU_EH_FRAME, and no .eh_frame section in its file";
        } catch (e) {
          pm.skipped = (e as Error).message;
        }
      }
      // Patch regions (found from their headers, or as the caller found them): their
      // relocated .eh_frame, so that frames in patch code unwind precisely.
      for (const r of regions) {
        const h = r.header;
        const pm: PreparedModule = { path: `[patch ${h.patchId}]`, start: r.mapping.start, end: h.base + h.size, id: 0 };
        modules.push(pm);
        if (!h.ehFrame || h.ehFrame.size === 0n) {
          pm.skipped = "no .eh_frame";
          continue;
        }
        try {
          const eh = mem.read(h.ehFrame.addr, Number(h.ehFrame.size));
          pm.id = registry.addModule(eh, h.ehFrame.addr, undefined, 0n, `process ${target.pid}: patch ${h.patchId} at ${hex(h.base)}: .eh_frame`);
          pm.fdes = registry.moduleInfo(pm.id).fdes;
        } catch (e) {
          pm.skipped = (e as Error).message;
        }
      }
      // Trampolines without CFI, by their bytes in the text of modules whose CFI has no
      // signal frame (a module with an 'S' CIE, glibc's libc, describes its own).
      for (const mod of listModules(target.maps)) {
        const pm = modules.find((x) => x.start === mod.start);
        if (pm?.signalCie || regions.some((r) => r.mapping.start === mod.start)) continue;
        for (const m of mod.mappings) {
          if (!m.exec || !m.read) continue;
          for (const off of sigreturnOffsets(mem, m)) {
            const addr = m.start + BigInt(off);
            const row = registry.row(addr);
            if (row && row.signalFrame) continue;
            registry.addSigreturn(addr);
            trampolines.push(addr);
            sigRanges.push({ lo: addr, hi: addr + 9n });
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
    const pu = new ProcessUnwind(core, target.pid, target.maps.slice(), registry, modules, trampolines, unwindless, sigRanges);
    if (!warmedUp) {
      warmedUp = true; // compiled code is shared by every later instance of the core in this process
      pu.warmUp();
    }
    // Grow the core's memory now for the copy of every thread's registers and window.
    let tasks = 64;
    try {
      tasks = readdirSync(`/proc/${target.pid}/task`).length + 8;
    } catch {
      /* gone: check() will say so */
    }
    core.exports.free(core.exports.alloc(tasks * (SAFETY_STACK_WINDOW + 216) + (1 << 16)));
    return pu;
  }

  /**
   * Runs check() on made-up threads (a few frames through the first modules' CFI, and
   * one without CFI) so that the engine compiles its code now rather than inside the
   * pause: Wasm functions are compiled on their first call, JavaScript on its first runs.
   */
  private warmUp(): void {
    const ids = this.modules.filter((m) => m.id !== 0).map((m) => this.registry.moduleInfo(m.id));
    if (!ids.length) return;
    const W = 512;
    const sp = 0x7ff000000000n;
    const n = 3;
    const regs = new BigUint64Array(27 * n);
    const stacks = new Uint8Array(n * W);
    const sv = new DataView(stacks.buffer);
    const pcs = [ids[0].lo, 1n, ids[ids.length - 1].lo + 1n];
    for (let i = 0; i < n; i++) {
      regs[27 * i + 16] = pcs[i];
      regs[27 * i + 19] = sp;
      // return addresses into the middle of the modules' code, then 0: the end
      for (let k = 0; k < 4; k++) sv.setBigUint64(W * i + 8 * k, ids[k % ids.length].lo + 17n, true);
    }
    const threads = pcs.map((pc, i) => ({ tid: 0, flags: 0, pendingSignal: 0, pc, sp, stack: stacks.subarray(W * i, W * i + W), regs: {} }));
    const world = { threads, window: W, interruptNs: 0, waitNs: 0, readNs: 0, totalNs: 0, raw: { regs, stacks, window: W } } as unknown as World;
    const tracer = { readMemory: async (r: unknown[]) => r.map(() => new Uint8Array(0)) } as unknown as Tracer;
    const maps = this.maps;
    this.maps = [{ start: sp, end: sp + BigInt(W), read: true, write: true, exec: false, shared: false, offset: 0n, dev: "00:00", inode: 0, path: "", deleted: false }];
    try {
      const ranges = [{ lo: ids[0].lo, hi: ids[0].lo + 64n, name: "warm-up" }];
      // No reads (planRead refuses while warming): check() runs to its end synchronously.
      // 30 runs (about 1 ms, once per process): the first real check of a 1-thread
      // target measured 240 us after 3 runs, 172 us after 50, 1.8 ms after none (at a load
      // average of 70 on 2 cores; the steady state is 6..16 us there).
      this.warming = true;
      for (let k = 0; k < 30; k++) void this.check(tracer, world, ranges, ranges).catch(() => undefined);
    } finally {
      this.warming = false;
      this.maps = maps;
      this.cached?.scan.free();
      this.cached = undefined;
    }
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
    if (forbidden.every((r) => r.hi <= r.lo) && windows.every((r) => r.hi <= r.lo)) {
      return { safe: true, blockers, analysisNs: Number(process.hrtime.bigint() - t0), stats };
    }
    const scan = this.scanFor(forbidden, windows);
    const run = new ScanRun(this.core, scan, world);
    try {
      let refreshed = false;
      const raw = world.raw;
      const work: ThreadWork[] = world.threads.map((t, i) => {
        let m = this.mappingOf(t.sp);
        if (!m && !refreshed && !this.warming) {
          this.refreshMaps();
          refreshed = true;
          m = this.mappingOf(t.sp);
        }
        const seg: Seg = m
          ? { mapLo: m.start, mapHi: m.end, addr: t.sp, bytes: t.stack, ptr: run.stacks + i * raw.window }
          : { mapLo: t.sp, mapHi: t.sp + BigInt(t.stack.length), addr: t.sp, bytes: t.stack, ptr: run.stacks + i * raw.window };
        return { t, index: i, segs: [seg], bytes: t.stack.length, noMore: !m, unmapped: !m };
      });

      let pending = work;
      for (let round = 0; pending.length > 0; round++) {
        const reads: Array<{ w: ThreadWork; seg: Seg | null; map: Mapping | null; addr: bigint; len: number; below: boolean }> = [];
        const next: ThreadWork[] = [];
        for (const w of pending) {
          const res = run.thread(w, w.noMore || round >= MAX_ROUNDS);
          w.res = res;
          if (res.status !== NEED_MEMORY) {
            // Precise unwinding failed: a signal frame it did not reach may hold the
            // stack the handler interrupted (on a sigaltstack), which the word scan
            // must see too. Once per thread.
            if (res.mode === CONSERVATIVE && !w.sigSearched && round < MAX_ROUNDS) {
              w.sigSearched = true;
              const more = this.interruptedStacks(w);
              if (more.length) {
                for (const m of more) reads.push({ w, seg: null, ...m, below: false });
                next.push(w);
              }
            }
            continue;
          }
          const plan = this.planRead(w, res, refreshed);
          if (plan === "refresh") {
            this.refreshMaps();
            refreshed = true;
          } else if (plan === null) w.noMore = true;
          else reads.push({ w, ...plan });
          next.push(w);
        }
        if (reads.length) {
          const got = await tracer.readMemory(reads.map((r) => ({ addr: r.addr, len: r.len })));
          stats.reads++;
          reads.forEach((r, i) => {
            const b = got[i];
            stats.bytesRead += b.length;
            if (b.length === 0 || (r.below && b.length < r.len)) {
              r.w.noMore = true; // unreadable, or a gap below the window
              return;
            }
            r.w.bytes += b.length;
            if (r.seg === null) {
              r.w.segs.push({ mapLo: r.map!.start, mapHi: r.map!.end, addr: r.addr, bytes: b, ptr: 0 });
            } else {
              r.seg.bytes = r.below ? concat(b, r.seg.bytes) : concat(r.seg.bytes, b);
              if (r.below) r.seg.addr = r.addr;
              r.seg.ptr = 0; // copied in again on the next scan
              if (b.length < r.len) r.w.noMore = true;
            }
          });
        }
        pending = next;
      }

      for (const w of work) {
        const res = w.res!;
        const conservative = res.mode === CONSERVATIVE;
        const how = conservative ? `conservative: ${res.fallback || "precise unwinding off"}` : "precise";
        if (conservative) {
          stats.conservative++;
          stats.fallbacks.push({ tid: w.t.tid, reason: res.fallback });
        } else stats.precise++;
        if (res.windowId >= 0) {
          let pc = w.t.pc;
          if (res.windowDepth > 0) {
            const segments: StackSegment[] = w.segs.map((s) => ({ window: s.bytes, windowAddr: s.addr, mapLo: s.mapLo, mapHi: s.mapHi }));
            const again = scan.thread({ regs: run.regsOf(w), segments }, { noMore: true, frames: res.windowDepth + 1 });
            pc = again.frames[res.windowDepth]?.pc ?? pc;
          }
          blockers.push({ tid: w.t.tid, kind: "window", range: windows[res.windowId], pc, returnAddr: 0n, returnSp: 0n, depth: res.windowDepth, how });
        }
        if (res.rangeId >= 0) {
          blockers.push({
            tid: w.t.tid,
            kind: "inside",
            range: forbidden[res.rangeId],
            pc: res.pc,
            returnAddr: conservative ? 0n : res.returnAddr,
            returnSp: conservative || res.returnAddr === 0n ? 0n : res.returnSp - 8n,
            depth: conservative ? -1 : res.depth,
            how,
          });
        } else if (res.status === FAILED || (conservative && (res.incomplete || w.unmapped || res.fallbackCode === STACK_NEED_MEMORY))) {
          // Could not see the whole stack: it may hold a frame inside a forbidden range.
          const why = res.status === FAILED
            ? `unwinding failed: ${res.fallback || "?"}`
            : w.unmapped
              ? `its stack pointer ${hex(w.t.sp)} is in no mapping of /proc/${this.pid}/maps`
              : res.fallbackCode === STACK_NEED_MEMORY
                ? `its frames go on in memory that could not be read (${res.fallback})`
              : `stack memory unreadable beyond the ${w.bytes} bytes read`;
          blockers.push({ tid: w.t.tid, kind: "inside", range: { lo: 0n, hi: 0n, name: `(the stack of thread ${w.t.tid}: ${why})` }, pc: w.t.pc, returnAddr: 0n, returnSp: 0n, depth: -1, how });
        }
      }
    } finally {
      run.free();
    }
    return { safe: blockers.length === 0, blockers, analysisNs: Number(process.hrtime.bigint() - t0), stats };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cached?.scan.free();
    this.cached = undefined;
    this.registry.free();
  }

  /**
   * What the tracer's own proof (Tracer.stopCheckPatch, shim/proof.c) must find in no
   * stack word, and no pc + 1, for a stop to be safe without check(): the return
   * addresses that would make a frame of a forbidden range or an entry window [lo, hi)
   * (lo < r <= hi: a return address r is a frame at r - 1; a function pointer, lo, is
   * none), and the sigreturn trampolines whole (a signal frame's return address is the
   * trampoline's first byte; the stack the signal interrupted may be elsewhere). A word
   * inside one only means check() decides, precisely.
   */
  proofSpans(forbidden: Range[], windows: Range[]): Span[] {
    const frames = [...forbidden, ...windows].filter((r) => r.hi > r.lo).map((r) => ({ lo: r.lo + 1n, hi: r.hi }));
    return [...frames, ...this.sigRanges.filter((r) => r.hi > r.lo).map((r) => ({ lo: r.lo, hi: r.hi }))];
  }

  /**
   * Before the stop: builds the scan set of these ranges, so the check() that follows
   * with the same ranges (in the pause) finds it ready.
   */
  prepareCheck(forbidden: Range[], windows: Range[]): void {
    if (this.closed) throw new Error(`process ${this.pid}: the stack check was closed`);
    this.scanFor(forbidden, windows);
  }

  /** The scan set of these ranges: the last one again when they are the same (a retry). */
  private scanFor(forbidden: Range[], windows: Range[]): StackScan {
    const key = [...forbidden, { lo: -1n, hi: -1n }, ...windows].map((r) => `${r.lo.toString(16)}-${r.hi.toString(16)}`).join(",");
    if (this.cached?.key === key) return this.cached.scan;
    this.cached?.scan.free();
    this.cached = undefined;
    const scan = new StackScan(this.registry);
    try {
      forbidden.forEach((r, i) => r.hi > r.lo && scan.addForbidden(r.lo, r.hi, i));
      windows.forEach((r, i) => r.hi > r.lo && scan.addWindow(r.lo, r.hi, i));
    } catch (e) {
      scan.free();
      throw e;
    }
    this.cached = { key, scan };
    return scan;
  }

  /**
   * What to read for a thread that needs memory at res.needAddr: more of a segment's
   * window (above, or below its start), or a new segment in another mapping (the stack
   * a signal on a sigaltstack interrupted). null: nothing can be read (give up: noMore).
   */
  private planRead(w: ThreadWork, res: RawResult, refreshed: boolean): { seg: Seg | null; map: Mapping | null; addr: bigint; len: number; below: boolean } | null | "refresh" {
    const a = res.needAddr & ~7n;
    const room = MAX_STACK_BYTES - w.bytes;
    if (room <= 0 || this.warming) return null;
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
      const want = res.mode === CONSERVATIVE ? seg.mapHi : maxB(a + 8n, end) + BigInt(GROW);
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

  /**
   * Signal frames in a thread's stack words: a word in a sigreturn trampoline is the
   * return address a signal handler was called with (rt_sigframe's pretcode); the
   * interrupted registers follow it (struct rt_sigframe, x86-64):
   *
   *   +0 pretcode   +8 ucontext: uc_flags, uc_link, uc_stack (24 bytes)
   *   +48 uc_mcontext: r8 r9 r10 r11 r12 r13 r14 r15 rdi rsi rbp rbx rdx rax rcx
   *   +168 rsp   +176 rip ...
   *
   * Returns reads of the stacks those rsp values lie in, where no segment covers them
   * yet (to the mapping's top: the word scan wants all of it).
   */
  private interruptedStacks(w: ThreadWork): Array<{ map: Mapping; addr: bigint; len: number }> {
    const out: Array<{ map: Mapping; addr: bigint; len: number }> = [];
    if (!this.sigRanges.length) return out;
    const inSig = (x: bigint) => this.sigRanges.some((r) => x >= r.lo && x < r.hi);
    for (const s of [...w.segs]) {
      const v = new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength);
      const first = Number((8n - (s.addr & 7n)) & 7n);
      for (let o = first; o + 184 <= s.bytes.length; o += 8) {
        if (!inSig(v.getBigUint64(o, true))) continue;
        const rsp = v.getBigUint64(o + 168, true);
        if (w.segs.some((g) => rsp >= g.mapLo && rsp < g.mapHi) || out.some((r) => rsp >= r.map.start && rsp < r.map.end)) continue;
        const m = this.mappingOf(rsp);
        if (!m || !m.read || w.segs.length + out.length >= MAX_SEGMENTS) continue;
        const addr = rsp & ~7n;
        const len = Number(minB(m.end - addr, BigInt(Math.max(0, MAX_STACK_BYTES - w.bytes))));
        if (len > 0) out.push({ map: m, addr, len });
      }
    }
    return out;
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
function addModuleFromMemory(reg: CfiRegistry, mem: MemoryReader, mod: ProcessModule): { id: number; signal: Array<{ lo: bigint; hi: bigint }> } {
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
  if (hdrVaddr < 0n) return { id: 0, signal: [] };
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
  return { id: reg.addModule(eh, ehAddr, hdr, hdrAddr, `${name}: .eh_frame`), signal: signalFdes(eh, ehAddr) };
}

/**
 * A module linked without .eh_frame_hdr (ld --no-eh-frame-hdr): its .eh_frame found
 * through the section headers of its file, which memory does not hold. The file is
 * the one mapped (/proc/PID/map_files: also when deleted or in another mount
 * namespace), else the path as the target sees it (/proc/PID/root).
 */
function addModuleFromFile(core: Core, reg: CfiRegistry, pid: number, mod: ProcessModule): { id: number; signal: Array<{ lo: bigint; hi: bigint }> } {
  const m = mod.mappings[0];
  let data: Uint8Array | undefined;
  for (const path of [`/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`, `/proc/${pid}/root${mod.path}`]) {
    try {
      data = readFileSync(path);
      break;
    } catch {
      /* next */
    }
  }
  if (!data) return { id: 0, signal: [] };
  const elf = new ElfReader(core, data, mod.path);
  try {
    const eh = elf.unwindTables().ehFrame;
    if (!eh || eh.size === 0) return { id: 0, signal: [] };
    const bias = mod.start - (elf.info.firstVaddr & ~(PAGE - 1n));
    const bytes = data.subarray(eh.offset, eh.offset + eh.size);
    return { id: reg.addModule(bytes, eh.addr + bias, undefined, 0n, `${mod.path}: .eh_frame`), signal: signalFdes(bytes, eh.addr + bias) };
  } finally {
    elf.close();
  }
}

/**
 * The pc ranges of the FDEs whose CIE has the 'S' augmentation (signal frames:
 * glibc's __restore_rt), at runtime addresses (.eh_frame loaded at ehAddr).
 *
 *   record: u32 length (0xffffffff: u64 length follows), then
 *   CIE: u32 id 0, u8 version, augmentation string, uleb code align, sleb data align,
 *        return register (u8 in version 1, else uleb), [z: uleb length, per letter:
 *        R u8 FDE pointer encoding, P u8 encoding + pointer, L u8, S and B nothing]
 *   FDE: u32 CIE pointer (back from this field), pc_begin and pc_range (R encoding)
 */
function signalFdes(eh: Uint8Array, ehAddr: bigint): Array<{ lo: bigint; hi: bigint }> {
  const v = new DataView(eh.buffer, eh.byteOffset, eh.byteLength);
  const cies = new Map<number, number>(); // CIE offset -> R encoding, for 'S' CIEs only
  const out: Array<{ lo: bigint; hi: bigint }> = [];
  let p = 0;
  let q = 0;
  const uleb = () => {
    let r = 0, shift = 0, b = 0x80;
    while (b & 0x80 && q < eh.length && shift < 35) {
      b = eh[q++];
      r += (b & 0x7f) * 2 ** shift;
      shift += 7;
    }
    return r;
  };
  const size = (enc: number) => ({ 0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0a: 2, 0x0b: 4, 0x0c: 8 })[enc & 0x0f] ?? -1;
  const value = (at: number, enc: number): bigint | undefined => {
    const f = enc & 0x0f;
    if (at + size(enc) > eh.length) return undefined;
    const x = f === 0x03 ? BigInt(v.getUint32(at, true)) : f === 0x0b ? BigInt(v.getInt32(at, true))
      : f === 0x00 || f === 0x04 ? v.getBigUint64(at, true) : f === 0x0c ? v.getBigInt64(at, true)
      : f === 0x02 ? BigInt(v.getUint16(at, true)) : f === 0x0a ? BigInt(v.getInt16(at, true)) : undefined;
    return x;
  };
  while (p + 8 <= eh.length) {
    const len = v.getUint32(p, true);
    if (len === 0 || len === 0xffffffff) break; // the end, or the 64-bit format (not in x86-64 .eh_frame)
    const body = p + 4;
    if (body + len > eh.length || len < 8) break;
    const id = v.getUint32(body, true);
    if (id === 0) {
      q = body + 5;
      let aug = "";
      while (q < body + len && eh[q] !== 0) aug += String.fromCharCode(eh[q++]);
      q++;
      if (aug.includes("S") && aug.startsWith("z")) {
        const version = eh[body + 4];
        uleb(); // code alignment
        uleb(); // data alignment (sleb: only skipped)
        if (version === 1) q++;
        else uleb();
        uleb(); // augmentation data length
        let renc = 0;
        for (const c of aug.slice(1)) {
          if (c === "R") renc = eh[q++];
          else if (c === "P") {
            const penc = eh[q++];
            q += size(penc) > 0 ? size(penc) : 0;
          } else if (c === "L") q++;
        }
        cies.set(p, renc); // the CIE pointer leads to its length field
      }
    } else {
      const renc = cies.get(body - id);
      if (renc !== undefined && size(renc) > 0) {
        const at = body + 4;
        let lo = value(at, renc);
        const range = value(at + size(renc), renc & 0x0f);
        if (lo !== undefined && range !== undefined) {
          if ((renc & 0x70) === 0x10) lo += ehAddr + BigInt(at);
          lo = BigInt.asUintN(64, lo);
          out.push({ lo, hi: lo + BigInt.asUintN(64, range) });
        }
      }
    }
    p = body + len;
  }
  return out;
}

// Offsets of the sigreturn sequence in a file mapping's text, per file (dev, inode,
// offset, size): the processes of one program share their libraries.
const sigreturnCache = new Map<string, number[]>();

function sigreturnOffsets(mem: MemoryReader, m: Mapping): number[] {
  const key = m.inode !== 0 ? `${m.dev} ${m.inode} ${m.offset} ${m.end - m.start} ${m.path}` : "";
  const hit = key ? sigreturnCache.get(key) : undefined;
  if (hit) return hit;
  let text: Uint8Array;
  try {
    text = mem.read(m.start, Number(m.end - m.start));
  } catch {
    return [];
  }
  const out: number[] = [];
  for (let i = indexOf(text, SIGRETURN, 0); i >= 0; i = indexOf(text, SIGRETURN, i + 1)) out.push(i);
  if (key) {
    if (sigreturnCache.size >= 1024) sigreturnCache.clear();
    sigreturnCache.set(key, out);
  }
  return out;
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

/**
 * Where to wait for an "inside" blocker to leave, as Tracer.waitReturn takes it:
 * `waitReturn(b.tid, addr, { sp })`. null when the return address is unknown (a
 * conservative hit, a window): resume and back off instead.
 */
export function waitTarget(b: Blocker): { addr: bigint; sp: bigint } | null {
  if (b.kind !== "inside" || b.returnAddr === 0n || b.returnSp === 0n) return null;
  return { addr: b.returnAddr, sp: b.returnSp };
}

/** The thread's pc as the check sees it, for messages. */
export function describeBlocker(b: Blocker): string {
  const where = b.kind === "window" ? `at ${hex(b.pc)} inside the entry of ${b.range.name}` : `inside ${b.range.name} (frame ${b.depth}, pc ${hex(b.pc)})`;
  const wait = b.returnAddr ? `, returns to ${hex(b.returnAddr)}` : "";
  return `thread ${b.tid} ${where}${wait}`;
}
