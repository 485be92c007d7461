// The typed wrapper over the native shim: everything patchc does to a live
// process goes through a Tracer. No policy lives here beyond not harming the
// target: the shim does what it is asked, fast, and says exactly what went wrong.
//
//   const t = Tracer.open();
//   await t.attach(pid);                   // seize every thread (they keep running)
//   const w = await t.stopWorld({ window: 4096 });   // pause starts
//   ... inspect w.threads (registers, stack windows) ...
//   await t.patchAndResume([{ addr, expect, bytes }]);   // pause ends
//   await t.close();                       // detaches; the tracer exits
//
// All work happens in the tracer process (shim/tracer.c), which survives patchc:
// if patchc dies, it rolls back the open transaction, disarms, resumes and
// detaches every thread. Requests of one Tracer run one at a time, in call order.
import { constants as osConstants } from "node:os";
import type { Core } from "../core/instance.js";
import { SeccompAction, seccompAction, seccompActionName, seccompEval } from "../core/seccomp.js";
import { nodeCore } from "../node/core-file.js";
import { loadNative, tracerPath } from "./load.js";
import type {
  NativeError,
  NativeProof,
  NativeResumed,
  NativeShim,
  NativeSharerCheck,
  NativeStopped,
  NativeVmPass,
  Tracer as NativeTracer,
} from "./native.js";
import type { SharerPass } from "./sharers.js";
import { NREGS, REG, packRegs, regsAt, type Regs } from "./regs.js";

export { REG, REG_NAMES, type Regs, type RegName } from "./regs.js";

/** A failure of the shim: the operation, the syscall, errno and the thread. */
export class ShimError extends Error {
  constructor(
    message: string,
    /** an errno name ("ESRCH") or a reason ("SITE_MISMATCH", "SECCOMP_DENIED", ...) */
    readonly code: string,
    readonly op: string,
    readonly syscall: string,
    readonly errno: number,
    readonly tid: number,
  ) {
    super(message);
    this.name = "ShimError";
  }

  static from(e: unknown): unknown {
    if (e instanceof ShimError || !(e instanceof Error)) return e;
    const n = e as Partial<NativeError>;
    if (typeof n.code !== "string" || typeof n.op !== "string") return e;
    return new ShimError(e.message, n.code, n.op, n.syscall ?? "", n.errno ?? 0, n.tid ?? 0);
  }
}

/** Thread state bits of ThreadState.flags and ThreadInfo.state. */
export const TS = { STOPPED: 1, GROUP_STOP: 2, PENDING_SIG: 4, SHARER: 8, IN_SYSCALL: 16 } as const;

export interface Attached {
  pid: number;
  tids: number[];
  sharers: number[];
  jobStopped: boolean;
  /** how the sharers were found: from a SharerPass, or by comparing with every process */
  sharerCheck: NativeSharerCheck;
}

export interface ThreadInfo {
  tid: number;
  state: number;
}

/** One thread of a stopped world. */
export interface ThreadState {
  tid: number;
  flags: number;
  /** a signal that arrived while stopped, re-delivered on resume; 0 when none */
  pendingSignal: number;
  pc: bigint;
  sp: bigint;
  /** all 27 registers (built on first access) */
  readonly regs: Regs;
  /** the stack window read from sp: bytes [sp, sp + stack.length) */
  stack: Uint8Array;
}

export interface World {
  threads: ThreadState[];
  window: number;
  interruptNs: number;
  waitNs: number;
  readNs: number;
  /** the pause so far, measured in the tracer */
  totalNs: number;
  /** the packed arrays, for consumers that want no per-thread objects */
  raw: NativeStopped;
}

export type Resumed = NativeResumed;

/** A closed interval [lo, hi] of addresses. */
export interface Span {
  lo: bigint;
  hi: bigint;
}

/** Why stopCheckPatch could not prove a stop safe (shim/proto.h PROOF_*). */
export const PROOF_REASONS: Record<number, string> = {
  1: "a thread's pc is in a span",
  2: "a stack word is in a span",
  3: "a stack pointer is in no writable mapping",
  4: "the stacks are larger than the scan limit",
  5: "stack memory could not be read",
  6: "a stack pointer is not 8-byte aligned",
  7: "the mappings could not be read",
  8: "a thread's registers are unknown",
  9: "the tracer ran out of memory",
  10: "a thread runs on memory other than its own stack (a signal or coroutine stack)",
};

export type StopCheckResult =
  | { proven: true; resumed: Resumed; scanNs: number; scanned: number }
  | (Unproven & {
      /** the world, held stopped, as stopWorld returns it */
      world: World;
    });

/** What the scan saw instead of a proof: the fields of NativeProof, and a sentence. */
export type Unproven = Pick<NativeProof, "reason" | "tid" | "addr" | "where" | "scanNs" | "scanned"> & {
  proven: false;
  /** PROOF_REASONS' text, with the thread and address */
  why: string;
};

export interface Patch {
  addr: bigint;
  /** what the site must hold now */
  expect: Uint8Array;
  /** what to write there (same length) */
  bytes: Uint8Array;
}

export interface SeccompState {
  /** 0 none, 1 strict, 2 filter */
  mode: number;
  count: number;
  fingerprint: bigint;
  filters: Uint8Array;
}

export interface WaitResult {
  hit: boolean;
  elapsedNs: number;
  rsp: bigint;
}

export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;
export const MAP = {
  SHARED: 0x01,
  PRIVATE: 0x02,
  FIXED: 0x10,
  ANONYMOUS: 0x20,
  NORESERVE: 0x4000,
  FIXED_NOREPLACE: 0x100000,
} as const;
export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2 } as const;

/** x86-64 syscall numbers of the remote calls. */
export const SYS = {
  close: 3,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  ftruncate: 77,
  memfd_create: 319,
} as const;

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([k, v]) => [v as number, k]),
);

function errnoName(e: number): string {
  return errnoNames.get(e) ?? `E${e}`;
}

function sysName(nr: number): string {
  for (const [k, v] of Object.entries(SYS)) if (v === nr) return k;
  return `syscall ${nr}`;
}

function hex(v: bigint | number): string {
  return "0x" + BigInt.asUintN(64, BigInt(v)).toString(16);
}

function protText(p: number): string {
  if (p === 0) return "PROT_NONE";
  return ["READ", "WRITE", "EXEC"].filter((_, i) => p & (1 << i)).map((s) => "PROT_" + s).join("|");
}

function describeAction(ret: number, action: number): string {
  const data = ret & 0xffff;
  switch (action >>> 0) {
    case SeccompAction.KILL_PROCESS:
      return "kill the process";
    case SeccompAction.KILL_THREAD:
      return "kill the thread";
    case SeccompAction.TRAP:
      return "send it SIGSYS";
    case SeccompAction.ERRNO:
      return `fail the call with ${errnoName(data)}`;
    case SeccompAction.USER_NOTIF:
      return "hand the call to a user-space supervisor";
    case SeccompAction.TRACE:
      return "hand the call to a tracer (with us as tracer it fails with ENOSYS)";
    default:
      return `act 0x${(ret >>> 0).toString(16)}`;
  }
}

/** The stopped world of a native reply, with a ThreadState per thread. */
function worldOf(raw: NativeStopped): World {
  const threads: ThreadState[] = [];
  for (let i = 0; i < raw.tids.length; i++) {
    const base = i * NREGS;
    let regs: Regs | undefined;
    threads.push({
      tid: raw.tids[i],
      flags: raw.flags[i],
      pendingSignal: raw.pendingSig[i],
      pc: raw.regs[base + REG.rip],
      sp: raw.regs[base + REG.rsp],
      get regs() {
        return (regs ??= regsAt(raw.regs, i));
      },
      stack: raw.stacks.subarray(i * raw.window, i * raw.window + raw.stackLen[i]),
    });
  }
  return {
    threads,
    window: raw.window,
    interruptNs: raw.interruptNs,
    waitNs: raw.waitNs,
    readNs: raw.readNs,
    totalNs: raw.totalNs,
    raw,
  };
}

/**
 * Stack bytes the tracer's scan reads at most per stop, all threads together, before it
 * leaves the decision to the precise check: parked threads use a few KiB each (the
 * main thread's [stack] also holds the environment and auxv), so 1 MiB covers 100
 * threads of a server; reading it costs about as much as the trip it saves.
 */
export const DEFAULT_MAX_SCAN = 1 << 20;

function unproven(r: NativeProof): Unproven {
  const at = r.reason === 2 ? ` (0x${r.addr.toString(16)} at 0x${r.where.toString(16)})` : r.addr ? ` (0x${r.addr.toString(16)})` : "";
  return {
    proven: false,
    why: `${PROOF_REASONS[r.reason] ?? `reason ${r.reason}`}${r.tid ? `: tid ${r.tid}` : ""}${at}`,
    reason: r.reason,
    tid: r.tid,
    addr: r.addr,
    where: r.where,
    scanNs: r.scanNs,
    scanned: r.scanned,
  };
}

/** Spans sorted and merged (overlapping or adjacent), as the tracer takes them. */
export function mergeSpans(spans: Span[]): Span[] {
  const out: Span[] = [];
  for (const s of [...spans].filter((x) => x.lo <= x.hi).sort((x, y) => (x.lo < y.lo ? -1 : x.lo > y.lo ? 1 : 0))) {
    const last = out[out.length - 1];
    if (last && s.lo <= last.hi + 1n) {
      if (s.hi > last.hi) last.hi = s.hi;
    } else out.push({ lo: s.lo, hi: s.hi });
  }
  return out;
}


export class Tracer {
  private chain: Promise<unknown> = Promise.resolve();
  private seccompCache = new Map<number, SeccompState>();
  private site?: bigint;
  private core?: Core;
  private closed = false;
  private sharerPass?: SharerPass;

  private constructor(
    private readonly native: NativeTracer,
    core?: Core,
  ) {
    this.core = core;
  }

  /** Starts a tracer process. `core` evaluates seccomp filters (default: build/core.wasm). */
  static open(opts: { core?: Core; tracer?: string } = {}): Tracer {
    const shim = loadNative();
    try {
      return new Tracer(shim.spawnTracer(opts.tracer ?? tracerPath()), opts.core);
    } catch (e) {
      throw ShimError.from(e);
    }
  }

  /** pid of the tracer process. */
  get pid(): number {
    return this.native.pid;
  }

  /** Runs requests one at a time, in call order; converts failures to ShimError. */
  private run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p.catch((e) => {
      throw ShimError.from(e);
    });
  }

  hello(): Promise<{ version: number; pid: number }> {
    return this.run(() => this.native.hello());
  }

  /**
   * Seizes every thread of `pid` (they keep running). Refuses processes it may not
   * trace, dead ones, zombies, traced ones, and ones sharing their address space
   * with other processes unless `stopSharers` (then those are stopped with it).
   * The sharers are found by comparing with every process, or, with a SharerPass
   * (`opts.pass`, else the one given to useSharerPass), from that pass and the
   * processes created since (src/shim/sharers.ts).
   */
  attach(pid: number, opts: { stopSharers?: boolean; pass?: SharerPass } = {}): Promise<Attached> {
    this.seccompCache.clear();
    this.site = undefined;
    const pass = opts.pass ?? this.sharerPass;
    return this.run(async () => {
      const hint = pass ? await pass.hint(pid, () => this.native.vmPass()) : undefined;
      const a = await this.native.attach(pid, opts.stopSharers ?? false, hint);
      if (pass && hint) pass.observe(a.sharerCheck);
      return { pid: a.pid, tids: [...a.tids], sharers: [...a.sharers], jobStopped: a.jobStopped, sharerCheck: a.sharerCheck };
    });
  }

  /** The SharerPass every later attach of this tracer uses (undefined: none, compare with every process). */
  useSharerPass(pass: SharerPass | undefined): void {
    this.sharerPass = pass;
  }

  /** One pass over /proc grouping every process by address space (see SharerPass). */
  vmPass(): Promise<NativeVmPass> {
    return this.run(() => this.native.vmPass());
  }

  /** Rolls back an open transaction, resumes and detaches every thread. */
  detach(): Promise<void> {
    return this.run(() => this.native.detach());
  }

  async threads(): Promise<ThreadInfo[]> {
    const t = await this.run(() => this.native.threads());
    return [...t.tids].map((tid, i) => ({ tid, state: t.states[i] }));
  }

  /**
   * Stops every thread in parallel (interrupt all, then collect all) and returns
   * their registers and `window` bytes of stack from each rsp. The pause starts here.
   */
  async stopWorld(opts: { window?: number; timeoutMs?: number } = {}): Promise<World> {
    return worldOf(await this.run(() => this.native.stopWorld(opts.window ?? 0, opts.timeoutMs ?? 2000)));
  }

  /**
   * Stops every thread and, in the same request, proves the stop safe if it can: no
   * thread's pc + 1 and no aligned word of any thread's live stack (rsp to the end of
   * its writable mapping) in any of `spans` (closed intervals of return addresses). Proven: writes `patches` as
   * patchAndResume does and resumes, so the pause never waits for JavaScript. Not
   * proven (a word in a span, a stack it cannot see whole, more than `maxScan` bytes):
   * the world stays stopped and is returned as stopWorld returns it, with `window`
   * bytes of stack per thread, for a precise check. shim/proof.c says why this is sound.
   */
  async stopCheckPatch(
    spans: Span[],
    patches: Patch[],
    opts: { window?: number; timeoutMs?: number; maxScan?: number; commit?: boolean } = {},
  ): Promise<StopCheckResult> {
    const r = await this.prove(spans, patches, opts, false);
    if (r.proven) return { proven: true, resumed: r.resumed!, scanNs: r.scanNs, scanned: r.scanned };
    return { ...unproven(r), world: worldOf(r.world!) };
  }

  /**
   * The same stop and scan, nothing written: the world is held stopped either way
   * (what the scan concluded, and the world to check it against).
   */
  async stopAndProve(spans: Span[], opts: { window?: number; timeoutMs?: number; maxScan?: number } = {}): Promise<{ proven: boolean; why?: string; reason: number; tid: number; addr: bigint; where: bigint; scanNs: number; scanned: number; world: World }> {
    const r = await this.prove(spans, [], opts, true);
    const world = worldOf(r.world!);
    return r.proven ? { proven: true, reason: 0, tid: 0, addr: 0n, where: 0n, scanNs: r.scanNs, scanned: r.scanned, world } : { ...unproven(r), world };
  }

  private prove(spans: Span[], patches: Patch[], opts: { window?: number; timeoutMs?: number; maxScan?: number; commit?: boolean }, hold: boolean): Promise<NativeProof> {
    const sorted = mergeSpans(spans);
    const packed = new BigUint64Array(sorted.length * 2);
    sorted.forEach((s, i) => {
      packed[2 * i] = s.lo;
      packed[2 * i + 1] = s.hi;
    });
    return this.run(() =>
      this.native.stopCheckPatch(opts.window ?? 0, opts.timeoutMs ?? 2000, opts.maxScan ?? DEFAULT_MAX_SCAN, packed, patches, opts.commit ?? true, hold),
    );
  }

  /** Resumes every thread; reports the pause (first interrupt to last resume). */
  resumeAll(): Promise<Resumed> {
    return this.run(() => this.native.resumeAll());
  }

  /**
   * With the world stopped: checks every site holds `expect` (nothing is written
   * otherwise: SITE_MISMATCH), writes every patch, commits the open transaction,
   * and resumes every thread, in one request.
   */
  patchAndResume(patches: Patch[], opts: { commit?: boolean } = {}): Promise<Resumed> {
    return this.run(() => this.native.patchAndResume(patches, opts.commit ?? true));
  }

  async getRegs(tid: number): Promise<Regs> {
    return regsAt(await this.run(() => this.native.getRegs(tid)));
  }

  setRegs(tid: number, regs: Regs): Promise<void> {
    const packed = packRegs(regs);
    return this.run(() => this.native.setRegs(tid, packed));
  }

  /** DR0..DR7 of a thread (DR4/DR5 read as 0). */
  async debugRegs(tid: number): Promise<bigint[]> {
    return [...(await this.run(() => this.native.debugRegs(tid)))];
  }

  /**
   * Reads many ranges in one request (process_vm_readv, many ranges per call;
   * pages without read access through /proc/PID/mem). Each result holds the
   * bytes that could be read: shorter than asked where the range runs into
   * unmapped memory.
   */
  async readMemory(ranges: ReadonlyArray<{ addr: bigint; len: number }>): Promise<Uint8Array[]> {
    const packed = new BigUint64Array(ranges.length * 2);
    ranges.forEach((r, i) => {
      packed[2 * i] = r.addr;
      packed[2 * i + 1] = BigInt(r.len);
    });
    const res = await this.run(() => this.native.readMemory(packed));
    const out: Uint8Array[] = [];
    let off = 0;
    ranges.forEach((r, i) => {
      out.push(res.data.subarray(off, off + res.got[i]));
      off += r.len;
    });
    return out;
  }

  /** Reads exactly `len` bytes at `addr`, or throws EFAULT naming the address. */
  async read(addr: bigint, len: number): Promise<Uint8Array> {
    const [b] = await this.readMemory([{ addr, len }]);
    if (b.length !== len)
      throw new ShimError(
        `readMemory: ${len} bytes at ${hex(addr)}: only ${b.length} readable`,
        "EFAULT",
        "readMemory",
        "process_vm_readv",
        osConstants.errno.EFAULT,
        0,
      );
    return b;
  }

  /** Writes data pages (process_vm_writev; EFAULT on pages without write access). */
  writeData(addr: bigint, bytes: Uint8Array): Promise<void> {
    return this.run(() => this.native.writeData(addr, bytes));
  }

  /** Writes any page, text included, through /proc/PID/mem. */
  writeText(addr: bigint, bytes: Uint8Array): Promise<void> {
    return this.run(() => this.native.writeText(addr, bytes));
  }

  /**
   * Calls the function at `addr` in thread `tid` (stopping it if the world runs) with up
   * to 6 integer arguments and returns its rax: for a short pure function such as an IFUNC
   * resolver. Every register and the SSE/AVX state are restored exactly; a syscall the
   * function tries is skipped and fails the call (CALL_SYSCALL), a fault fails it
   * (CALL_FAULT), so does a timeout (CALL_TIMEOUT). Refused inside a transaction.
   */
  async call(tid: number, addr: bigint, args: readonly bigint[] = [], opts: { timeoutMs?: number } = {}): Promise<bigint> {
    if (args.length > 6) throw new ShimError(`call: ${args.length} arguments (6 at most, in registers)`, "BAD_ARGUMENT", "call", "", 0, tid);
    const a = new BigUint64Array(6);
    args.forEach((v, i) => (a[i] = BigInt.asUintN(64, v)));
    const r = await this.run(() => this.native.call(tid, addr, a, opts.timeoutMs ?? 1000));
    return r.ret;
  }

  /** Address of the `syscall` instruction remote syscalls run at. */
  async syscallSite(): Promise<bigint> {
    return (this.site ??= await this.run(() => this.native.syscallSite()));
  }

  /** The seccomp mode and filters of a thread. */
  async seccomp(tid: number): Promise<SeccompState> {
    const s = await this.run(() => this.native.seccompFilters(tid));
    this.seccompCache.set(tid, s);
    return s;
  }

  private getCore(): Core {
    return (this.core ??= nodeCore());
  }

  /**
   * Refuses a call (and the calls a rollback would make to undo it) that the
   * thread's seccomp filters would not let through; returns the fingerprint of
   * the filters checked against.
   */
  private async checkSeccomp(op: string, tid: number, calls: Array<{ nr: number; args: bigint[] }>): Promise<bigint> {
    const st = this.seccompCache.get(tid) ?? (await this.seccomp(tid));
    if (st.mode === 0) return st.fingerprint;
    if (st.mode === 1)
      throw new ShimError(
        `${op}: tid ${tid} is in seccomp strict mode (only read, write, _exit and sigreturn are allowed); not attempted`,
        "SECCOMP_DENIED", op, "", 0, tid,
      );
    const ip = (await this.syscallSite()) + 2n;
    const core = this.getCore();
    for (const c of calls) {
      const ret = seccompEval(core, st.filters, { nr: c.nr, ip, args: c.args });
      const action = seccompAction(core, ret);
      if (action === SeccompAction.ALLOW || action === SeccompAction.LOG) continue;
      throw new ShimError(
        `${op}: the seccomp filters of tid ${tid} would ${describeAction(ret, action)} for ${sysName(c.nr)}` +
          `(${c.args.slice(0, 3).map(hex).join(", ")}, ...) (they return 0x${(ret >>> 0).toString(16)}, ` +
          `${seccompActionName(action)}); not attempted`,
        "SECCOMP_DENIED", op, "", 0, tid,
      );
    }
    return st.fingerprint;
  }

  /**
   * Runs a syscall in thread `tid` (stopping it if the world runs) after checking
   * its seccomp filters let it through; the thread is restored exactly, a blocking
   * syscall it was in is restarted as the kernel would. Returns the raw result
   * (negative errno on failure). `undo` lists the calls a rollback would need.
   */
  async syscall(
    tid: number,
    nr: number,
    args: readonly bigint[],
    opts: { scratch?: Uint8Array; scratchArg?: number; undo?: Array<{ nr: number; args: bigint[] }>; op?: string } = {},
  ): Promise<bigint> {
    const op = opts.op ?? sysName(nr);
    const a = new BigUint64Array(6);
    args.forEach((v, i) => (a[i] = BigInt.asUintN(64, v)));
    const calls = [{ nr, args: [...a] }, ...(opts.undo ?? [])];
    for (let attempt = 0; ; attempt++) {
      const fp = await this.checkSeccomp(op, tid, calls);
      try {
        const r = await this.run(() =>
          this.native.syscall(tid, nr, a, fp, opts.scratch ?? null, opts.scratchArg ?? 0),
        );
        return r.ret;
      } catch (e) {
        if (e instanceof ShimError && e.code === "SECCOMP_UNCHECKED" && attempt === 0) {
          this.seccompCache.delete(tid);
          continue;
        }
        throw e;
      }
    }
  }

  private check(op: string, tid: number, ret: bigint, what: string): bigint {
    if (ret < 0n && ret > -4096n) {
      const e = Number(-ret);
      throw new ShimError(
        `${op}: remote ${what} in tid ${tid} failed: ${errnoName(e)}`,
        errnoName(e), op, op, e, tid,
      );
    }
    return ret;
  }

  /** mmap in the target. W+X mappings are refused: patch memory is never writable and executable. */
  async mmap(
    tid: number,
    m: { addr?: bigint; length: number | bigint; prot: number; flags: number; fd?: number; offset?: bigint },
  ): Promise<bigint> {
    if (m.prot & PROT.WRITE && m.prot & PROT.EXEC)
      throw new ShimError(`mmap: ${protText(m.prot)} refused: memory is never writable and executable`, "BAD_ARGUMENT", "mmap", "", 0, tid);
    const args = [m.addr ?? 0n, BigInt(m.length), BigInt(m.prot), BigInt(m.flags), BigInt(m.fd ?? -1), m.offset ?? 0n];
    const ret = await this.syscall(tid, SYS.mmap, args, {
      undo: [{ nr: SYS.munmap, args: [m.addr ?? 0n, BigInt(m.length)] }],
    });
    return this.check("mmap", tid, ret, `mmap(${hex(args[0])}, ${m.length}, ${protText(m.prot)}, ${hex(m.flags)})`);
  }

  async munmap(tid: number, addr: bigint, length: number | bigint): Promise<void> {
    const ret = await this.syscall(tid, SYS.munmap, [addr, BigInt(length)]);
    this.check("munmap", tid, ret, `munmap(${hex(addr)}, ${length})`);
  }

  async mprotect(tid: number, addr: bigint, length: number | bigint, prot: number): Promise<void> {
    if (prot & PROT.WRITE && prot & PROT.EXEC)
      throw new ShimError(`mprotect: ${protText(prot)} refused: memory is never writable and executable`, "BAD_ARGUMENT", "mprotect", "", 0, tid);
    const ret = await this.syscall(tid, SYS.mprotect, [addr, BigInt(length), BigInt(prot)], {
      undo: [{ nr: SYS.mprotect, args: [addr, BigInt(length), BigInt(PROT.READ)] }],
    });
    this.check("mprotect", tid, ret, `mprotect(${hex(addr)}, ${length}, ${protText(prot)})`);
  }

  /** memfd_create in the target; returns the target's fd. */
  async memfdCreate(tid: number, name: string, flags = MFD.CLOEXEC): Promise<number> {
    const scratch = new TextEncoder().encode(name + "\0");
    if (scratch.length > 250) throw new ShimError(`memfd_create: name of ${scratch.length} bytes (249 max)`, "BAD_ARGUMENT", "memfd_create", "", 0, tid);
    const ret = await this.syscall(tid, SYS.memfd_create, [0n, BigInt(flags)], {
      scratch,
      scratchArg: 0,
      undo: [{ nr: SYS.close, args: [3n] }],
    });
    return Number(this.check("memfd_create", tid, ret, `memfd_create("${name}", ${flags})`));
  }

  async ftruncate(tid: number, fd: number, length: number | bigint): Promise<void> {
    const ret = await this.syscall(tid, SYS.ftruncate, [BigInt(fd), BigInt(length)]);
    this.check("ftruncate", tid, ret, `ftruncate(${fd}, ${length})`);
  }

  /** close(2) in the target. */
  async closeFd(tid: number, fd: number): Promise<void> {
    const ret = await this.syscall(tid, SYS.close, [BigInt(fd)]);
    this.check("close", tid, ret, `close(${fd})`);
  }

  /** Ends the session: the tracer rolls back an open transaction, detaches and exits. */
  async close(): Promise<{ code: number | null; signal: number | null }> {
    if (this.closed) return { code: 0, signal: null };
    this.closed = true;
    return this.run(() => this.native.close());
  }

  /**
   * With the world stopped: arms a hardware breakpoint at `addr` in thread `tid`,
   * resumes every thread, and waits until `tid` executes `addr` with rsp > `sp`
   * (the frame whose return slot is at `sp` has returned; 0n: any), or the timeout.
   * The breakpoint lives only inside the tracer and is disarmed before this
   * returns, also when patchc dies meanwhile. The world is left running.
   */
  waitReturn(tid: number, addr: bigint, opts: { sp?: bigint; timeoutMs: number }): Promise<WaitResult> {
    return this.run(() => this.native.waitReturn(tid, addr, opts.sp ?? 0n, opts.timeoutMs));
  }

  /** Opens a transaction: changes are journaled and rolled back if patchc dies before commit. */
  begin(): Promise<void> {
    return this.run(() => this.native.begin());
  }

  commit(): Promise<void> {
    return this.run(() => this.native.commit());
  }

  /** Undoes the open transaction; resolves with the number of changes undone. */
  rollback(): Promise<number> {
    return this.run(() => this.native.rollback());
  }
}

/** The thread ids in /proc/PID/task. */
export function listTasks(pid: number): number[] {
  try {
    return [...loadNative().listTasks(pid)];
  } catch (e) {
    throw ShimError.from(e);
  }
}

/** A character device (the kernel module's), for ioctls with a buffer in and out. */
export class Device {
  private constructor(
    private readonly shim: NativeShim,
    readonly fd: number,
    readonly path: string,
  ) {}

  static open(path: string, flags?: number): Device {
    const shim = loadNative();
    try {
      return new Device(shim, shim.deviceOpen(path, flags), path);
    } catch (e) {
      throw ShimError.from(e);
    }
  }

  /** ioctl(2) on a pool thread; `buf` is passed in and holds what the kernel left in it. */
  async ioctl(request: number | bigint, buf: Uint8Array | null = null): Promise<number> {
    try {
      return await this.shim.deviceIoctl(this.fd, request, buf);
    } catch (e) {
      throw ShimError.from(e);
    }
  }

  close(): void {
    try {
      this.shim.deviceClose(this.fd);
    } catch (e) {
      throw ShimError.from(e);
    }
  }
}
