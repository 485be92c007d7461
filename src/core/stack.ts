// Typed wrapper over the stack-scan exports of core.wasm (docs/core-abi.md,
// "Stack-scan analysis"): the CFI registry, rows of the unwind table, and the
// per-thread analysis (precise unwinding with DWARF CFI, conservative word scan).
import { Core, CoreError } from "./instance.js";

interface StackExports {
  cfi_registry_new(): number;
  cfi_registry_free(h: number): number;
  cfi_registry_add(h: number, eh: number, ehLen: number, ehAddr: bigint, hdr: number, hdrLen: number, hdrAddr: bigint): number;
  cfi_registry_add_image(h: number, img: number, len: number, base: bigint): number;
  cfi_registry_add_sigreturn(h: number, addr: bigint): number;
  cfi_registry_remove(h: number, module: number): number;
  cfi_module_info(h: number, module: number, out: number): number;
  cfi_module_verify(h: number, module: number, out: number): number;
  cfi_row(h: number, pc: bigint, out: number): number;
  stack_scan_new(registry: number): number;
  stack_scan_free(h: number): number;
  stack_scan_add_forbidden(h: number, lo: bigint, hi: bigint, id: number): number;
  stack_scan_add_window(h: number, lo: bigint, hi: bigint, id: number): number;
  stack_scan_thread(h: number, regs: number, segs: number, nsegs: number, flags: number, maxFrames: number,
                    frames: number, framesCap: number, out: number): number;
}

function ex(core: Core): StackExports {
  return core.exports as unknown as StackExports;
}

const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

export interface ModuleInfo {
  lo: bigint; // lowest pc with an FDE
  hi: bigint; // end of the pcs covered
  fdes: number;
  fromHdr: boolean; // the lookup table came from .eh_frame_hdr (else from a scan of .eh_frame)
  ehFrameAddr: bigint;
}

/** Register rules of a row (DWARF 5, 6.4.1). */
export type Rule =
  | { kind: "unset" }
  | { kind: "undefined" }
  | { kind: "same" }
  | { kind: "offset"; offset: bigint } // saved at CFA+offset
  | { kind: "val_offset"; offset: bigint } // value is CFA+offset
  | { kind: "register"; reg: number }
  | { kind: "expression"; exprOffset: bigint; exprLength: bigint }
  | { kind: "val_expression"; exprOffset: bigint; exprLength: bigint };

export interface CfiRow {
  fdeBegin: bigint;
  fdeEnd: bigint;
  rowStart: bigint; // the row holds for pcs [rowStart, rowEnd)
  rowEnd: bigint;
  module: number;
  signalFrame: boolean; // the CIE has the 'S' augmentation
  fdeOffset: bigint;
  cfa: { kind: "reg"; reg: number; offset: bigint } | { kind: "expression"; exprOffset: bigint; exprLength: bigint } | { kind: "unset" };
  rules: Rule[]; // DWARF registers 0..16 (16: return address)
}

const RULE_KINDS = ["unset", "undefined", "same", "offset", "val_offset", "register", "expression", "val_expression"] as const;

/** DWARF register numbers of x86-64 (psABI 3.6.2), 0..16. */
export const DWARF_REG_NAMES = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"];

/** A registry of modules' CFI, the input of the unwinder. Free it with free(). */
export class CfiRegistry {
  readonly handle: number;
  private readonly owned = new Map<number, number>(); // module id -> its bytes in core memory
  constructor(readonly core: Core) {
    this.handle = ex(core).cfi_registry_new();
  }

  /** Adds .eh_frame bytes loaded at ehAddr (and optionally .eh_frame_hdr at hdrAddr). Returns the module id. */
  addModule(ehFrame: Uint8Array, ehAddr: bigint, hdr?: Uint8Array, hdrAddr = 0n, context = "cfi_registry_add"): number {
    const c = this.core;
    const e = c.copyIn(ehFrame); // borrowed by the module: freed when it is removed
    const h = hdr && hdr.length ? c.copyIn(hdr) : 0;
    try {
      const id = ex(c).cfi_registry_add(this.handle, e, ehFrame.length, u64(ehAddr), h, h ? hdr!.length : 0, u64(hdrAddr));
      if (id === 0) {
        c.exports.free(e);
        throw c.lastError(context);
      }
      this.owned.set(id, e);
      return id;
    } finally {
      if (h) c.exports.free(h);
    }
  }

  /** Adds an ELF image as mapped in the target (the vDSO), read from its first PT_LOAD page at `base`. */
  addImage(image: Uint8Array, base: bigint, context = "cfi_registry_add_image"): number {
    const c = this.core;
    const p = c.copyIn(image);
    const id = ex(c).cfi_registry_add_image(this.handle, p, image.length, u64(base));
    if (id === 0) {
      c.exports.free(p);
      throw c.lastError(context);
    }
    this.owned.set(id, p);
    return id;
  }

  /** Declares a sigreturn trampoline without CFI (mov $15,%rax; syscall) at addr. */
  addSigreturn(addr: bigint): void {
    if (ex(this.core).cfi_registry_add_sigreturn(this.handle, u64(addr)) !== 0) throw this.core.lastError();
  }

  remove(module: number): void {
    if (ex(this.core).cfi_registry_remove(this.handle, module) !== 0) throw this.core.lastError();
    const p = this.owned.get(module);
    if (p !== undefined) this.core.exports.free(p);
    this.owned.delete(module);
  }

  moduleInfo(module: number): ModuleInfo {
    const c = this.core;
    const out = c.exports.alloc(32);
    try {
      if (ex(c).cfi_module_info(this.handle, module, out) !== 0) throw c.lastError();
      const v = c.view;
      return {
        lo: v.getBigUint64(out, true),
        hi: v.getBigUint64(out + 8, true),
        fdes: v.getUint32(out + 16, true),
        fromHdr: (v.getUint32(out + 20, true) & 1) !== 0,
        ehFrameAddr: v.getBigUint64(out + 24, true),
      };
    } finally {
      c.exports.free(out);
    }
  }

  /** Parses every record of a module and runs every CFA program; throws the first error. */
  verify(module: number): { cies: number; fdes: number } {
    const c = this.core;
    const out = c.exports.alloc(8);
    try {
      const r = ex(c).cfi_module_verify(this.handle, module, out);
      if (r !== 0) throw c.lastError();
      return { cies: c.view.getUint32(out, true), fdes: c.view.getUint32(out + 4, true) };
    } finally {
      c.exports.free(out);
    }
  }

  /** The unwind-table row for pc, or null when no FDE covers it. */
  row(pc: bigint): CfiRow | null {
    const c = this.core;
    const out = c.exports.alloc(480);
    try {
      const r = ex(c).cfi_row(this.handle, u64(pc), out);
      if (r === 4 /* NOT_FOUND */) return null;
      if (r !== 0) throw c.lastError();
      const v = c.view;
      const q = (o: number) => v.getBigUint64(out + o, true);
      const s = (o: number) => v.getBigInt64(out + o, true);
      const cfaType = v.getUint32(out + 48, true);
      const rules: Rule[] = [];
      for (let i = 0; i < 17; i++) {
        const b = 72 + 24 * i;
        const kind = RULE_KINDS[v.getUint32(out + b, true)] ?? "unset";
        if (kind === "offset" || kind === "val_offset") rules.push({ kind, offset: s(b + 8) });
        else if (kind === "register") rules.push({ kind, reg: v.getUint32(out + b + 4, true) });
        else if (kind === "expression" || kind === "val_expression") rules.push({ kind, exprOffset: q(b + 8), exprLength: q(b + 16) });
        else rules.push({ kind });
      }
      return {
        fdeBegin: q(0),
        fdeEnd: q(8),
        rowStart: q(16),
        rowEnd: q(24),
        module: v.getUint32(out + 32, true),
        signalFrame: (v.getUint32(out + 36, true) & 1) !== 0,
        fdeOffset: q(40),
        cfa:
          cfaType === 1
            ? { kind: "reg", reg: v.getUint32(out + 52, true), offset: s(56) }
            : cfaType === 2
              ? { kind: "expression", exprOffset: q(56), exprLength: q(64) }
              : { kind: "unset" },
        rules,
      };
    } finally {
      c.exports.free(out);
    }
  }

  free(): void {
    ex(this.core).cfi_registry_free(this.handle);
    for (const p of this.owned.values()) this.core.exports.free(p);
    this.owned.clear();
  }
}

/** A piece of a thread's stack the host copied, and the mapping it lies in. */
export interface StackSegment {
  window: Uint8Array; // bytes of target memory [windowAddr, windowAddr + window.length)
  windowAddr: bigint;
  mapLo: bigint; // the mapping holding it: [mapLo, mapHi)
  mapHi: bigint;
}

export interface ThreadInput {
  /** ptrace's user_regs_struct, 216 bytes (27 u64, r15 first). */
  regs: Uint8Array;
  segments: StackSegment[];
}

export interface ScanOptions {
  precise?: boolean; // default true
  conservative?: boolean; // default true: the fallback when precise unwinding fails
  noMore?: boolean; // the host cannot give more memory: missing memory is a failure
  maxFrames?: number; // default 65536
  frames?: number; // frame records wanted (default 0)
}

export interface Frame {
  pc: bigint;
  cfa: bigint;
  sp: bigint;
  exact: boolean; // pc is exact (frame 0, or interrupted by a signal); else a return address
  signal: boolean; // a signal trampoline frame
  outermost: boolean;
  failed: boolean; // unwinding stopped here on an error
  inWindow: boolean;
  forbidden: number; // id of the forbidden range holding the frame, or -1
}

export type ScanStatus = "clear" | "forbidden" | "need-memory" | "failed";

export interface ThreadResult {
  status: ScanStatus;
  mode: "precise" | "conservative";
  frameCount: number;
  outermost: boolean; // precise: the unwind reached the outermost frame
  incomplete: boolean; // conservative: some stack memory was missing (noMore)
  outside: boolean; // need-memory: the address lies in no segment's mapping
  depth: number; // depth of the outermost forbidden frame (-1: none, or a stack word)
  rangeId: number; // its forbidden range's id, -1
  windowId: number; // an entry window holding a pc, -1
  windowDepth: number;
  hits: number; // forbidden frames (precise) or words (conservative)
  fallback: CoreError | null; // why precise unwinding failed
  needAddr: bigint; // need-memory: the address wanted
  pc: bigint; // the outermost forbidden frame's pc (conservative: the word's value)
  returnAddr: bigint; // where it returns to (precise; 0 when unknown)
  returnSp: bigint; // its CFA: the stack pointer once it returned
  slotAddr: bigint; // where its return address is stored (conservative: the word's address)
  endPc: bigint; // pc of the last frame unwound
  wordsScanned: bigint;
  frames: Frame[];
}

const STATUS: ScanStatus[] = ["clear", "forbidden", "need-memory", "failed"];

/** Forbidden ranges and entry windows over a registry; analyses threads. */
export class StackScan {
  readonly handle: number;
  private readonly core: Core;
  constructor(readonly registry: CfiRegistry) {
    this.core = registry.core;
    this.handle = ex(this.core).stack_scan_new(registry.handle);
    if (this.handle === 0) throw this.core.lastError();
  }

  addForbidden(lo: bigint, hi: bigint, id: number): void {
    if (ex(this.core).stack_scan_add_forbidden(this.handle, u64(lo), u64(hi), id) !== 0) throw this.core.lastError();
  }

  addWindow(lo: bigint, hi: bigint, id: number): void {
    if (ex(this.core).stack_scan_add_window(this.handle, u64(lo), u64(hi), id) !== 0) throw this.core.lastError();
  }

  thread(input: ThreadInput, opts: ScanOptions = {}): ThreadResult {
    const c = this.core;
    const e = c.exports;
    if (input.regs.length !== 216) throw new Error(`registers: ${input.regs.length} bytes, expected 216 (user_regs_struct)`);
    const cap = opts.frames ?? 0;
    const nseg = input.segments.length;
    const allocs: number[] = [];
    const alloc = (n: number) => {
      const p = e.alloc(n);
      allocs.push(p);
      return p;
    };
    try {
      const regs = alloc(216);
      c.bytes.set(input.regs, regs);
      const segs = alloc(Math.max(40 * nseg, 8));
      const wins = input.segments.map((s) => {
        const p = alloc(Math.max(s.window.length, 1));
        c.bytes.set(s.window, p);
        return p;
      });
      const v0 = c.view;
      input.segments.forEach((s, i) => {
        const b = segs + 40 * i;
        v0.setBigUint64(b, BigInt(wins[i]), true);
        v0.setBigUint64(b + 8, BigInt(s.window.length), true);
        v0.setBigUint64(b + 16, u64(s.windowAddr), true);
        v0.setBigUint64(b + 24, u64(s.mapLo), true);
        v0.setBigUint64(b + 32, u64(s.mapHi), true);
      });
      const frames = alloc(Math.max(32 * cap, 8));
      const out = alloc(96);
      const flags = (opts.precise === false ? 0 : 1) | (opts.conservative === false ? 0 : 2) | (opts.noMore ? 4 : 0);
      const r = ex(c).stack_scan_thread(this.handle, regs, segs, nseg, flags, opts.maxFrames ?? 65536, frames, cap, out);
      if (r !== 0) throw c.lastError("stack_scan_thread");
      const v = c.view;
      const q = (o: number) => v.getBigUint64(out + o, true);
      const i32 = (o: number) => v.getInt32(out + o, true);
      const rflags = v.getUint32(out + 12, true);
      const frameCount = v.getUint32(out + 8, true);
      const fallbackCode = i32(36);
      const list: Frame[] = [];
      for (let k = 0; k < Math.min(frameCount, cap); k++) {
        const f = frames + 32 * k;
        const ff = v.getUint32(f + 24, true);
        list.push({
          pc: v.getBigUint64(f, true),
          cfa: v.getBigUint64(f + 8, true),
          sp: v.getBigUint64(f + 16, true),
          exact: (ff & 1) !== 0,
          signal: (ff & 2) !== 0,
          outermost: (ff & 4) !== 0,
          failed: (ff & 8) !== 0,
          inWindow: (ff & 16) !== 0,
          forbidden: v.getInt32(f + 28, true),
        });
      }
      return {
        status: STATUS[v.getUint32(out, true)] ?? "failed",
        mode: v.getUint32(out + 4, true) === 2 ? "conservative" : "precise",
        frameCount,
        outermost: (rflags & 1) !== 0,
        incomplete: (rflags & 2) !== 0,
        outside: (rflags & 4) !== 0,
        depth: i32(16),
        rangeId: i32(20),
        windowId: i32(24),
        windowDepth: i32(28),
        hits: v.getUint32(out + 32, true),
        fallback: fallbackCode !== 0 ? new CoreError(fallbackCode, c.lastError().message) : null,
        needAddr: q(40),
        pc: q(48),
        returnAddr: q(56),
        returnSp: q(64),
        slotAddr: q(72),
        endPc: q(80),
        wordsScanned: q(88),
        frames: list,
      };
    } finally {
      for (const p of allocs) e.free(p);
    }
  }

  free(): void {
    ex(this.core).stack_scan_free(this.handle);
  }
}

/** Builds a user_regs_struct (216 bytes) from named registers (others 0). */
export function userRegs(r: Partial<Record<"rax" | "rbx" | "rcx" | "rdx" | "rsi" | "rdi" | "rbp" | "rsp" | "r8" | "r9" | "r10" | "r11" | "r12" | "r13" | "r14" | "r15" | "rip", bigint>>): Uint8Array {
  const order = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp"];
  const b = new Uint8Array(216);
  const v = new DataView(b.buffer);
  order.forEach((name, i) => {
    const x = (r as Record<string, bigint | undefined>)[name];
    if (x !== undefined) v.setBigUint64(8 * i, u64(x), true);
  });
  return b;
}
