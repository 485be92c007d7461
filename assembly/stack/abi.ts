// Exports of the stack area (documented in docs/core-abi.md, "Stack-scan analysis").
//
// cfi_*:   a CFI registry: the .eh_frame of each loaded module, the vDSO's, the
//          patch regions'; FDE lookup and rows, for the unwinder and for tests.
// stack_*: a scan set (registry + forbidden ranges + entry windows) and the
//          per-thread analysis run while the target is stopped.
import { Err, fail, clearError, hex } from "../error";
import { HandleTable } from "../handles";
import { Registry, Fde, Module, addImage, lastFindError } from "./cfi";
import { computeRow, rowStart, rowEnd, ROW_SIZE, verifyModule, verifiedCies, verifiedFdes } from "./row";
import { ScanSet, analyze, checkSegments, RESULT_SIZE } from "./scan";
import { NREGS, CFA_EXPRESSION, RULE_EXPRESSION, RULE_VAL_EXPRESSION } from "./dwarf";

const registries = new HandleTable<Registry>();
const scanSets = new HandleTable<ScanSet>();

function getRegistry(h: i32, what: string): Registry | null {
  const r = registries.get(h);
  if (r === null) fail(Err.BAD_HANDLE, what + ": " + h.toString() + " is not a CFI registry handle");
  return r;
}

function getScan(h: i32, what: string): ScanSet | null {
  const s = scanSets.get(h);
  if (s === null) fail(Err.BAD_HANDLE, what + ": " + h.toString() + " is not a stack scan handle");
  return s;
}

function memoryHolds(p: usize, len: u64): bool {
  const end = <u64>memory.size() << 16;
  return <u64>p <= end && len <= end - <u64>p;
}

/** A new, empty CFI registry. Returns its handle (> 0). */
export function cfi_registry_new(): i32 {
  return registries.add(new Registry());
}

/** Frees a registry and its modules. Returns 0 or BAD_HANDLE. */
export function cfi_registry_free(h: i32): i32 {
  const r = getRegistry(h, "cfi_registry_free");
  if (r === null) return Err.BAD_HANDLE;
  r.freeAll();
  registries.remove(h);
  return 0;
}

/**
 * Adds a module's CFI: .eh_frame bytes [eh, eh+eh_len) which the target has at
 * eh_addr, and optionally its .eh_frame_hdr [hdr, hdr+hdr_len) at hdr_addr
 * (hdr_len 0: none, the .eh_frame is scanned). The .eh_frame bytes are borrowed:
 * they must stay allocated and unchanged until the module is removed or the
 * registry freed (the header is only read here).
 * Returns the module id (> 0), or 0 with the error recorded.
 */
export function cfi_registry_add(h: i32, eh: usize, eh_len: usize, eh_addr: u64, hdr: usize, hdr_len: usize, hdr_addr: u64): i32 {
  clearError();
  const r = getRegistry(h, "cfi_registry_add");
  if (r === null) return 0;
  if (!memoryHolds(eh, eh_len) || !memoryHolds(hdr, hdr_len)) {
    fail(Err.BAD_ARGUMENT, "cfi_registry_add: input buffers are not in core memory");
    return 0;
  }
  return r.add(eh, <u64>eh_len, eh_addr, hdr, <u64>hdr_len, hdr_addr);
}

/**
 * Adds the CFI of an ELF image as mapped in the target (the vDSO): [img, img+len)
 * holds its memory from the start of its first PT_LOAD page, which the target has
 * at `base`. Found through PT_GNU_EH_FRAME. The image is borrowed like
 * cfi_registry_add's .eh_frame. Returns the module id, or 0.
 */
export function cfi_registry_add_image(h: i32, img: usize, len: usize, base: u64): i32 {
  clearError();
  const r = getRegistry(h, "cfi_registry_add_image");
  if (r === null) return 0;
  if (!memoryHolds(img, len)) { fail(Err.BAD_ARGUMENT, "cfi_registry_add_image: image is not in core memory"); return 0; }
  return addImage(r, img, <u64>len, base);
}

/**
 * Declares a sigreturn trampoline without CFI at `addr` (mov $15,%rax; syscall:
 * musl's or a static binary's __restore_rt): a frame whose pc is there is unwound
 * through the kernel's signal frame. Returns 0.
 */
export function cfi_registry_add_sigreturn(h: i32, addr: u64): i32 {
  const r = getRegistry(h, "cfi_registry_add_sigreturn");
  if (r === null) return Err.BAD_HANDLE;
  r.addTrampoline(addr);
  return 0;
}

/** Removes a module (a patch region being unmapped). Returns 0, BAD_HANDLE or NOT_FOUND. */
export function cfi_registry_remove(h: i32, module: i32): i32 {
  const r = getRegistry(h, "cfi_registry_remove");
  if (r === null) return Err.BAD_HANDLE;
  if (!r.remove(module)) return fail(Err.NOT_FOUND, "cfi_registry_remove: no module " + module.toString());
  return 0;
}

/**
 * Writes the 32-byte module record: u64 lowest pc, u64 end of pcs, u32 FDE count,
 * u32 flags (1: table from .eh_frame_hdr), u64 .eh_frame address. Returns 0 or an error.
 */
export function cfi_module_info(h: i32, module: i32, out: usize): i32 {
  const r = getRegistry(h, "cfi_module_info");
  if (r === null) return Err.BAD_HANDLE;
  const mp = r.module(module);
  if (mp == 0) return fail(Err.NOT_FOUND, "cfi_module_info: no module " + module.toString());
  const m = changetype<Module>(mp);
  store<u64>(out, m.lo);
  store<u64>(out, m.hi, 8);
  store<u32>(out, m.count, 16);
  store<u32>(out, m.fromHdr ? 1 : 0, 20);
  store<u64>(out, m.addr, 24);
  return 0;
}

/**
 * Parses every CIE and FDE of a module and runs every call frame program to its
 * end. Writes u32 CIEs, u32 FDEs to out. Returns 0 or the first error's code.
 */
export function cfi_module_verify(h: i32, module: i32, out: usize): i32 {
  clearError();
  const r = getRegistry(h, "cfi_module_verify");
  if (r === null) return Err.BAD_HANDLE;
  const mp = r.module(module);
  if (mp == 0) return fail(Err.NOT_FOUND, "cfi_module_verify: no module " + module.toString());
  const code = verifyModule(changetype<Module>(mp));
  store<u32>(out, verifiedCies);
  store<u32>(out, verifiedFdes, 4);
  return code;
}

const rowFde = new Fde();
const rowBuf: usize = heap.alloc(ROW_SIZE);

/**
 * The unwind-table row for `pc` (looked up as given), as a 480-byte record:
 *    0 u64 FDE pc_begin   8 u64 FDE pc_end   16 u64 row start   24 u64 row end
 *   32 u32 module id     36 u32 flags (1: signal frame, 'S')    40 u64 FDE offset in .eh_frame
 *   48 u32 CFA type (1 reg+offset, 2 expression)   52 u32 CFA register
 *   56 i64 CFA offset, or the expression's offset in .eh_frame   64 u64 expression length
 *   72 + 24*r for DWARF registers r = 0..16:
 *      u32 rule (0 unset, 1 undefined, 2 same value, 3 offset(N), 4 val_offset(N),
 *      5 register, 6 expression, 7 val_expression)   u32 register (rule 5)
 *      i64 N, or the expression's offset in .eh_frame   u64 expression length
 * Returns 0, NOT_FOUND when no FDE covers pc, or a parse error.
 */
export function cfi_row(h: i32, pc: u64, out: usize): i32 {
  clearError();
  const r = getRegistry(h, "cfi_row");
  if (r === null) return Err.BAD_HANDLE;
  const mp = r.find(pc, rowFde);
  if (mp == 0) {
    if (lastFindError != 0) return lastFindError; // a parse error, recorded by find()
    return fail(Err.NOT_FOUND, "cfi_row: no FDE covers pc " + hex(pc));
  }
  const m = changetype<Module>(mp);
  const code = computeRow(m, rowFde, pc, rowBuf);
  if (code != 0) return code;
  store<u64>(out, rowFde.pcBegin);
  store<u64>(out, rowFde.pcEnd, 8);
  store<u64>(out, rowStart, 16);
  store<u64>(out, rowEnd, 24);
  store<u32>(out, <u32>m.id, 32);
  store<u32>(out, m.cie.signal ? 1 : 0, 36);
  store<u64>(out, rowFde.off, 40);
  const cfaType = load<u32>(rowBuf);
  store<u32>(out, cfaType, 48);
  store<u32>(out, load<u32>(rowBuf, 4), 52);
  if (cfaType == CFA_EXPRESSION) {
    store<u64>(out, load<u64>(rowBuf, 16) - <u64>m.bytes, 56);
    store<u64>(out, <u64>load<u32>(rowBuf, 24), 64);
  } else {
    store<i64>(out, load<i64>(rowBuf, 8), 56);
    store<u64>(out, 0, 64);
  }
  for (let i: u32 = 0; i < NREGS; i++) {
    const s = rowBuf + 32 + <usize>i * 24;
    const d = out + 72 + <usize>i * 24;
    const t = load<u32>(s);
    store<u32>(d, t);
    store<u32>(d, load<u32>(s, 4), 4);
    if (t == RULE_EXPRESSION || t == RULE_VAL_EXPRESSION) store<u64>(d, load<u64>(s, 8) - <u64>m.bytes, 8);
    else store<i64>(d, load<i64>(s, 8), 8);
    store<u64>(d, load<u64>(s, 16), 16);
  }
  return 0;
}

/** A new scan set over a registry. Returns its handle, or 0 (BAD_HANDLE). */
export function stack_scan_new(registry: i32): i32 {
  clearError();
  const r = getRegistry(registry, "stack_scan_new");
  if (r === null) return 0;
  return scanSets.add(new ScanSet(r));
}

export function stack_scan_free(h: i32): i32 {
  const s = getScan(h, "stack_scan_free");
  if (s === null) return Err.BAD_HANDLE;
  s.free();
  scanSets.remove(h);
  return 0;
}

/** Adds a forbidden range [lo, hi) with the caller's id (a function being replaced, a patch being removed). */
export function stack_scan_add_forbidden(h: i32, lo: u64, hi: u64, id: u32): i32 {
  const s = getScan(h, "stack_scan_add_forbidden");
  if (s === null) return Err.BAD_HANDLE;
  if (hi <= lo) return fail(Err.BAD_ARGUMENT, "stack_scan_add_forbidden: empty range " + hex(lo) + ".." + hex(hi));
  s.addForbidden(lo, hi, id);
  return 0;
}

/** Adds an entry window [lo, hi): bytes about to be overwritten; a pc strictly inside counts. */
export function stack_scan_add_window(h: i32, lo: u64, hi: u64, id: u32): i32 {
  const s = getScan(h, "stack_scan_add_window");
  if (s === null) return Err.BAD_HANDLE;
  if (hi <= lo + 1 || lo + 1 < lo) return fail(Err.BAD_ARGUMENT, "stack_scan_add_window: window " + hex(lo) + ".." + hex(hi) + " has no inside");
  s.addWindow(lo, hi, id);
  return 0;
}

/**
 * Analyses one thread: regs (216-byte user_regs_struct), nsegs stack segment
 * records (40 bytes each) at segs, flags (1 precise, 2 conservative, 4 no more
 * memory), at most max_frames frames; frame records (32 bytes) go to frames (up
 * to frames_cap), the 96-byte result to out. Returns 0, or an error for bad
 * arguments (the analysis' own outcome is in the result).
 */
export function stack_scan_thread(h: i32, regs: usize, segs: usize, nsegs: u32, flags: u32, max_frames: u32,
                                  frames: usize, frames_cap: u32, out: usize): i32 {
  clearError();
  const s = getScan(h, "stack_scan_thread");
  if (s === null) return Err.BAD_HANDLE;
  if ((flags & 3) == 0) return fail(Err.BAD_ARGUMENT, "stack_scan_thread: flags " + flags.toString() + " select neither precise nor conservative mode");
  if (!memoryHolds(regs, 216) || !memoryHolds(out, <u64>RESULT_SIZE) || !memoryHolds(segs, <u64>nsegs * 40) ||
      !memoryHolds(frames, <u64>frames_cap * 32)) {
    return fail(Err.BAD_ARGUMENT, "stack_scan_thread: a buffer is not in core memory");
  }
  const c = checkSegments(segs, nsegs);
  if (c != 0) return c;
  analyze(s, regs, segs, nsegs, flags, max_frames, frames, frames_cap, out);
  return 0;
}
