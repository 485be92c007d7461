// The relocation engine's own behaviour: address constraints, jump stubs for far calls
// (checked by disassembling the output with objdump), its own GOT, TLS refusals, and
// the errors that name the relocation, the symbol, the value and the range.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { CoreError } from "../src/core/instance.js";
import { GotKind, Ref, Relocation } from "../src/core/reloc.js";
import { Scratch, run } from "./helpers/gcc.js";
import { FIXTURE } from "./helpers/reloc-fixtures.js";
import { thrown } from "./helpers/thrown.js";

const core = nodeCore();
let scratch: Scratch;
const obj: Record<string, string> = {};

const EXT_DATA = `
extern int ext_data;
extern int ext_fn(int);
int get(int x) { return ext_data + ext_fn(x); }
`;

// Branches (call, jmp, jcc) with R_X86_64_PC32 to external symbols (gas emits PLT32 for
// `call ext`: .reloc writes the PC32 forms), a PLT32 call, and a call into another
// section of the object (to a local function: PC32 against the section symbol).
const BRANCHES = `
  .text
  .globl f
f:
  .byte 0xe8
  .reloc ., R_X86_64_PC32, ext1-4
  .long 0
  .byte 0xe9
  .reloc ., R_X86_64_PC32, ext2-4
  .long 0
  .byte 0x0f, 0x85
  .reloc ., R_X86_64_PC32, ext1-4
  .long 0
  call ext3@PLT
  ret
  .section .text.far,"ax",@progbits
lf: ret
  .text
g:
  call lf
  ret
  .section .note.GNU-stack,"",@progbits
`;

function asm(name: string, text: string, flags: string[] = []): string {
  const src = scratch.write(`${name}.s`, text);
  return scratch.gcc(src, `${name}.o`, ["-c", ...flags]);
}

beforeAll(() => {
  scratch = new Scratch();
  obj.nopie = scratch.gcc(FIXTURE, "nopie.o", ["-O2", "-c", "-fno-pic"]);
  obj.pie = scratch.gcc(FIXTURE, "pie.o", ["-O2", "-c", "-fPIE"]);
  obj.pic = scratch.gcc(FIXTURE, "pic.o", ["-O2", "-c", "-fPIC"]);
  obj.gnu2 = scratch.gcc(FIXTURE, "gnu2.o", ["-O2", "-c", "-fPIC", "-mtls-dialect=gnu2"]);
  obj.ext = scratch.gcc(EXT_DATA, "ext.o", ["-O2", "-c", "-fno-pic"]);
  obj.branches = asm("branches", BRANCHES);
}, 60_000);
afterAll(() => scratch?.remove());

function open(path: string, data?: Uint8Array): { elf: ElfReader; r: Relocation; close(): void } {
  const elf = new ElfReader(core, data ?? readFileSync(path), path);
  let r: Relocation;
  try {
    r = new Relocation(elf);
  } catch (e) {
    elf.close();
    throw e;
  }
  return { elf, r, close: () => (r.close(), elf.close()) };
}

const coreError = (fn: () => unknown): CoreError => thrown(CoreError, fn);

/** Binds every undefined non-TLS symbol with `addr(name)`, every TLS one with the given facts. */
function bindAll(r: Relocation, addr: (name: string) => bigint, tls: Record<string, { module: bigint; offset: bigint; blockTpoff?: bigint }> = {}) {
  for (const ref of r.refs()) {
    if (!ref.undefined || ref.gotSymbol) continue;
    if (ref.tls) {
      const t = tls[ref.name] ?? { module: 2n, offset: 0x10n, blockTpoff: -0x200n };
      r.bindTls(ref.sym, { module: t.module, blockTpoff: t.blockTpoff }, t.offset);
    } else r.bindAddress(ref.sym, addr(ref.name));
  }
}

/** objdump's disassembly of raw bytes at `vma`: address -> "mnemonic operands". */
function disassemble(bytes: Uint8Array, vma: bigint): Map<bigint, string> {
  const file = scratch.path(`raw-${vma.toString(16)}.bin`);
  writeFileSync(file, bytes);
  const out = run("objdump", ["-D", "-b", "binary", "-m", "i386:x86-64", `--adjust-vma=0x${vma.toString(16)}`, file]);
  const r = new Map<bigint, string>();
  for (const line of out.split("\n")) {
    const m = /^\s+([0-9a-f]+):\t(?:[0-9a-f]{2} )+\s*\t(.*)$/.exec(line);
    if (m) r.set(BigInt("0x" + m[1]), m[2].replace(/\s+/g, " ").trim());
  }
  return r;
}

describe("relocation engine", () => {
  it("reports what an object needs before placement", () => {
    const nopie = open(obj.nopie);
    const pie = open(obj.pie);
    try {
      const names = (x: typeof nopie) => new Map(x.r.refs().map((f) => [f.name, f]));
      const n = names(nopie);
      expect(n.get("puts")!.undefined).toBe(true);
      expect(n.get("puts")!.refs & Ref.CALL).toBeTruthy();
      expect(n.get("ext_tls")!.tls).toBe(true);
      expect(n.get("ext_tls")!.refs & Ref.TPOFF_GOT).toBeTruthy();
      expect(n.get("gvar")!.undefined).toBe(false);
      expect(nopie.r.info.staticTls).toBe(true);
      // Those without a section come first: what a caller must resolve.
      const all = nopie.r.refs();
      const ext = nopie.r.refs(true);
      expect(ext.length).toBe(nopie.r.info.refUndefined);
      expect(all.slice(0, ext.length)).toEqual(ext);
      expect(ext.every((f) => f.undefined)).toBe(true);
      expect(all.slice(ext.length).every((f) => !f.undefined)).toBe(true);
      expect(ext.map((f) => f.name).sort()).toEqual(["ext_ie", "ext_tls", "printf", "puts", "qsort", "strlen"]);
      expect(nopie.r.info.hasTlsSections).toBe(true);
      bindAll(nopie.r, () => 0x401000n);
      bindAll(pie.r, () => 0x401000n);
      nopie.r.setTls({ module: 1n, tlsStart: 0n, blockTpoff: -0x40n });
      pie.r.setTls({ module: 1n, tlsStart: 0n, blockTpoff: -0x40n });
      // Non-PIE code addresses its string literals and jump table with R_X86_64_32/32S.
      const np = nopie.r.plan();
      expect(np.below2G).toBe(true);
      expect(np.below).toBe(0x80000000n);
      const pp = pie.r.plan();
      expect(pp.below2G || pp.below4G).toBe(false);
      expect(pp.below).toBe(0n);
      expect(pp.gotSlots).toBe(3); // the initial-exec slots of ext_tls, ext_ie and own_ie
      expect(pp.stubs).toBeGreaterThan(0);
    } finally {
      nopie.close();
      pie.close();
    }
  });

  it("refuses a non-PIE object placed above 2 GiB, naming type, symbol, value and range", () => {
    const x = open(obj.nopie);
    try {
      bindAll(x.r, () => 0x7f0000001000n);
      x.r.setTls({ module: 1n, tlsStart: 0n, blockTpoff: -0x40n });
      x.r.plan();
      const base = 0x7f0000000000n;
      const size = x.r.layout(base);
      const e = coreError(() => x.r.apply(base, Number(size)));
      expect(e.code).toBe(303);
      expect(e.message).toMatch(/R_X86_64_32S? against (section \.rodata|`\w+`)\S* .*at \.\S+\+0x[0-9a-f]+: value 0x7f[0-9a-f]+ is out of range \[(-0x80000000, 0x7fffffff|0x0, 0xffffffff)\]/);
    } finally {
      x.close();
    }
  });

  it("refuses a PC-relative data reference out of reach, and reports where the object must be", () => {
    const x = open(obj.ext);
    try {
      bindAll(x.r, (name) => (name === "ext_data" ? 0x7f0000000000n : 0x7f0000100000n));
      const plan = x.r.plan();
      expect(plan.near).toEqual({ lo: 0x7f0000000000n, hi: 0x7f0000000000n });
      const size = x.r.layout(0x400000n);
      const e = coreError(() => x.r.apply(0x400000n, Number(size)));
      expect(e.code).toBe(303);
      expect(e.message).toMatch(/^.*: R_X86_64_PC32 against `ext_data` - 0x4 at \.text(\.startup)?\+0x[0-9a-f]+: value 0x7effffb[0-9a-f]+ is out of range \[-0x80000000, 0x7fffffff\]$/);
    } finally {
      x.close();
    }
  });

  it("sends far calls through jmp [rip] stubs and near ones straight (objdump of the output)", () => {
    const x = open(obj.pie);
    try {
      const far = new Map<string, bigint>();
      let next = 0x7fff12340000n;
      bindAll(x.r, (name) => {
        far.set(name, next);
        return (next += 0x1000n) - 0x1000n;
      });
      const plan = x.r.plan();
      const base = 0x555555554000n;
      const size = x.r.layout(base, { pages: true });
      expect(size % 4096n).toBe(0n);
      x.r.setTls({ module: 1n, tlsStart: x.r.tlsImage!, blockTpoff: -0x40n });
      const image = x.r.apply(base, Number(size));
      const stubs = x.r.stubs(plan.stubs);
      const stubAt = new Map(stubs.map((s) => [s.addr, s]));
      // Disassembled piece by piece (objdump would lose the instruction boundaries in padding).
      const piece = (addr: bigint, size: bigint) => disassemble(image.subarray(Number(addr - base), Number(addr - base + size)), addr);
      const stubCode = piece(x.r.stubsAddress!, plan.stubSize);
      const code = new Map<bigint, string>();
      for (const sec of x.elf.sections()) {
        if (sec.flags & 4n) for (const [a, i] of piece(x.r.sectionAddress(sec.index)!, sec.size)) code.set(a, i);
      }
      // Every stub: jmp *0x0(%rip) followed by its target.
      for (const s of stubs) {
        expect(stubCode.get(s.addr)).toMatch(/^jmp \*0x0\(%rip\)/);
        const o = Number(s.addr - base) + 6;
        expect(new DataView(image.buffer, image.byteOffset + o, 8).getBigUint64(0, true)).toBe(s.target);
      }
      // Every call in the text: to a stub whose target is a far symbol, or to a function of the object.
      const syms = x.elf.symbols(0);
      const local = new Set<bigint>();
      for (const s of syms) if (s.type === 2 && s.shndx !== 0) local.add(x.r.sectionAddress(s.shndx)! + s.value);
      let farCalls = 0;
      let nearCalls = 0;
      for (const [, insn] of code) {
        const m = /^(?:call|jmp) (0x[0-9a-f]+)$/.exec(insn);
        if (!m) continue;
        const dest = BigInt(m[1]);
        const stub = stubAt.get(dest);
        if (stub) {
          expect([...far.values()]).toContain(stub.target);
          farCalls++;
        } else if (local.has(dest)) nearCalls++;
      }
      expect(farCalls).toBeGreaterThanOrEqual(4); // puts, printf, strlen, qsort
      expect(nearCalls).toBeGreaterThanOrEqual(2); // sw, tls_use
    } finally {
      x.close();
    }
  });

  it("extends call, jmp and jcc (PC32) and PLT32 calls to far symbols; calls between its own sections must reach", () => {
    const x = open(obj.branches);
    try {
      const secs = x.elf.sections();
      const text = secs.find((s) => s.name === ".text")!;
      const farSec = secs.find((s) => s.name === ".text.far")!;
      const far: Record<string, bigint> = { ext1: 0x7f0000001000n, ext2: 0x7f0000002000n, ext3: 0x7f0000003000n };
      bindAll(x.r, (name) => far[name]);
      const plan = x.r.plan();
      // (ext1, -4) serves the call and the jne; ext2; ext3. None for the call to .text.far.
      expect(plan.stubs).toBe(3);
      x.r.place(text.index, 0x100000000n);
      x.r.placeStubs(0x100001000n);
      x.r.place(farSec.index, 0x100002000n);
      const win = x.r.apply(0x100000000n, 0x3000);
      const code = disassemble(win.subarray(0, Number(text.size)), 0x100000000n);
      const stubs = new Map(x.r.stubs(plan.stubs).map((s) => [s.addr, s.target]));
      const dests = [...code.values()].map((i) => /^(call|jmp|jne) (0x[0-9a-f]+)/.exec(i)).filter((m) => m !== null);
      expect(dests.map((m) => m![1])).toEqual(["call", "jmp", "jne", "call", "call"]);
      expect(dests.slice(0, 4).map((m) => stubs.get(BigInt(m![2])))).toEqual([far.ext1, far.ext2, far.ext1, far.ext3]);
      expect(BigInt(dests[4]![2])).toBe(0x100002000n); // straight to lf
      const stubCode = disassemble(win.subarray(0x1000, 0x1000 + Number(plan.stubSize)), 0x100001000n);
      expect([...stubCode.values()].filter((i) => i.startsWith("jmp *0x0(%rip)")).length).toBe(3);
      // The same, with .text.far 4 GiB away and written through a second, partial window.
      x.r.place(farSec.index, 0x200000000n);
      const e = coreError(() => x.r.apply(0x100000000n, 0x2000, { partial: true }));
      expect(e.code).toBe(303);
      expect(e.message).toMatch(/R_X86_64_PC32 against section \.text\.far - 0x4 at \.text\+0x[0-9a-f]+: value 0xffffff[0-9a-f]+ is out of range \[-0x80000000, 0x7fffffff\]/);
      expect(Array.from(x.r.apply(0x200000000n, 1, { partial: true }))).toEqual([0xc3]);
      expect(coreError(() => x.r.apply(0x200000000n, 0x1000)).code).toBe(307); // .text is outside a non-partial window
    } finally {
      x.close();
    }
  });

  it("builds its own GOT: address slots, TLS GD pairs, an LD pair per module and IE slots", () => {
    const x = open(obj.pic);
    try {
      bindAll(x.r, () => 0x7f0000000000n, { ext_tls: { module: 2n, offset: 0x20n }, ext_ie: { module: 2n, offset: 0x28n, blockTpoff: -0x400n } });
      const plan = x.r.plan();
      const base = 0x7e0000000000n;
      const size = x.r.layout(base);
      x.r.setTls({ module: 1n, tlsStart: x.r.tlsImage!, blockTpoff: -0x40n });
      const image = x.r.apply(base, Number(size));
      const slots = x.r.gotSlots(plan.gotSlots);
      const got = x.r.gotAddress!;
      expect(slots.length).toBe(plan.gotSlots);
      const view = new DataView(image.buffer, image.byteOffset);
      const slotByAddr = new Map(slots.map((s) => [s.addr, s]));
      // The image holds what the slot records say.
      for (const s of slots) expect(view.getBigUint64(Number(s.addr - base), true)).toBe(s.value);
      expect(slots[0].addr).toBe(got);
      // Each GOT-relative field points at the slot of its symbol and kind.
      const secs = x.elf.sections();
      const syms = x.elf.symbols(0);
      const kinds: Record<number, string> = { 9: "addr", 41: "addr", 42: "addr", 19: "gd-module", 20: "ld-module", 22: "tpoff" };
      let checked = 0;
      for (const t of x.elf.relaTables()) {
        const at = x.r.sectionAddress(t.target);
        if (at === undefined) continue;
        for (const rela of x.elf.relas(t)) {
          const kind = kinds[rela.type];
          if (!kind) continue;
          const P = at + rela.offset;
          const slot = slotByAddr.get(P + BigInt(view.getInt32(Number(P - base), true)) - rela.addend)!;
          expect(slot?.kind).toBe(kind);
          const name = syms[rela.sym].name;
          if (kind === "addr") expect(slot.value).toBe(x.r.symbolValue(rela.sym));
          if (kind === "tpoff") expect(BigInt.asIntN(64, slot.value)).toBe(name === "ext_ie" ? -0x400n + 0x28n : -0x40n + x.r.symbolValue(rela.sym));
          if (kind === "gd-module") {
            const off = slotByAddr.get(slot.addr + 8n)!;
            expect([slot.value, off.kind, off.value]).toEqual(name === "ext_tls" ? [2n, "gd-offset", 0x20n] : [1n, "gd-offset", x.r.symbolValue(rela.sym)]);
          }
          if (kind === "ld-module") expect([slot.value, slotByAddr.get(slot.addr + 8n)!.value]).toEqual([1n, 0n]);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(8);
      // TLS symbols defined in the object resolve to their offset in the block: .tdata first.
      const myTls = syms.find((s) => s.name === "my_tls")!;
      expect(secs[myTls.shndx].name).toBe(".tdata");
      expect(x.r.tlsImage).toBe(x.r.sectionAddress(myTls.shndx));
      expect(x.r.symbolValue(myTls.index)).toBe(myTls.value);
      const tbssSym = syms.find((s) => s.name === "my_tls2")!;
      expect(x.r.symbolValue(tbssSym.index)).toBe(x.r.sectionAddress(tbssSym.shndx)! - x.r.tlsImage! + tbssSym.value);
    } finally {
      x.close();
    }
  });

  it("refuses initial- and local-exec access to a module whose TLS is dynamic", () => {
    const ie = open(obj.pic);
    const le = open(obj.pie);
    try {
      bindAll(ie.r, () => 0x1000n, { ext_ie: { module: 3n, offset: 8n } }); // no blockTpoff: dynamic
      ie.r.setTls({ module: 1n, tlsStart: 0n, blockTpoff: -0x40n });
      ie.r.plan();
      const s1 = ie.r.layout(0x10000n);
      const e1 = coreError(() => ie.r.apply(0x10000n, Number(s1)));
      expect(e1.code).toBe(308);
      expect(e1.message).toMatch(/R_X86_64_GOTTPOFF against `ext_ie`: TLS module 3 is not in static TLS/);
      bindAll(le.r, () => 0x1000n);
      le.r.setTls({ module: 4n, tlsStart: 0n }); // the object's own TLS, dynamic
      le.r.plan();
      const s2 = le.r.layout(0x10000n);
      const e2 = coreError(() => le.r.apply(0x10000n, Number(s2)));
      expect(e2.code).toBe(308);
      expect(e2.message).toMatch(/R_X86_64_TPOFF32 against `\w+`.* at \.text\+0x[0-9a-f]+: TLS module 4 is not in static TLS/);
    } finally {
      ie.close();
      le.close();
    }
  });

  it("refuses TLS descriptors by name", () => {
    const e = coreError(() => open(obj.gnu2));
    expect(e.code).toBe(302);
    expect(e.message).toMatch(/R_X86_64_(GOTPC32_TLSDESC|TLSDESC_CALL) at \.text\S*\+0x[0-9a-f]+ .*is refused: TLS descriptors/);
  });

  it("names an unknown relocation type", () => {
    const data = new Uint8Array(readFileSync(obj.ext));
    const elf = new ElfReader(core, data, obj.ext);
    const rela = elf.sections().find((s) => s.name === ".rela.text")!;
    elf.close();
    data[Number(rela.offset) + 8] = 200; // r_info's type of the first relocation
    const e = coreError(() => open(obj.ext, data));
    expect(e.code).toBe(301);
    expect(e.message).toMatch(/unknown relocation type 200 at \.text\S*\+0x[0-9a-f]+/);
  });

  it("names an unbound symbol, and keeps the order of the steps", () => {
    const x = open(obj.ext);
    try {
      expect(coreError(() => x.r.apply(0n, 16)).code).toBe(309);
      expect(coreError(() => x.r.layout(0n)).code).toBe(309);
      const plan = x.r.plan();
      const size = x.r.layout(0x400000n);
      const e = coreError(() => x.r.apply(0x400000n, Number(size)));
      expect(e.code).toBe(304);
      expect(e.message).toMatch(/`ext_(data|fn)`.*: it is undefined and not bound/);
      expect(coreError(() => x.r.bindAddress(x.r.refs()[0].sym, 1n)).code).toBe(309);
      expect(coreError(() => x.r.apply(0x400000n, Number(size) - 1)).code).toBe(307);
      expect(plan.gotSlots).toBe(0);
    } finally {
      x.close();
    }
  });

  it("checks bindings and placements against the object", () => {
    const x = open(obj.pic);
    try {
      const refs = new Map(x.r.refs().map((f) => [f.name, f]));
      expect(coreError(() => x.r.bindAddress(refs.get("ext_tls")!.sym, 1n)).code).toBe(310);
      expect(coreError(() => x.r.bindTls(refs.get("puts")!.sym, { module: 1n }, 0n)).code).toBe(310);
      expect(coreError(() => x.r.bindGot(refs.get("puts")!.sym, GotKind.TPOFF, 0x1000n)).code).toBe(310);
      expect(coreError(() => x.r.bindAddress(100000, 1n)).code).toBe(310);
      const text = x.elf.sectionIndex(".text");
      expect(coreError(() => x.r.place(text, 0x1001n)).code).toBe(307);
      const comment = x.elf.sectionIndex(".comment");
      expect(coreError(() => x.r.place(comment, 0x1000n)).code).toBe(307);
    } finally {
      x.close();
    }
  });

  it("stops working once its ELF handle is closed", () => {
    const elf = new ElfReader(core, readFileSync(obj.ext), obj.ext);
    const r = new Relocation(elf);
    elf.close();
    expect(coreError(() => r.plan()).code).toBe(1);
    r.close();
  });
});

// Malformed objects the ELF reader accepts (it checks headers, tables and indices, not
// relocation semantics): relocation records, symbols and section headers mutated at
// random. Every case runs the whole pipeline; it may fail with a relocation error, never
// trap, abort, or write outside its output window (guard bytes around it are checked).
describe("relocation engine on mutated objects", () => {
  it("fails with a named error, or relocates inside its window, in every case", () => {
    let seed = 0x1234567;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const x = core.exports as unknown as {
      alloc(n: number): number;
      free(p: number): void;
      reloc_apply(h: number, out: number, len: number, base: bigint, flags: number): number;
    };
    let applied = 0;
    let refused = 0;
    const codes = new Map<number, number>();
    for (const name of ["pie", "nopie", "pic"]) {
      const orig = new Uint8Array(readFileSync(obj[name]));
      const probe = new ElfReader(core, orig, obj[name]);
      const secs = probe.sections();
      const symtab = secs.find((s) => s.type === 2)!;
      const relas = secs.filter((s) => s.type === 4 && (secs[s.info].flags & 2n) !== 0n && s.size > 0n);
      const allocs = secs.filter((s) => (s.flags & 2n) !== 0n);
      probe.close();
      const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let n = 0; n < 400; n++) {
        const data = orig.slice();
        const v = dv(data);
        for (let m = 1 + rand(3); m > 0; m--) {
          const what = rand(10);
          if (what < 6) {
            const t = relas[rand(relas.length)];
            const o = Number(t.offset) + 24 * rand(Number(t.size / 24n));
            const field = rand(4);
            if (field === 0) v.setBigUint64(o, BigInt(rand(2) ? rand(0x400) : rand(0x7fffffff)) * BigInt(1 + rand(3) * 0x10000), true);
            else if (field === 1) v.setUint32(o + 8, rand(3) ? rand(56) : rand(0xffffffff), true);
            else if (field === 2) v.setUint32(o + 12, rand(Number(symtab.size / 24n) + 2), true);
            else v.setBigInt64(o + 16, BigInt(rand(2) ? rand(64) - 32 : rand(0x7fffffff)) << BigInt(rand(40)), true);
          } else if (what < 8) {
            const o = Number(symtab.offset) + 24 * (1 + rand(Number(symtab.size / 24n) - 1));
            if (rand(2)) v.setUint16(o + 6, rand(4) ? rand(secs.length + 2) : [0, 0xfff1, 0xfff2, 0xffff][rand(4)], true);
            else v.setUint8(o + 4, rand(256));
          } else {
            const s = allocs[rand(allocs.length)];
            const h = Number(v.getBigUint64(0x28, true)) + 64 * s.index;
            const field = rand(3);
            if (field === 0) v.setBigUint64(h + 32, BigInt(rand(0x1000)), true); // sh_size
            else if (field === 1) v.setBigUint64(h + 48, 1n << BigInt(rand(40)), true); // sh_addralign
            else v.setBigUint64(h + 8, BigInt(rand(0x800)), true); // sh_flags
          }
        }
        let elf: ElfReader;
        try {
          elf = new ElfReader(core, data, `${name} case ${n}`);
        } catch (e) {
          expect(e).toBeInstanceOf(CoreError);
          continue;
        }
        try {
          const r = new Relocation(elf);
          try {
            bindAll(r, () => 0x7f0000001000n);
            r.plan();
            const base = 0x400000n * BigInt(1 + rand(4));
            const size = Number(r.layout(base));
            r.setTls({ module: 1n, tlsStart: r.tlsImage ?? base, blockTpoff: -0x1000n });
            const p = x.alloc(size + 64);
            try {
              new Uint8Array(core.exports.memory.buffer).fill(0xab, p, p + size + 64);
              const code = x.reloc_apply(r.handle, p + 32, size, base, 0);
              const mem = new Uint8Array(core.exports.memory.buffer);
              for (let i = 0; i < 32; i++) {
                expect(mem[p + i], `guard before the window, ${name} case ${n}`).toBe(0xab);
                expect(mem[p + 32 + size + i], `guard after the window, ${name} case ${n}`).toBe(0xab);
              }
              if (code !== 0) throw core.lastError();
              applied++;
            } finally {
              x.free(p);
            }
          } finally {
            r.close();
          }
        } catch (e) {
          if (!(e instanceof CoreError)) throw e; // a trap (RuntimeError) or a test bug
          expect(e.message, `${name} case ${n}`).not.toMatch(/aborted/);
          expect(e.code === 2 || e.code >= 300, `${name} case ${n}: ${e.message}`).toBe(true);
          codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
          refused++;
        } finally {
          elf.close();
        }
      }
    }
    // Both outcomes occur: the mutations reach the engine's checks and leave some objects valid.
    expect(applied).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(50);
    expect([...codes.keys()].filter((c) => c >= 300).length).toBeGreaterThanOrEqual(4);
  });
});
