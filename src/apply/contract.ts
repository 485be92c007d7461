// The interfaces between the parts of `patchc apply` (one file, so the parts can be
// built in parallel against them). Runtime addresses are bigints in the target's
// address space (link-time address + the module's load bias).
//
//   plan.ts      package + target  -> PatchPlan (before anything is touched)
//   resolve.ts   every Reference   -> a definite runtime value (GOT/PLT slot, symbol, TLS)
//   region.ts    the patch region's header (what is applied, read back by status)
//   safety.ts    a stopped world   -> which thread is where (entry windows, functions)
//   session.ts   apply / revert: memory, stop, check, write, resume, wait, retry, undo
//   status.ts    what is applied, read from the target itself
import type { LoadedModule, LinkMapEntry } from "./modules.js";
import type { Mapping } from "./maps.js";

/** A half-open range [lo, hi) of runtime addresses and what it is. */
export interface Range {
  lo: bigint;
  hi: bigint;
  /** the function (or piece) for messages: "foo", "foo.cold", "foo (a.c #2)" */
  name: string;
}

/** How one package reference binds in this process (resolve.ts); what the relocation engine is given. */
export type Binding =
  | { kind: "addr"; addr: bigint } // the symbol's runtime address
  | { kind: "got"; slot: bigint } // a runtime address of a GOT slot that holds the value
  | { kind: "plt"; addr: bigint } // a runtime PLT entry
  | { kind: "tls"; module: bigint; offset: bigint; blockTpoff?: bigint }; // blockTpoff undefined: dynamic TLS

export interface ResolvedReference {
  /** index into the package's `references` */
  reference: number;
  binding: Binding;
  /** for people: "GOT slot 0x... of /usr/sbin/nginx", "memcpy@GLIBC_2.14 in libc.so.6 (IFUNC: __memmove_avx_unaligned_erms)" */
  how: string;
}

/** The process as apply sees it before touching it. */
export interface TargetProcess {
  pid: number;
  maps: Mapping[];
  /** the module the package patches, matched by build-id */
  module: LoadedModule;
  linkMap: LinkMapEntry[];
}

/** One function site the patch redirects. */
export interface SitePlan {
  /** name for messages */
  name: string;
  /** runtime address the jump is written at (the entry, after an endbr64 that is kept) */
  site: bigint;
  /** what the site holds before this patch: the original bytes, or the jump of the patch this one stacks on */
  expect: Uint8Array;
  /** the patch (id) whose jump `expect` is, when stacking; undefined for the original code */
  previous?: string;
  /** the code being replaced: the function and its pieces (old version, runtime); the stack check forbids these */
  oldRanges: Range[];
}

/** The patch laid out at a base address: bytes to place and jumps to write. */
export interface PatchImage {
  base: bigint;
  /** the whole region, header first; length is a multiple of the page size */
  bytes: Uint8Array;
  /** protection of each page-aligned part of the region, in order, covering it */
  parts: Array<{ offset: number; size: number; prot: number }>;
  /** one per SitePlan, same order: the jump to write (same length as `expect`) and where it goes */
  jumps: Array<{ site: bigint; bytes: Uint8Array; newAddr: bigint; newSize: bigint }>;
  /** the new code, for the stack check of a later revert and for perf maps */
  newRanges: Range[];
}

/** Everything apply needs, computed before the target is stopped. */
export interface PatchPlan {
  patchId: string;
  /** content hash (64 hex) of the package */
  hash: string;
  file: string;
  target: TargetProcess;
  /** size of the region (page multiple) and where it may lie */
  regionSize: bigint;
  reach: Array<{ start: bigint; end: bigint }>;
  below2G: boolean;
  sites: SitePlan[];
  references: ResolvedReference[];
  /** relocates the package for the region at `base` and encodes the header */
  layout(base: bigint): PatchImage;
}

// ---- The library entry points (src/apply/index.ts, built on the parts above) ----
//
//   applyPatch(pid: number, pkg: ReadPackage, opts: ApplyOptions): Promise<ApplyReport>
//   revertPatch(pid: number, which: string | "all", opts: RevertOptions): Promise<RevertReport>
//   readStatus(pid: number, opts?: { core?: Core }): Promise<StatusReport>
//
// Each throws ApplyError (errors.ts) on a refusal or failure, after undoing its own steps.

export type Consistency = "function" | "entry";

export interface ApplyOptions {
  /** "function" (default): no thread inside a replaced function; "entry": only no pc in an entry window */
  consistency?: Consistency;
  /** how long to wait and retry for threads to leave (default 5000) */
  timeoutMs?: number;
  /** the Wasm core; default: nodeCore() */
  core?: import("../core/instance.js").Core;
  /** progress for a terminal display: "resolve", "map", "write", "stop", "wait", "done" */
  onPhase?: (phase: string) => void;
  /**
   * apply only: a tracer to use instead of starting one (`--all` reuses one per parallel
   * job). It must not be attached; apply attaches it to the target and leaves it detached
   * (and open) on every path, failures included. Default: a tracer of its own, closed after.
   */
  tracer?: import("../shim/index.js").Tracer;
}

export type RevertOptions = Omit<ApplyOptions, "consistency" | "tracer">;

export interface AppliedFunction {
  name: string;
  site: bigint;
  newAddr: bigint;
  newSize: bigint;
  /** the patch whose version this one superseded at the site, when stacking */
  previous?: string;
}

export interface ApplyReport {
  pid: number;
  patchId: string;
  hash: string;
  module: { path: string; buildId: string; bias: bigint };
  region: { base: bigint; size: bigint; name: string; memfd: boolean };
  functions: AppliedFunction[];
  consistency: Consistency;
  /** the target's pause(s), measured in the tracer: the successful stop, and the sum over all attempts */
  pauseNs: number;
  pauseTotalNs: number;
  attempts: number;
  /** waiting for threads to leave replaced functions */
  waitedNs: number;
  /**
   * How the successful stop was shown safe: "scan" by the tracer's word scan of every
   * stack inside the stop (no stack word in any replaced function: patched without
   * leaving the tracer), "unwind" by patchc's precise check (the scan saw such a word,
   * `unprovenBy` says which, and the stack was unwound to see whether it is a frame).
   */
  provenBy: "scan" | "unwind";
  unprovenBy?: string;
  /** the whole operation, patchc's side */
  totalNs: number;
}

export interface RevertReport {
  pid: number;
  reverted: Array<{ patchId: string; functions: string[]; freed: boolean /* false: kept and marked retired (a frame may still be in it) */ }>;
  pauseNs: number;
  totalNs: number;
}

export interface StatusPatch {
  patchId: string;
  hash: string;
  state: "active" | "retired";
  module: { path: string; buildId: string };
  region: { base: bigint; size: bigint };
  appliedAt: Date;
  functions: Array<{ name: string; site: bigint; newAddr: bigint; previous?: string; /** this patch's jump is what the site holds now */ current: boolean }>;
}

export interface StatusReport {
  pid: number;
  /** in the order applied */
  patches: StatusPatch[];
}
