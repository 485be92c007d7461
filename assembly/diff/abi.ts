// Exports of the object diff (docs/core-abi.md, "Object diff"). A diff handle reads
// the two ELF handles it was made from: their inputs must stay open until diff_close.
// Every name pointer in its records points into those inputs.
import { Err, fail, failNeg, clearError } from "../error";
import { HandleTable } from "../handles";
import { elfFiles } from "../elf/registry";
import { Obj } from "./object";
import { Diff, Buf } from "./diff";
import { FUNC_REC, REF_REC, DATA_REC, REFUSAL_REC, SITE_REC } from "./defs";
import { UnitReader, UNIT_REC, DWO_REC } from "./producer";

const diffs = new HandleTable<Diff>();

/**
 * Diffs the original object (ELF handle `orig`) against the patched one (`patched`).
 * Returns a diff handle, or 0 when an object is refused as a whole (not ET_REL, LTO,
 * not compiled with -ffunction-sections -fdata-sections, unknown relocations).
 */
export function diff_objects(orig: i32, patched: i32): i32 {
  clearError();
  const fa = elfFiles.get(orig);
  if (fa === null) { fail(Err.BAD_HANDLE, "diff_objects: " + orig.toString() + " is not an open ELF handle"); return 0; }
  const fb = elfFiles.get(patched);
  if (fb === null) { fail(Err.BAD_HANDLE, "diff_objects: " + patched.toString() + " is not an open ELF handle"); return 0; }
  const a = new Obj(fa);
  if (a.build("original") != 0) return 0;
  const b = new Obj(fb);
  if (b.build("patched") != 0) return 0;
  const d = new Diff(a, b);
  d.run();
  return diffs.add(d);
}

/** Releases a diff handle. Returns 0, or BAD_HANDLE. */
export function diff_close(h: i32): i32 {
  if (!diffs.remove(h)) return fail(Err.BAD_HANDLE, "diff_close: " + h.toString() + " is not an open diff handle");
  return 0;
}

/**
 * Writes the 32-byte info record:
 *    0 function records u32   4 reference records u32   8 data records u32
 *   12 refusals u32          16 line sites u32         20 flags u32 (1 original has .debug_line, 2 patched has)
 *   24 reserved u64
 */
export function diff_info(h: i32, out: usize): i32 {
  const d = diffs.get(h);
  if (d === null) return fail(Err.BAD_HANDLE, "diff_info: " + h.toString() + " is not an open diff handle");
  store<u32>(out, d.nfuncRec);
  store<u32>(out + 4, d.refs.len / REF_REC);
  store<u32>(out + 8, d.ndataRec);
  store<u32>(out + 12, d.refusals.len / REFUSAL_REC);
  store<u32>(out + 16, d.sites.len / SITE_REC);
  store<u32>(out + 20, (d.a.debugLine >= 0 ? 1 : 0) | (d.b.debugLine >= 0 ? 2 : 0));
  store<u64>(out + 24, 0);
  return 0;
}

function copyRecords(h: i32, what: string, buf: (d: Diff) => Buf, size: u32, first: u32, count: u32, out: usize): i32 {
  const d = diffs.get(h);
  if (d === null) return failNeg(Err.BAD_HANDLE, what + ": " + h.toString() + " is not an open diff handle");
  const b = buf(d);
  const n = b.len / size;
  if (first > n || count > n - first) return failNeg(Err.BAD_ARGUMENT, what + ": range " + first.toString() + "+" + count.toString() + " exceeds " + n.toString() + " records");
  memory.copy(out, b.at(first * size), <usize>count * size);
  return <i32>count;
}

/** Writes `count` 64-byte function records from index `first`; number written or -1. */
export function diff_functions(h: i32, first: u32, count: u32, out: usize): i32 {
  return copyRecords(h, "diff_functions", (d: Diff): Buf => d.funcs, FUNC_REC, first, count, out);
}

/** Writes `count` 40-byte reference records from index `first`; number written or -1. */
export function diff_refs(h: i32, first: u32, count: u32, out: usize): i32 {
  return copyRecords(h, "diff_refs", (d: Diff): Buf => d.refs, REF_REC, first, count, out);
}

/** Writes `count` 48-byte data records from index `first`; number written or -1. */
export function diff_data(h: i32, first: u32, count: u32, out: usize): i32 {
  return copyRecords(h, "diff_data", (d: Diff): Buf => d.datas, DATA_REC, first, count, out);
}

/** Writes `count` 24-byte refusal records from index `first`; number written or -1. */
export function diff_refusals(h: i32, first: u32, count: u32, out: usize): i32 {
  return copyRecords(h, "diff_refusals", (d: Diff): Buf => d.refusals, REFUSAL_REC, first, count, out);
}

/** Writes `count` 24-byte line-site records from index `first`; number written or -1. */
export function diff_line_sites(h: i32, first: u32, count: u32, out: usize): i32 {
  return copyRecords(h, "diff_line_sites", (d: Diff): Buf => d.sites, SITE_REC, first, count, out);
}

/**
 * The compile units of ELF handle `elf` (an object, an executable, a library, a debug
 * file; DWARF 2 to 5): writes up to `cap` 40-byte unit records to `out` and returns the
 * number of units (more than `cap`: call again with room for them), 0 without
 * .debug_info, or -1 (DIFF_DWARF_BAD, DIFF_DWARF_COMPRESSED, BAD_HANDLE). String pointers
 * in the records point into the handle's input.
 */
export function diff_units(elf: i32, out: usize, cap: u32): i32 {
  clearError();
  const f = elfFiles.get(elf);
  if (f === null) return failNeg(Err.BAD_HANDLE, "diff_units: " + elf.toString() + " is not an open ELF handle");
  const u = new UnitReader(f);
  const r = u.run();
  if (r != 0) return -1;
  memory.copy(out, changetype<usize>(u.out), <usize>min<u32>(cap, u.count) * UNIT_REC);
  return <i32>u.count;
}

/**
 * The split-DWARF side of each compile unit of ELF handle `elf`, in diff_units' order:
 * writes up to `cap` 24-byte records (DW_AT_dwo_name or DW_AT_GNU_dwo_name, dwo_id) to
 * `out` and returns the number of units, or -1 as diff_units.
 */
export function diff_units_dwo(elf: i32, out: usize, cap: u32): i32 {
  clearError();
  const f = elfFiles.get(elf);
  if (f === null) return failNeg(Err.BAD_HANDLE, "diff_units_dwo: " + elf.toString() + " is not an open ELF handle");
  const u = new UnitReader(f);
  const r = u.run();
  if (r != 0) return -1;
  memory.copy(out, changetype<usize>(u.dwoOut), <usize>min<u32>(cap, u.count) * DWO_REC);
  return <i32>u.count;
}
