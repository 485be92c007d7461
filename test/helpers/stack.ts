// Helpers of the stack-scan tests and bench: ELF section reading (enough to find
// .eh_frame and .eh_frame_hdr), the deep.c fixture (build, run, read its dumps),
// gdb's backtrace of the stopped fixture.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Core } from "../../src/core/instance.js";
import { CfiRegistry, type StackSegment } from "../../src/core/stack.js";

// From the sources (tests) or from a bundle in build/bench (bench/core/stack.ts): then from the working directory.
const here = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "stack");
export const FIXTURES = existsSync(here) ? here : join(process.cwd(), "test", "fixtures", "stack");

// ---------------------------------------------------------------------------
// ELF64 little-endian: section headers and program headers.

export interface Section { name: string; type: number; addr: bigint; offset: number; size: number }
export interface Phdr { type: number; offset: bigint; vaddr: bigint; filesz: bigint; memsz: bigint; flags: number }
export interface Elf { type: number; sections: Section[]; phdrs: Phdr[] }

export function readElf(b: Uint8Array): Elf {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint32(0, true) !== 0x464c457f) throw new Error("not an ELF file");
  const type = v.getUint16(16, true);
  const phoff = Number(v.getBigUint64(32, true));
  const shoff = Number(v.getBigUint64(40, true));
  const phentsize = v.getUint16(54, true), phnum = v.getUint16(56, true);
  const shentsize = v.getUint16(58, true), shnum = v.getUint16(60, true), shstrndx = v.getUint16(62, true);
  const phdrs: Phdr[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    phdrs.push({
      type: v.getUint32(p, true), flags: v.getUint32(p + 4, true), offset: v.getBigUint64(p + 8, true),
      vaddr: v.getBigUint64(p + 16, true), filesz: v.getBigUint64(p + 32, true), memsz: v.getBigUint64(p + 40, true),
    });
  }
  const raw: Array<Omit<Section, "name"> & { nameOff: number }> = [];
  if (shoff && shoff + shnum * shentsize <= b.length) {
    for (let i = 0; i < shnum; i++) {
      const s = shoff + i * shentsize;
      raw.push({
        nameOff: v.getUint32(s, true), type: v.getUint32(s + 4, true), addr: v.getBigUint64(s + 16, true),
        offset: Number(v.getBigUint64(s + 24, true)), size: Number(v.getBigUint64(s + 32, true)),
      });
    }
  }
  const strtab = raw[shstrndx];
  const name = (o: number) => {
    if (!strtab) return "";
    let e = strtab.offset + o;
    while (e < b.length && b[e] !== 0) e++;
    return new TextDecoder().decode(b.subarray(strtab.offset + o, e));
  };
  return { type, phdrs, sections: raw.map((s) => ({ name: name(s.nameOff), type: s.type, addr: s.addr, offset: s.offset, size: s.size })) };
}

export interface FileCfi { ehFrame: Uint8Array; ehAddr: bigint; hdr?: Uint8Array; hdrAddr: bigint; firstPage: bigint; type: number }

/** .eh_frame and .eh_frame_hdr of an ELF file, at link-time addresses. */
export function fileCfi(path: string): FileCfi | null {
  const b = new Uint8Array(readFileSync(path));
  const elf = readElf(b);
  const eh = elf.sections.find((s) => s.name === ".eh_frame");
  if (!eh || eh.type === 8 /* NOBITS */) return null;
  const hdr = elf.sections.find((s) => s.name === ".eh_frame_hdr");
  const loads = elf.phdrs.filter((p) => p.type === 1);
  const firstPage = loads.length ? loads.reduce((m, p) => (p.vaddr < m ? p.vaddr : m), loads[0].vaddr) & ~0xfffn : 0n;
  return {
    ehFrame: b.slice(eh.offset, eh.offset + eh.size),
    ehAddr: eh.addr,
    hdr: hdr ? b.slice(hdr.offset, hdr.offset + hdr.size) : undefined,
    hdrAddr: hdr ? hdr.addr : 0n,
    firstPage,
    type: elf.type,
  };
}

// ---------------------------------------------------------------------------
// /proc/PID/maps

export interface MapEntry { lo: bigint; hi: bigint; perms: string; offset: bigint; path: string }

export function parseMaps(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(line);
    if (m) out.push({ lo: BigInt("0x" + m[1]), hi: BigInt("0x" + m[2]), perms: m[3], offset: BigInt("0x" + m[4]), path: m[5] });
  }
  return out;
}

export interface LoadedCfi { path: string; bias: bigint; ehFrame: Uint8Array; ehAddr: bigint; hdr?: Uint8Array; hdrAddr: bigint }

/** The CFI of every file-backed module in `maps`, at its runtime addresses. */
export function loadedCfi(maps: MapEntry[]): LoadedCfi[] {
  const out: LoadedCfi[] = [];
  const seen = new Set<string>();
  for (const m of maps) {
    if (m.offset !== 0n || !m.path.startsWith("/") || seen.has(m.path) || !existsSync(m.path)) continue;
    seen.add(m.path);
    const cfi = fileCfi(m.path);
    if (!cfi) continue;
    const bias = cfi.type === 3 /* ET_DYN */ ? m.lo - cfi.firstPage : 0n;
    out.push({ path: m.path, bias, ehFrame: cfi.ehFrame, ehAddr: cfi.ehAddr + bias, hdr: cfi.hdr, hdrAddr: cfi.hdrAddr + bias });
  }
  return out;
}

/** Registry of every file-backed module in `maps` (at its load bias) and of the vDSO image. */
export function registryFor(core: Core, maps: MapEntry[], vdso?: { image: Uint8Array; base: bigint }): { reg: CfiRegistry; modules: Map<string, { id: number; bias: bigint }> } {
  const reg = new CfiRegistry(core);
  const modules = new Map<string, { id: number; bias: bigint }>();
  for (const m of loadedCfi(maps)) modules.set(m.path, { id: reg.addModule(m.ehFrame, m.ehAddr, m.hdr, m.hdrAddr, m.path), bias: m.bias });
  if (vdso) modules.set("[vdso]", { id: reg.addImage(vdso.image, vdso.base), bias: vdso.base });
  return { reg, modules };
}

// ---------------------------------------------------------------------------
// The deep.c fixture

export function compile(src: string, out: string, extra: string[] = []): void {
  execFileSync("gcc", ["-O2", "-fomit-frame-pointer", "-pthread", "-o", out, src, ...extra], { stdio: "pipe" });
}

export interface ThreadDump { tid: number; regs: Uint8Array; segments: StackSegment[] }

export interface DeepRun {
  dir: string;
  exe: string;
  pid: number;
  proc: ChildProcess;
  threads: ThreadDump[];
  maps: MapEntry[];
  vdso?: { image: Uint8Array; base: bigint };
  kill(): void;
}

export function readDump(file: string): ThreadDump {
  const b = new Uint8Array(readFileSync(file));
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (new TextDecoder().decode(b.subarray(0, 8)) !== "PCSTACK1") throw new Error(`${file}: not a dump`);
  const tid = Number(v.getBigUint64(8, true));
  const n = Number(v.getBigUint64(16, true));
  const regs = b.slice(24, 24 + 216);
  let p = 240;
  const segments: StackSegment[] = [];
  for (let i = 0; i < n; i++) {
    const windowAddr = v.getBigUint64(p, true);
    const len = Number(v.getBigUint64(p + 8, true));
    const mapLo = v.getBigUint64(p + 16, true);
    const mapHi = v.getBigUint64(p + 24, true);
    segments.push({ windowAddr, mapLo, mapHi, window: b.slice(p + 32, p + 32 + len) });
    p += 32 + len;
  }
  return { tid, regs, segments };
}

/** Builds deep.c (once per directory) and runs it until every thread has dumped itself. */
export async function runDeep(exe?: string): Promise<DeepRun> {
  const dir = mkdtempSync(join(tmpdir(), "patchc-stack-"));
  if (!exe) {
    exe = join(dir, "deep");
    compile(join(FIXTURES, "deep.c"), exe);
  }
  const out = join(dir, "out");
  execFileSync("mkdir", ["-p", out]);
  const proc = spawn(exe, [out], { stdio: "ignore" });
  const kill = () => {
    try { proc.kill("SIGKILL"); } catch { /* gone */ }
  };
  const deadline = Date.now() + 30_000;
  while (!existsSync(join(out, "done"))) {
    if (proc.exitCode !== null) throw new Error(`deep exited with ${proc.exitCode} before dumping`);
    if (Date.now() > deadline) { kill(); throw new Error("deep did not dump its threads within 30 s"); }
    await new Promise((r) => setTimeout(r, 20));
  }
  const threads = readdirSync(out).filter((f) => f.endsWith(".dump")).map((f) => readDump(join(out, f)));
  const maps = parseMaps(readFileSync(join(out, "maps"), "utf8"));
  const info = readFileSync(join(out, "info"), "utf8");
  const base = /vdso ([0-9a-f]+)/.exec(info);
  const vdso = base && BigInt("0x" + base[1]) !== 0n && existsSync(join(out, "vdso"))
    ? { image: new Uint8Array(readFileSync(join(out, "vdso"))), base: BigInt("0x" + base[1]) }
    : undefined;
  return { dir, exe, pid: proc.pid!, proc, threads, maps, vdso, kill };
}

export function cleanup(run: DeepRun): void {
  run.kill();
  rmSync(run.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------
// gdb's frames (its Python API gives each frame's type: inline and tail-call
// frames are gdb's reconstructions from debug info, not frames on the stack).

export interface GdbFrame { level: number; type: string; pc: bigint; name: string }

const GDB_SCRIPT = `
import gdb
kinds = {gdb.NORMAL_FRAME: "normal", gdb.INLINE_FRAME: "inline", gdb.SIGTRAMP_FRAME: "sigtramp", gdb.TAILCALL_FRAME: "tailcall"}
for inf in gdb.inferiors():
    for th in inf.threads():
        th.switch()
        print("THREAD %d" % th.ptid[1])
        f = gdb.newest_frame()
        while f is not None:
            print("FRAME %d %s 0x%x %s" % (f.level(), kinds.get(f.type(), str(f.type())), f.pc(), f.name() or "?"))
            older = f.older()
            if older is None:
                print("STOP %s" % gdb.frame_stop_reason_string(f.unwind_stop_reason()))
            f = older
`;

export function gdbBacktraces(pid: number, dir: string): Map<number, { frames: GdbFrame[]; stop: string }> {
  const script = join(dir, "bt.py");
  writeFileSync(script, GDB_SCRIPT);
  const text = execFileSync("gdb", [
    "-p", String(pid), "-batch", "-nx",
    "-ex", "set debuginfod enabled off",
    "-ex", "set backtrace past-main on",
    "-ex", "set backtrace past-entry on",
    "-ex", "set backtrace limit 0",
    "-x", script,
  ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
  const out = new Map<number, { frames: GdbFrame[]; stop: string }>();
  let cur: { frames: GdbFrame[]; stop: string } | null = null;
  for (const line of text.split("\n")) {
    let m;
    if ((m = /^THREAD (\d+)$/.exec(line))) { cur = { frames: [], stop: "" }; out.set(Number(m[1]), cur); }
    else if ((m = /^FRAME (\d+) (\S+) 0x([0-9a-f]+) (\S+)$/.exec(line)) && cur) {
      cur.frames.push({ level: Number(m[1]), type: m[2], pc: BigInt("0x" + m[3]), name: m[4] });
    } else if ((m = /^STOP (.*)$/.exec(line)) && cur) cur.stop = m[1];
  }
  return out;
}

// ---------------------------------------------------------------------------
// Hand-built CFI

/** Little-endian byte writer with LEB128. */
export class ByteWriter {
  readonly b: number[] = [];
  u8(v: number): this { this.b.push(v & 0xff); return this; }
  u16(v: number): this { return this.u8(v).u8(v >> 8); }
  u32(v: number): this { return this.u16(v & 0xffff).u16((v >>> 16) & 0xffff); }
  u64(v: bigint | number): this {
    const x = BigInt.asUintN(64, BigInt(v));
    return this.u32(Number(x & 0xffffffffn)).u32(Number(x >> 32n));
  }
  uleb(v: bigint | number): this {
    let x = BigInt.asUintN(64, BigInt(v));
    do { let c = Number(x & 0x7fn); x >>= 7n; if (x) c |= 0x80; this.u8(c); } while (x);
    return this;
  }
  sleb(v: bigint | number): this {
    let x = BigInt(v);
    for (;;) {
      const c = Number(x & 0x7fn);
      x >>= 7n;
      if ((x === 0n && !(c & 0x40)) || (x === -1n && c & 0x40)) return this.u8(c);
      this.u8(c | 0x80);
    }
  }
  bytes(a: ArrayLike<number>): this { for (let i = 0; i < a.length; i++) this.u8(a[i]); return this; }
  str(s: string): this { for (const ch of s) this.u8(ch.charCodeAt(0)); return this.u8(0); }
  get length(): number { return this.b.length; }
  out(): Uint8Array { return Uint8Array.from(this.b); }
}

export interface SynthFde { pc: bigint; len: number; program: ArrayLike<number> }

/**
 * An .eh_frame at `addr`: one CIE ("zR", FDE pointers pcrel|sdata4, code 1, data -8,
 * return column 16, initial rules CFA = rsp+8, return address at CFA-8, plus `augS`
 * for a signal frame) and one FDE per entry, then a terminator.
 */
export function synthEhFrame(addr: bigint, fdes: SynthFde[], opts: { signal?: boolean } = {}): Uint8Array {
  const w = new ByteWriter();
  const cie = new ByteWriter().u32(0).u8(1).str(opts.signal ? "zRS" : "zR").uleb(1).sleb(-8).u8(16).uleb(1).u8(0x1b)
    .u8(0x0c).uleb(7).uleb(8) // def_cfa rsp+8
    .u8(0x80 | 16).uleb(1); // offset r16 at cfa-8
  while ((cie.length + 4) % 8) cie.u8(0);
  w.u32(cie.length).bytes(cie.b);
  for (const f of fdes) {
    const start = w.length;
    const body = new ByteWriter();
    body.u32(start + 4); // CIE pointer: back to offset 0
    const field = addr + BigInt(start + 8);
    body.u32(Number(BigInt.asIntN(32, f.pc - field)));
    body.u32(f.len);
    body.uleb(0); // augmentation data
    body.bytes(f.program);
    while ((body.length + 4) % 8) body.u8(0);
    w.u32(body.length).bytes(body.b);
  }
  w.u32(0);
  return w.out();
}
