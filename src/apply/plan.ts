// The plan of one apply, computed before anything in the target is touched: which sites
// get which jump, what each must hold now, what the stack check forbids, how big the
// region is and where it may lie, and (layout) the region's bytes for a chosen base.
//
// The package is an ELF relocatable object (docs/format.md): its code and data sections
// are relocated by the core's engine (src/core/reloc.ts) with each undefined symbol bound
// as resolve.ts found it; the engine makes its own GOT slots and jump stubs.
//
// The region (docs/region.md), from its base, page-aligned parts:
//
//   base -> | header (region.ts)                 |  r--
//           | code, jump stubs                   |  r-x
//           | read-only data, .eh_frame, own GOT |  r--
//           | writable data (.data, .bss)        |  rw-      never w+x
//
// Sites: a replaced function's runtime entry (link-time address + bias), after an
// endbr64 the entry check keeps (assembly/x86/entry.ts: the window starts at +4 then, so
// indirect calls under IBT still land on an endbr64). The jump is `jmp rel32` (e9 +
// rel32, Intel SDM vol. 2A "JMP": 5 bytes, reach +-2 GiB from the next instruction): the
// region is taken within reach of the whole module (gap.ts), so it always fits.
// Stacking: when the site holds the jump of an earlier applied patch (readStatus), this
// patch expects that jump and replaces it with one straight to its own version (one hop).
import { createHash } from "node:crypto";
import type { Core } from "../core/instance.js";
import { CoreError } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import { GotKind, Relocation, type RelocPlan } from "../core/reloc.js";
import { entryCheck, WriteOp, x86Write } from "../core/x86.js";
import { describeName, type PatchFunction } from "../format/model.js";
import type { ReadPackage } from "../format/reader.js";
import { encodePackage } from "../format/writer.js";
import type { PatchImage, PatchPlan, Range, ResolvedReference, SitePlan, StatusPatch, StatusReport, TargetProcess } from "./contract.js";
import { ApplyError, processSubject } from "./errors.js";
import { PAGE } from "./gap.js";
import { ProcMemory, type MemoryReader } from "./proc-memory.js";
import { encodeRegion, type RegionFunction, type RegionHeader } from "./region.js";
import { regionOf } from "./status.js";

export const PROT_R = 1;
export const PROT_RW = 3;
export const PROT_RX = 5;
const JMP_LEN = 5;
const TWO_GIB = 1n << 31n;

const pageUp = (v: bigint, a = PAGE) => ((v + a - 1n) / a) * a;
const hex = (v: bigint) => "0x" + v.toString(16);
const hexBytes = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A site with what apply needs beyond the contract's SitePlan. */
export interface EngineSite extends SitePlan {
  /** index into pkg.model.functions */
  fn: number;
}

/** The plan plus what the session needs to record and release. */
export interface EnginePlan extends PatchPlan {
  sites: EngineSite[];
  /** 1 + the highest sequence of the patches applied before (the order status lists them in) */
  sequence: number;
  /** the relocation handle and the package's ELF view: release after layout */
  close(): void;
}

/** ELF index of each model symbol and section as encodePackage numbers them (writer.ts). */
function elfNumbering(pkg: ReadPackage): { sym: number[]; sec: number[] } {
  const m = pkg.model;
  const order = m.symbols.map((_, i) => i).sort((a, b) => Number(m.symbols[a].bind !== "local") - Number(m.symbols[b].bind !== "local") || a - b);
  const sym = new Array<number>(m.symbols.length);
  order.forEach((modelIndex, k) => (sym[modelIndex] = k + 1));
  const sec = new Array<number>(m.sections.length);
  let next = 1;
  m.sections.forEach((s, i) => {
    sec[i] = next++;
    if (s.relocations.length) next++;
  });
  return { sym, sec };
}

/** The active patch whose jump the site in [lo, hi) holds now, with that function. */
function holderOf(applied: StatusReport, lo: bigint, hi: bigint): { patch: StatusPatch; fn: StatusPatch["functions"][number] } | undefined {
  for (const p of applied.patches) {
    if (p.state !== "active") continue;
    for (const f of p.functions) if (f.current && f.site >= lo && f.site < hi) return { patch: p, fn: f };
  }
  return undefined;
}

export interface PlanOptions {
  /** reads the target's memory (default: /proc/PID/mem) */
  mem?: MemoryReader;
}

/**
 * The package's ELF bytes (encodePackage), made once per package model: `--all` plans the
 * same package for every process (the bytes depend on the model alone; the model is not
 * changed once read).
 */
const encoded = new WeakMap<ReadPackage["model"], Uint8Array>();
function packageBytes(m: ReadPackage["model"]): Uint8Array {
  let b = encoded.get(m);
  if (!b) encoded.set(m, (b = encodePackage(m)));
  return b;
}

export function planPatch(core: Core, target: TargetProcess, pkg: ReadPackage, references: ResolvedReference[], applied: StatusReport, opts: PlanOptions = {}): EnginePlan {
  const m = pkg.model;
  const pid = target.pid;
  const subject = processSubject(pid);

  // What is applied already: the same patch, and the dependencies.
  const active = applied.patches.filter((p) => p.state === "active");
  const same = active.find((p) => p.patchId === m.patchId);
  if (same) throw new ApplyError("ALREADY_APPLIED", subject, `patch ${m.patchId} is already applied (region at ${hex(same.region.base)}${same.hash === pkg.hash ? "" : ", another build of it: revert it first"})`);
  for (const d of m.dependencies) {
    const p = active.find((x) => x.patchId === d.patchId);
    if (!p) throw new ApplyError("DEPENDENCY", subject, `patch ${m.patchId} needs patch ${d.patchId} applied first; it is not`);
    if (d.hash && p.hash !== d.hash) throw new ApplyError("DEPENDENCY", subject, `patch ${m.patchId} needs patch ${d.patchId} with content hash ${d.hash.slice(0, 16)}..., the applied one has ${p.hash.slice(0, 16)}...`);
  }
  let sequence = 1;
  for (const p of applied.patches) sequence = Math.max(sequence, (regionOf(p)?.sequence ?? applied.patches.indexOf(p) + 1) + 1);

  const ownMem = opts.mem ? undefined : new ProcMemory(pid);
  const mem = opts.mem ?? ownMem!;
  let elf: ElfReader | undefined;
  let reloc: Relocation | undefined;
  try {
    // Sites: each replaced function's entry, checked against what the target holds now.
    const sites: EngineSite[] = [];
    m.functions.forEach((f, fi) => {
      if (f.kind !== "replace" || !f.original) return;
      sites.push(planSite(core, target, mem, applied, f, fi));
    });

    // Relocation: the package's own bytes, every undefined symbol bound.
    elf = new ElfReader(core, packageBytes(m), pkg.file);
    reloc = new Relocation(elf);
    const num = elfNumbering(pkg);
    bindReferences(reloc, pkg, references, num.sym, mem, subject);
    let rplan: RelocPlan;
    try {
      rplan = reloc.plan();
    } catch (e) {
      throw relocError(e, subject);
    }
    const mod = target.module.module;
    const reach: Array<{ start: bigint; end: bigint }> = [{ start: mod.start, end: mod.end }];
    if (rplan.near) reach.push({ start: rplan.near.lo, end: rplan.near.hi });
    const below2G = rplan.below2G || rplan.below4G || (rplan.below !== 0n && rplan.below <= TWO_GIB);

    // The region's size: a trial layout at an aligned address (sizes do not depend on it).
    const align = rplan.maxAlign > PAGE ? rplan.maxAlign : PAGE;
    const headerSize = pageUp(BigInt(encodeRegion(headerTemplate(m.patchId, pkg.hash, target, sites, m, 4, sequence)).length));
    let layoutSize: bigint;
    try {
      layoutSize = reloc.layout(1n << 32n, { pages: true });
    } catch (e) {
      throw relocError(e, subject);
    }
    const slack = align > PAGE ? align - PAGE : 0n;
    const regionSize = headerSize + slack + layoutSize;
    if (regionSize > 1n << 30n) throw new ApplyError("NO_MEMORY", subject, `patch ${m.patchId} needs a region of ${regionSize} bytes`);

    const r = reloc;
    const e = elf;
    const sections = e.sections();
    const ehSec = sections.find((s) => s.name === ".eh_frame" && (s.flags & 2n) !== 0n);
    const plan: EnginePlan = {
      patchId: m.patchId,
      hash: pkg.hash,
      file: pkg.file,
      target,
      regionSize,
      reach,
      below2G,
      sites,
      references,
      sequence,
      layout(base: bigint): PatchImage {
        if (base % PAGE !== 0n) throw new Error(`patchc bug: region base ${hex(base)} is not page-aligned`);
        const codeBase = pageUp(base + headerSize, align);
        let used: bigint;
        try {
          used = r.layout(codeBase, { pages: true });
        } catch (err) {
          throw relocError(err, subject);
        }
        const end = codeBase + used;
        if (end - base > regionSize) throw new Error(`patchc bug: layout of ${end - base} bytes in a region of ${regionSize}`);
        // Parts: header, then the engine's three groups (each starts on a page).
        const stubsEnd = pageUp((r.stubsAddress ?? codeBase) + rplan.stubSize);
        const gotEnd = pageUp((r.gotAddress ?? stubsEnd) + rplan.gotSize);
        const parts: PatchImage["parts"] = [];
        const part = (lo: bigint, hi: bigint, prot: number) => {
          if (hi <= lo) return;
          const last = parts[parts.length - 1];
          if (last && last.prot === prot) last.size += Number(hi - lo);
          else parts.push({ offset: Number(lo - base), size: Number(hi - lo), prot });
        };
        part(base, codeBase, PROT_R);
        part(codeBase, stubsEnd, PROT_RX);
        part(stubsEnd, gotEnd, PROT_R);
        part(gotEnd, end, PROT_RW);
        part(end, base + regionSize, PROT_R);

        // New code of every function and piece, and the jumps.
        const addrOf = (modelSym: number): bigint => r.symbolValue(num.sym[modelSym]);
        const newRanges: Range[] = [];
        const newOf = new Map<number, { addr: bigint; size: bigint }>();
        m.functions.forEach((f, fi) => {
          const a = addrOf(f.symbol);
          const size = BigInt(m.symbols[f.symbol].size);
          newOf.set(fi, { addr: a, size });
          newRanges.push({ lo: a, hi: a + size, name: describeName(f.name, f.local) });
          for (const p of f.pieces) {
            if (p.symbol === undefined) continue;
            const pa = addrOf(p.symbol);
            newRanges.push({ lo: pa, hi: pa + BigInt(m.symbols[p.symbol].size), name: describeName(p.name, p.local) });
          }
        });
        const jumps: PatchImage["jumps"] = sites.map((s) => {
          const n = newOf.get(s.fn)!;
          const bytes = x86Write(core, WriteOp.JmpRel32, s.site, n.addr);
          if (bytes.length !== s.expect.length) throw new Error(`patchc bug: a jump of ${bytes.length} bytes for a site of ${s.expect.length}`);
          return { site: s.site, bytes, newAddr: n.addr, newSize: n.size };
        });

        const bytes = new Uint8Array(Number(regionSize));
        try {
          bytes.set(r.apply(codeBase, Number(used)), Number(codeBase - base));
        } catch (err) {
          throw relocError(err, subject);
        }
        const header = headerTemplate(m.patchId, pkg.hash, target, sites, m, parts.length, sequence);
        header.base = base;
        header.size = regionSize;
        header.parts = parts;
        header.functions.forEach((f, i) => {
          f.newAddr = jumps[i].newAddr;
          f.newSize = jumps[i].newSize;
          f.jump = jumps[i].bytes;
        });
        header.symbols = m.symbols.flatMap((s, i) =>
          s.section !== undefined && s.bind !== "local" && s.type !== "section" ? [{ name: s.name, addr: addrOf(i), size: BigInt(s.size) }] : [],
        );
        if (ehSec) {
          const a = r.sectionAddress(ehSec.index);
          if (a !== undefined) header.ehFrame = { addr: a, size: ehSec.size };
        }
        const hb = encodeRegion(header);
        if (BigInt(hb.length) > headerSize) throw new Error(`patchc bug: region header of ${hb.length} bytes for ${headerSize} reserved`);
        bytes.set(hb, 0);
        return { base, bytes, parts, jumps, newRanges };
      },
      close() {
        r.close();
        e.close();
      },
    };
    reloc = undefined;
    elf = undefined;
    return plan;
  } finally {
    reloc?.close();
    elf?.close();
    ownMem?.close();
  }
}

/** The header with everything known before the base (addresses filled by layout). */
function headerTemplate(patchId: string, hash: string, target: TargetProcess, sites: EngineSite[], m: ReadPackage["model"], parts: number, sequence: number): RegionHeader {
  const fns: RegionFunction[] = sites.map((s) => ({
    name: s.name,
    site: s.site,
    newAddr: 0n,
    newSize: 0n,
    saved: s.expect,
    jump: new Uint8Array(s.expect.length),
    previous: s.previous,
  }));
  return {
    state: "active",
    sequence,
    appliedAt: new Date(),
    base: 0n,
    size: 0n,
    bias: target.module.bias,
    hash,
    patchId,
    modulePath: target.module.module.path,
    buildId: target.module.image.info.buildId ?? m.target.buildId,
    functions: fns,
    symbols: m.symbols.flatMap((s) => (s.section !== undefined && s.bind !== "local" && s.type !== "section" ? [{ name: s.name, addr: 0n, size: 0n }] : [])),
    parts: Array.from({ length: parts }, () => ({ offset: 0, size: 0, prot: 0 })),
    dependencies: m.dependencies.map((d) => ({ ...d })),
    ehFrame: { addr: 0n, size: 0n },
  };
}

/** One replaced function's site: where the jump goes, what the site must hold, what the stack check forbids. */
function planSite(core: Core, target: TargetProcess, mem: MemoryReader, applied: StatusReport, f: PatchFunction, fi: number): EngineSite {
  const o = f.original!;
  const name = describeName(f.name, f.local);
  const subject = processSubject(target.pid, name);
  const bias = target.module.bias;
  const entry = o.addr + bias;
  const oldRanges: Range[] = [{ lo: entry, hi: entry + o.size, name }];
  for (const p of f.pieces) if (p.original) oldRanges.push({ lo: p.original.addr + bias, hi: p.original.addr + bias + p.original.size, name: describeName(p.name, p.local) });

  const holder = holderOf(applied, entry, entry + o.size);
  if (holder) {
    // Stacking: the site holds the jump of an earlier patch.
    if (f.after !== holder.patch.patchId) {
      throw new ApplyError(
        "SITE_MISMATCH",
        subject,
        f.after
          ? `the entry holds the jump of patch ${holder.patch.patchId}, not of patch ${f.after} this package stacks on`
          : `the entry holds the jump of patch ${holder.patch.patchId}; this package expects the original code (build it to stack on ${holder.patch.patchId})`,
      );
    }
    const expect = x86Write(core, WriteOp.JmpRel32, holder.fn.site, holder.fn.newAddr);
    const now = mem.read(holder.fn.site, expect.length);
    if (!sameBytes(now, expect)) throw new ApplyError("SITE_MISMATCH", subject, `the site ${hex(holder.fn.site)} holds ${hexBytes(now)}, not the jump of patch ${holder.patch.patchId} (${hexBytes(expect)})`);
    // The version running now is the earlier patch's: a thread inside it is inside this function too.
    const prevSize = regionOf(holder.patch)?.functions.find((x) => x.site === holder.fn.site)?.newSize ?? 1n;
    oldRanges.push({ lo: holder.fn.newAddr, hi: holder.fn.newAddr + prevSize, name: `${name} (patch ${holder.patch.patchId})` });
    return { fn: fi, name, site: holder.fn.site, expect, previous: holder.patch.patchId, oldRanges };
  }
  if (f.after) throw new ApplyError("DEPENDENCY", subject, `this package stacks on patch ${f.after}, whose jump the entry does not hold (the entry holds the original code)`);

  // The original code: the entry check decides the window (after an endbr64 it keeps).
  const padding = 16n;
  const code = mem.read(entry, Number(o.size + padding > 1n << 20n ? o.size : o.size + padding));
  if (o.sha256) {
    const now = createHash("sha256").update(code.subarray(0, Number(o.size))).digest("hex");
    if (now !== o.sha256) {
      const k = Math.min(o.site.length, code.length);
      throw new ApplyError("SITE_MISMATCH", subject, `the function's ${o.size} bytes at ${hex(entry)} are not the ones the package was built against (sha256 ${now.slice(0, 16)}..., expected ${o.sha256.slice(0, 16)}...; entry ${hexBytes(code.subarray(0, k))}, expected ${hexBytes(o.site.subarray(0, k))})`);
    }
  }
  // The pieces (.cold, .part) are scanned too (a branch from them into the window refuses):
  // one buffer from the lowest to the highest byte, when that span is small enough to read.
  let scan = code;
  let scanAddr = entry;
  const pieces = oldRanges.slice(1);
  if (pieces.length) {
    const lo = pieces.reduce((a, r) => (r.lo < a ? r.lo : a), entry);
    const hi = pieces.reduce((a, r) => (r.hi > a ? r.hi : a), entry + BigInt(code.length));
    if (hi - lo <= 4n << 20n) {
      try {
        scan = mem.read(lo, Number(hi - lo));
        scanAddr = lo;
      } catch {
        // unreadable between them: the function alone
      }
    }
  }
  const check = entryCheck(core, {
    code: scan,
    codeAddr: scanAddr,
    fnStart: entry,
    fnSize: o.size,
    // A destination in rel32 reach (the region will be: gap.ts), so the window is a jmp rel32's.
    dest: entry + (1n << 28n),
    ranges: pieces.map((r) => [r.lo, r.hi] as [bigint, bigint]).filter(([lo, hi]) => lo >= scanAddr && hi <= scanAddr + BigInt(scan.length)),
  });
  if (check.status !== 0) throw new ApplyError("BAD_PACKAGE", subject, `the entry cannot take the jump: ${check.message}`);
  if (check.windowLength !== JMP_LEN) throw new ApplyError("BAD_PACKAGE", subject, `the entry window is ${check.windowLength} bytes, not a jmp rel32's ${JMP_LEN}`);
  const off = check.windowOffset;
  if (o.site.length < off + JMP_LEN) throw new ApplyError("BAD_PACKAGE", subject, `the package's site bytes (${o.site.length}) do not cover the jump at +${off}`);
  const expect = o.site.slice(off, off + JMP_LEN);
  const now = code.subarray(off, off + JMP_LEN);
  if (!sameBytes(now, expect)) throw new ApplyError("SITE_MISMATCH", subject, `the site ${hex(entry + BigInt(off))} holds ${hexBytes(now)}, the package expects ${hexBytes(expect)}`);
  return { fn: fi, name, site: entry + BigInt(off), expect, oldRanges };
}

function bindReferences(reloc: Relocation, pkg: ReadPackage, references: ResolvedReference[], elfSym: number[], mem: MemoryReader, subject: string): void {
  const refs = new Map(reloc.refs(true).map((r) => [r.sym, r]));
  for (const rr of references) {
    const ref = pkg.model.references[rr.reference];
    if (!ref) throw new Error(`patchc bug: resolved reference ${rr.reference} is not a reference of the package`);
    const sym = elfSym[ref.symbol];
    const asked = refs.get(sym)?.refs ?? 0;
    const b = rr.binding;
    try {
      switch (b.kind) {
        case "addr":
          reloc.bindAddress(sym, b.addr);
          break;
        case "got":
          // GOT-form relocations use the target's slot; anything else takes the value ld.so put in it.
          reloc.bindGot(sym, GotKind.ADDR, b.slot);
          if (asked & ~4) reloc.bindAddress(sym, new DataView(mem.read(b.slot, 8).buffer).getBigUint64(0, true));
          break;
        case "plt":
          reloc.bindPlt(sym, b.addr);
          if (asked & ~2) reloc.bindAddress(sym, b.addr);
          break;
        case "tls":
          reloc.bindTls(sym, { module: b.module, blockTpoff: b.blockTpoff }, b.offset);
          break;
      }
    } catch (e) {
      throw new ApplyError("UNRESOLVED", subject, `reference ${ref.name} (${rr.how}): ${e instanceof Error ? e.message : e}`);
    }
  }
}

function relocError(e: unknown, subject: string): unknown {
  if (!(e instanceof CoreError)) return e;
  if (e.code === 304) return new ApplyError("UNRESOLVED", subject, e.message);
  if (e.code === 303) return new ApplyError("NO_MEMORY", subject, `no placement reaches every reference: ${e.message}`);
  return new ApplyError("BAD_PACKAGE", subject, e.message);
}
