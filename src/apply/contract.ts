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
