// The exact contract of shim/build/Release/patchc_shim.node (shim/addon.cc).
//
// The addon is flat and syscall-shaped: it checks its arguments (TypeError,
// RangeError, thrown synchronously), sends each Tracer request to the tracer
// process (shim/tracer.c) over a socket driven by the event loop (never blocking
// the JavaScript thread), one request at a time in call order, and resolves with
// the decoded reply. Every rejection is a NativeError. Addresses are bigint; lengths and
// times that fit in 2^53 are numbers. Register files are 27 u64 in the order of
// struct user_regs_struct (x86-64, <sys/user.h>): see REG_NAMES in ./regs.ts.
//
// Thread state bits (flags/states): 1 stopped, 2 group-stopped (job control),
// 4 a signal is held for re-delivery, 8 thread of a CLONE_VM sharer, 16 stopped
// inside a syscall (orig_rax >= 0).

/** How every failure is reported. */
export interface NativeError extends Error {
  /** an errno name ("ESRCH") or a reason ("SITE_MISMATCH", "STOP_TIMEOUT", "TRACER_GONE", ...) */
  code: string;
  /** errno of the failing syscall; 0 when no syscall failed */
  errno: number;
  /** the syscall, as "ptrace(PTRACE_INTERRUPT)" or "process_vm_readv"; "" when none */
  syscall: string;
  /** the thread the failure concerns; 0 when none */
  tid: number;
  /** the operation: a Tracer method name, "spawnTracer", "listTasks", "deviceIoctl", ... */
  op: string;
}

export interface NativeAttached {
  pid: number;
  /** every traced task, the target's and (when asked) its sharers' */
  tids: Int32Array;
  /** processes sharing the target's address space (CLONE_VM), stopped with it */
  sharers: Int32Array;
  /** the target was stopped by job control when attached (and stays so) */
  jobStopped: boolean;
  /** how the sharers were found (shim/sharers.c) */
  sharerCheck: NativeSharerCheck;
}

export interface NativeSharerCheck {
  /** compared with every process (no pass given, or it could not be trusted) */
  full: boolean;
  /** ... because the pass given could no longer be trusted (take a new one) */
  stale: boolean;
  /** kcmp calls */
  checked: number;
  /** ns_last_pid as the check read it (-1: not read), and CLOCK_MONOTONIC ns before that read */
  seenPid: number;
  seenNs: bigint;
}

/** OP_VM_PASS: every process grouped by address space (shim/sharers.c) */
export interface NativeVmPass {
  lastPid: number;
  pidMax: number;
  /** the cursor last seen (at the end of the pass), and CLOCK_MONOTONIC ns before that read */
  seenPid: number;
  seenNs: bigint;
  tookNs: number;
  kcmps: number;
  tries: number;
  gapNs: number;
  /** sorted by address space; same[i]: pids[i] shares pids[i - 1]'s */
  pids: Int32Array;
  same: Uint8Array;
}

export interface NativeAttachPass {
  lastPid: number;
  pidMax: number;
  seenPid: number;
  seenNs: bigint;
  candidates: Int32Array;
}

export interface NativeThreads {
  tids: Int32Array;
  states: Uint32Array;
}

export interface NativeStopped {
  /** bytes per stack window in `stacks` */
  window: number;
  /** sending every PTRACE_INTERRUPT */
  interruptNs: number;
  /** from the last interrupt until every thread reported its stop */
  waitNs: number;
  /** reading registers and stack windows */
  readNs: number;
  /** the pause so far: first interrupt to the reply */
  totalNs: number;
  tids: Int32Array;
  flags: Uint32Array;
  /** the signal held for re-delivery, 0 when none */
  pendingSig: Int32Array;
  /** bytes read of each window (short at the end of a stack mapping) */
  stackLen: Uint32Array;
  /** tids.length x 27 registers */
  regs: BigUint64Array;
  /** tids.length x window bytes: thread i's window [rsp, rsp + window) at i * window */
  stacks: Uint8Array;
}

export interface NativeResumed {
  /** first interrupt of the stop to the last resume, measured in the tracer */
  pauseNs: number;
  checkNs: number;
  writeNs: number;
  resumeNs: number;
}

export interface NativePatch {
  addr: bigint;
  /** the bytes the site must hold now (1..4096) */
  expect: Uint8Array;
  /** what to write there (same length) */
  bytes: Uint8Array;
}

export interface NativeRead {
  /** bytes read of each range */
  got: Float64Array;
  /** the ranges' bytes, each range's full length in order (only `got` of each valid) */
  data: Uint8Array;
}

export interface NativeSyscallResult {
  /** the raw return value: negative errno on failure */
  ret: bigint;
  tid: number;
  /** microseconds the request took in the tracer */
  tracerUs: number;
}

export interface NativeCallResult {
  /** the function's rax */
  ret: bigint;
  tid: number;
  /** microseconds the request took in the tracer */
  tracerUs: number;
}

export interface NativeSeccomp {
  /** 0 none, 1 strict, 2 filter */
  mode: number;
  count: number;
  /** identifies mode and filters; 0 when mode is 0 */
  fingerprint: bigint;
  /** per filter, oldest first: count u32, pad u32, count x 8-byte sock_filter */
  filters: Uint8Array;
}

export interface NativeWaited {
  hit: boolean;
  elapsedNs: number;
  /** rsp when the breakpoint was hit; 0n otherwise */
  rsp: bigint;
}

export interface NativeProof {
  proven: boolean;
  /** PROOF_* of shim/proto.h when not proven */
  reason: number;
  tid: number;
  addr: bigint;
  where: bigint;
  scanNs: number;
  scanned: number;
  /** patched and resumed (proven, not held) */
  resumed?: NativeResumed;
  /** the world, held stopped (not proven, or held) */
  world?: NativeStopped;
}

export declare class Tracer {
  private constructor();
  /** pid of the tracer process */
  readonly pid: number;
  hello(): Promise<{ version: number; pid: number }>;
  attach(pid: number, stopSharers: boolean, pass?: NativeAttachPass): Promise<NativeAttached>;
  vmPass(): Promise<NativeVmPass>;
  detach(): Promise<void>;
  threads(): Promise<NativeThreads>;
  stopWorld(window: number, timeoutMs: number): Promise<NativeStopped>;
  resumeAll(): Promise<NativeResumed>;
  patchAndResume(patches: NativePatch[], commit: boolean): Promise<NativeResumed>;
  /** spans: lo, hi pairs (closed intervals, sorted, disjoint) */
  stopCheckPatch(window: number, timeoutMs: number, maxScan: number, spans: BigUint64Array, patches: NativePatch[], commit: boolean, hold: boolean): Promise<NativeProof>;
  getRegs(tid: number): Promise<BigUint64Array>;
  setRegs(tid: number, regs: BigUint64Array): Promise<void>;
  /** ranges: (address, length) pairs */
  readMemory(ranges: BigUint64Array): Promise<NativeRead>;
  /** process_vm_writev: data pages (writable) */
  writeData(addr: bigint, bytes: Uint8Array): Promise<void>;
  /** /proc/PID/mem: any page, text included */
  writeText(addr: bigint, bytes: Uint8Array): Promise<void>;
  /** args: 6 values; scratch (<= 4096 bytes) is copied below the red zone and its address replaces args[scratchArg] */
  syscall(
    tid: number,
    nr: number,
    args: BigUint64Array,
    seccompFingerprint: bigint,
    scratch: Uint8Array | null,
    scratchArg: number,
  ): Promise<NativeSyscallResult>;
  /** calls the function at addr (args: 6 values, rdi..r9) in a stopped thread, registers restored; resolves with its rax */
  call(tid: number, addr: bigint, args: BigUint64Array, timeoutMs: number): Promise<NativeCallResult>;
  syscallSite(): Promise<bigint>;
  seccompFilters(tid: number): Promise<NativeSeccomp>;
  waitReturn(tid: number, addr: bigint, sp: bigint, timeoutMs: number): Promise<NativeWaited>;
  begin(): Promise<void>;
  commit(): Promise<void>;
  /** resolves with the number of journal entries undone */
  rollback(): Promise<number>;
  /** DR0..DR7 (DR4, DR5 read as 0) */
  debugRegs(tid: number): Promise<BigUint64Array>;
  /** closes the connection; the tracer rolls back, detaches and exits */
  close(): Promise<{ code: number | null; signal: number | null }>;
}

export interface NativeShim {
  /** version of the wire protocol (shim/proto.h) */
  readonly wireVersion: number;
  /** starts the tracer process at `path` (in a session of its own) */
  spawnTracer(path: string): Tracer;
  /** the thread ids in /proc/PID/task */
  listTasks(pid: number): Int32Array;
  /** open(2) with O_CLOEXEC added; flags default O_RDWR */
  deviceOpen(path: string, flags?: number): number;
  /** ioctl(2) on a pool thread; buf is in and out (copied back when it returns); resolves with the return value */
  deviceIoctl(fd: number, request: number | bigint, buf: Uint8Array | null): Promise<number>;
  deviceClose(fd: number): void;
}
