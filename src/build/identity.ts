// The proof of identity, Ksplice-style: before a function of the target is replaced, the
// build proves that the original object's code of it is the target's code. The bytes
// must be equal wherever the object has no relocation, and every relocation of the
// object must refer, in the target, to the same thing: the same symbol (by address), its
// PLT entry or GOT slot, the same string content in a merged string section, the same
// constant, an equivalent jump table; for a reference into .bss (SHT_NOBITS: no bytes in
// the object nor in the target's file), the same variable by name, file and size. Any
// mismatch refuses the build: the objects are of another build, or other flags, or
// another version.
//
// How the target's field is read back (psABI x86-64, 4.4 "Relocation"; S symbol, A
// addend, P place, G GOT slot): for the PC-relative types (PC32, PLT32, GOTPCREL*,
// GOTTPOFF, TLSGD, TLSLD) the field holds S + A - P (G + A - P), so the target's thing is
// X = field + P - A; for the absolute ones (32, 32S, 64) X = field - A.
//
// Forms the linker rewrote are accepted as such (H.J. Lu, "Linker optimization for
// x86-64 GOTPCRELX", and the psABI's TLS relaxations):
//
//   mov  foo@GOTPCREL(%rip), %r   8b /r        ->  lea foo(%rip), %r     8d /r
//   mov  foo@GOTPCREL(%rip), %r   8b /r        ->  mov $foo, %r          c7 /0 (non-PIC)
//   call *foo@GOTPCREL(%rip)      ff 15        ->  addr32 call foo       67 e8
//   jmp  *foo@GOTPCREL(%rip)      ff 25        ->  jmp foo; nop          e9 rel32 90
//   mov  x@GOTTPOFF(%rip), %r     8b /r        ->  mov $tpoff(x), %r     c7 /0   (IE -> LE)
//   add  x@GOTTPOFF(%rip), %r     03 /r        ->  add $tpoff(x), %r     81 /0   (IE -> LE)
//
// General- and local-dynamic TLS accesses in an executable (PIE or not) are rewritten
// into other instruction sequences (x86-64 psABI, "Thread-Local Storage" relaxations;
// Drepper, "ELF Handling For Thread-Local Storage", 5.5; bfd's elf_x86_64_relocate_section
// and lld write the same bytes). `roff` is the offset of the TLSGD/TLSLD field:
//
//   GD, the object (16 bytes from roff-4; the call's PLT32/GOTPCRELX at roff+8):
//     66 48 8d 3d <x@tlsgd>          data16 lea x@tlsgd(%rip),%rdi
//     66 66 48 e8 <__tls_get_addr>   data16 data16 rex64 call __tls_get_addr@PLT
//   or, -fno-plt:
//     66 48 ff 15 <__tls_get_addr>   data16 rex64 call *__tls_get_addr@GOTPCREL(%rip)
//   GD -> LE (x defined in the executable):
//     64 48 8b 04 25 00 00 00 00     mov %fs:0,%rax
//     48 8d 80 <tpoff(x)>            lea x@tpoff(%rax),%rax
//   GD -> IE (x in a shared library):
//     64 48 8b 04 25 00 00 00 00     mov %fs:0,%rax
//     48 03 05 <GOT slot - P>        add x@gottpoff(%rip),%rax      (slot: TPOFF64 of x)
//
//   LD, the object (12 bytes from roff-3; the call's PLT32 at roff+5, or 13 bytes with
//   -fno-plt and its GOTPCRELX at roff+6):
//     48 8d 3d <x@tlsld>             lea x@tlsld(%rip),%rdi
//     e8 <__tls_get_addr>            call __tls_get_addr@PLT
//     ff 15 <__tls_get_addr>         call *__tls_get_addr@GOTPCREL(%rip)     (-fno-plt)
//   LD -> LE, padded with prefixes to the length of the original sequence:
//     66 66 66 64 48 8b 04 25 00 00 00 00        data16 x3 mov %fs:0,%rax   (12 bytes)
//     66 66 66 66 64 48 8b 04 25 00 00 00 00     data16 x4 mov %fs:0,%rax   (13 bytes)
//   and every x@dtpoff (DTPOFF32) in the executable's code then holds tpoff(x).
//
// The call to __tls_get_addr is gone after the rewrite: its relocation is consumed by
// the sequence. The large-model forms (movabs ... __tls_get_addr@PLTOFF) are refused.
import { createHash } from "node:crypto";
import type { ElfRela, ElfSymbol } from "../core/elf.js";
import { relocName } from "../format/defs.js";
import { BuildError } from "./errors.js";
import { ObjectFile, SHF_MERGE, SHF_STRINGS, SHF_TLS, SHN_ABS, SHN_UNDEF, SHT_NOBITS } from "./object-file.js";
import { STT_FUNC, STT_OBJECT, STT_SECTION, STT_TLS, type TargetImage } from "./target.js";

const R = {
  R64: 1,
  PC32: 2,
  PLT32: 4,
  GOTPCREL: 9,
  R32: 10,
  R32S: 11,
  TLSGD: 19,
  TLSLD: 20,
  DTPOFF32: 21,
  GOTTPOFF: 22,
  TPOFF32: 23,
  GOTPCRELX: 41,
  REX_GOTPCRELX: 42,
} as const;

const R_X86_64_GLOB_DAT = 6;
const R_X86_64_JUMP_SLOT = 7;
const R_X86_64_DTPMOD64 = 16;
const R_X86_64_TPOFF64 = 18;
const R_X86_64_RELATIVE = 8;

// The relaxed TLS sequences (see the top of the file).
const MOV_FS0_RAX = [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0]; // mov %fs:0,%rax
const GD_LEA = [0x66, 0x48, 0x8d, 0x3d]; //                        data16 lea x@tlsgd(%rip),%rdi
const GD_CALL_PLT = [0x66, 0x66, 0x48, 0xe8]; //                   data16 data16 rex64 call rel32
const GD_CALL_GOT = [0x66, 0x48, 0xff, 0x15]; //                   data16 rex64 call *rel32(%rip)
const LE_LEA = [0x48, 0x8d, 0x80]; //                              lea disp32(%rax),%rax
const IE_ADD = [0x48, 0x03, 0x05]; //                              add disp32(%rip),%rax
const LD_LEA = [0x48, 0x8d, 0x3d]; //                              lea x@tlsld(%rip),%rdi
const LD_LE_12 = [0x66, 0x66, 0x66, ...MOV_FS0_RAX]; //            data16 x3 mov %fs:0,%rax
const LD_LE_13 = [0x66, 0x66, 0x66, 0x66, ...MOV_FS0_RAX]; //      data16 x4 mov %fs:0,%rax

function bytesAre(b: Uint8Array, at: number, want: number[]): boolean {
  if (at < 0 || at + want.length > b.length) return false;
  for (let i = 0; i < want.length; i++) if (b[at + i] !== want[i]) return false;
  return true;
}

/** A mismatch: where (offset in the function) and what. */
class Mismatch extends Error {}

/** The relocations of the function being proven, for sequences that span several (TLS relaxations). */
interface Sequence {
  relocs: ElfRela[];
  /** Offset of the function in its section (`mine`/`theirs` start there). */
  base: bigint;
  /** Offsets (in the function) of relocations a sequence already checked. */
  consumed: Set<number>;
}

export interface Proven {
  /** sha256 of the function's bytes in the target file. */
  sha256: string;
  /** The first bytes at its entry (16, or all of a shorter function). */
  site: Uint8Array;
}

/**
 * Proves that `fn` (a function symbol of the original object `obj`) is the target's
 * function at `addr` of `size` bytes. Throws a BuildError naming the object, the function
 * and the first difference.
 */
export function proveIdentity(target: TargetImage, obj: ObjectFile, fn: ElfSymbol, addr: bigint, size: bigint): Proven {
  const what = `${obj.name}: ${fn.name}`;
  const refuse = (reason: string): never => {
    throw new BuildError("proof of identity", `${what}: ${reason}; the original objects are not the target's build (other sources, flags or version)`);
  };
  if (fn.size !== size) refuse(`${fn.size} bytes in the object, ${size} in the target ${target.file}`);
  const n = Number(size);
  const mine = obj.data(fn.shndx).subarray(Number(fn.value), Number(fn.value) + n);
  const theirs = target.bytesAt(addr, n);
  if (!theirs) return refuse(`its ${n} bytes at 0x${addr.toString(16)} are not in ${target.file}`);
  const checker = new Checker(target, obj);
  const free = new Uint8Array(n); // 1: may differ (a relocation field, a relaxed opcode)
  const relocs = obj.relocs(fn.shndx).filter((r) => r.offset >= fn.value && r.offset < fn.value + size);
  relocs.sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  const ctx: Sequence = { relocs, base: fn.value, consumed: new Set() };
  for (const r of relocs) {
    const off = Number(r.offset - fn.value);
    if (ctx.consumed.has(off)) continue; // part of a rewritten TLS sequence, checked with it
    try {
      checker.relocation(r, mine, theirs, off, addr + BigInt(off), free, ctx);
    } catch (e) {
      if (e instanceof Mismatch) refuse(`at +0x${off.toString(16)}: ${relocName(r.type)} to ${checker.describe(r)}: ${e.message}`);
      throw e;
    }
  }
  for (let i = 0; i < n; i++) {
    if (!free[i] && mine[i] !== theirs[i]) refuse(`byte +0x${i.toString(16)} is 0x${hex2(mine[i])} in the object and 0x${hex2(theirs[i])} in the target`);
  }
  return { sha256: createHash("sha256").update(theirs).digest("hex"), site: new Uint8Array(theirs.subarray(0, Math.min(16, n))) };
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

const i32 = (b: Uint8Array, o: number) => BigInt(new DataView(b.buffer, b.byteOffset, b.byteLength).getInt32(o, true));
const u32 = (b: Uint8Array, o: number) => BigInt(new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(o, true));
const i64 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigInt64(o, true);
const hexa = (v: bigint) => `0x${BigInt.asUintN(64, v).toString(16)}`;

class Checker {
  /** Anonymous data sections already proven at a target address. */
  private proven = new Set<string>();

  constructor(
    private readonly target: TargetImage,
    private readonly obj: ObjectFile,
  ) {}

  describe(r: ElfRela): string {
    const s = this.obj.symbols[r.sym];
    const name = s.type === STT_SECTION ? this.obj.sections[s.shndx].name : s.name;
    return `${name}${r.addend < 0n ? ` - ${-r.addend}` : ` + ${r.addend}`}`;
  }

  /** Checks one relocation at `off` of `mine`/`theirs` (P = `place` in the target); marks what may differ in `free`. */
  relocation(r: ElfRela, mine: Uint8Array, theirs: Uint8Array, off: number, place: bigint, free: Uint8Array, seq?: Sequence): void {
    const s = this.obj.symbols[r.sym];
    const A = r.addend;
    const mark = (from: number, to: number) => {
      for (let i = Math.max(0, from); i < Math.min(free.length, to); i++) free[i] = 1;
    };
    const need = (bytes: number) => {
      if (off + bytes > theirs.length) throw new Mismatch("the relocated field runs past the end");
    };
    switch (r.type) {
      case R.PC32:
      case R.PLT32: {
        need(4);
        mark(off, off + 4);
        const X = i32(theirs, off) + place - A;
        this.address(s, A, X, r.type === R.PLT32);
        return;
      }
      case R.R32:
      case R.R32S:
      case R.R64: {
        const w = r.type === R.R64 ? 8 : 4;
        need(w);
        mark(off, off + w);
        const v = r.type === R.R64 ? i64(theirs, off) : r.type === R.R32 ? u32(theirs, off) : i32(theirs, off);
        this.address(s, A, v - A, false);
        return;
      }
      case R.GOTPCREL:
      case R.GOTPCRELX:
      case R.REX_GOTPCRELX: {
        need(4);
        mark(off, off + 4);
        const op = off >= 2 ? mine[off - 2] : -1;
        const top = off >= 2 ? theirs[off - 2] : -1;
        if (top === op && theirs[off - 1] === mine[off - 1]) {
          this.gotSlot(s, i32(theirs, off) + place - A);
          return;
        }
        if (op === 0x8b && top === 0x8d) {
          mark(off - 2, off - 1); // mov -> lea
          this.address(s, 0n, i32(theirs, off) + place - A, false);
          return;
        }
        if (op === 0x8b && top === 0xc7) {
          mark(off - 3, off); // mov -> mov $imm (REX.R moves to REX.B, modrm changes)
          this.address(s, 0n, i32(theirs, off), false);
          return;
        }
        if (op === 0xff && mine[off - 1] === 0x15 && top === 0x67 && theirs[off - 1] === 0xe8) {
          mark(off - 2, off); // call * -> addr32 call
          this.address(s, 0n, i32(theirs, off) + place - A, false);
          return;
        }
        if (op === 0xff && mine[off - 1] === 0x25 && top === 0xe9) {
          need(4);
          mark(off - 2, off + 4); // jmp * -> jmp rel32; nop
          this.address(s, 0n, i32(theirs, off - 1) + place + 3n, false);
          return;
        }
        throw new Mismatch(`the linker rewrote the instruction (0x${hex2(op & 0xff)} -> 0x${hex2(top & 0xff)}) in a way the proof does not know`);
      }
      case R.GOTTPOFF: {
        need(4);
        mark(off, off + 4);
        const op = off >= 2 ? mine[off - 2] : -1;
        const top = off >= 2 ? theirs[off - 2] : -1;
        const v = this.tlsVariable(s, A);
        if (top === op) {
          const slot = i32(theirs, off) + place - A;
          this.tpoffSlot(v, slot);
          return;
        }
        if ((op === 0x8b && top === 0xc7) || (op === 0x03 && top === 0x81)) {
          mark(off - 3, off); // IE -> LE
          const want = this.target.tpoff(v.value);
          if (want === undefined || i32(theirs, off) !== want) throw new Mismatch(`the thread-pointer offset ${i32(theirs, off)} is not ${v.name}'s (${want})`);
          return;
        }
        throw new Mismatch(`the linker rewrote the initial-exec access (0x${hex2(op & 0xff)} -> 0x${hex2(top & 0xff)}) in a way the proof does not know`);
      }
      case R.TPOFF32: {
        need(4);
        mark(off, off + 4);
        const v = this.tlsVariable(s, A);
        const want = this.target.tpoff(v.value);
        if (want === undefined || i32(theirs, off) - A !== want) throw new Mismatch(`thread-pointer offset ${i32(theirs, off) - A}, not ${v.name}'s (${want})`);
        return;
      }
      case R.DTPOFF32: {
        need(4);
        mark(off, off + 4);
        const v = this.tlsVariable(s, A);
        // In an executable's code the linker resolves x@dtpoff to tpoff(x): the LD
        // sequence before it became LE (bfd: "relocation = elf_x86_64_tpoff (...)").
        // `seq` is given for the code of a function (not for data a function refers to).
        const inExec = this.target.executable && seq !== undefined;
        const want = inExec ? this.target.tpoff(v.value) : v.value;
        if (want === undefined || i32(theirs, off) - A !== want) {
          throw new Mismatch(`${inExec ? "thread-pointer offset" : "offset in the TLS block"} ${i32(theirs, off) - A}, not ${v.name}'s (${want})`);
        }
        return;
      }
      case R.TLSGD:
      case R.TLSLD: {
        need(4);
        if (this.relaxedTls(r, s, mine, theirs, off, place, free, seq)) return;
        mark(off, off + 4);
        const slot = i32(theirs, off) + place - A;
        if (!this.target.slotAt(slot, R_X86_64_DTPMOD64)) throw new Mismatch(`no DTPMOD64 slot at ${hexa(slot)}`);
        return;
      }
      default:
        throw new Mismatch(`${relocName(r.type)} is not a relocation type the proof verifies`);
    }
  }

  /**
   * A general- or local-dynamic sequence the linker rewrote (the byte tables at the top of
   * the file): checks the new form, the thread-pointer offset or the GOT slot, and consumes
   * the relocation of the __tls_get_addr call. False when the target kept the sequence.
   */
  private relaxedTls(r: ElfRela, s: ElfSymbol, mine: Uint8Array, theirs: Uint8Array, off: number, place: bigint, free: Uint8Array, seq?: Sequence): boolean {
    const gd = r.type === R.TLSGD;
    const start = off - (gd ? 4 : 3);
    const rewritten = gd ? bytesAre(theirs, start, MOV_FS0_RAX) : bytesAre(theirs, start, LD_LE_12) || bytesAre(theirs, start, LD_LE_13);
    if (!rewritten) return false;
    const what = gd ? "general-dynamic" : "local-dynamic";
    if (!seq) throw new Mismatch(`a ${what} TLS access outside code`);
    // The object's sequence, and its call of __tls_get_addr.
    let callAt: number;
    let end: number;
    if (gd) {
      if (!bytesAre(mine, start, GD_LEA)) throw new Mismatch(`the object's ${what} sequence is not data16 lea x@tlsgd(%rip),%rdi`);
      if (bytesAre(mine, off + 4, GD_CALL_PLT) || bytesAre(mine, off + 4, GD_CALL_GOT)) callAt = off + 8;
      else throw new Mismatch(`the object's ${what} sequence does not call __tls_get_addr as the psABI's relaxable form does`);
      end = off + 12;
    } else {
      if (!bytesAre(mine, start, LD_LEA)) throw new Mismatch(`the object's ${what} sequence is not lea x@tlsld(%rip),%rdi`);
      if (mine[off + 4] === 0xe8) callAt = off + 5;
      else if (mine[off + 4] === 0xff && mine[off + 5] === 0x15) callAt = off + 6;
      else throw new Mismatch(`the object's ${what} sequence does not call __tls_get_addr as the psABI's relaxable form does`);
      end = callAt + 4;
    }
    const call = seq.relocs.find((x) => x.offset === seq.base + BigInt(callAt));
    const callee = call ? this.obj.symbols[call.sym] : undefined;
    if (!call || !callee || callee.name !== "__tls_get_addr" || ![R.PLT32, R.PC32, R.GOTPCREL, R.GOTPCRELX, R.REX_GOTPCRELX].includes(call.type as never)) {
      throw new Mismatch(`the object's ${what} sequence has no relocation for its call of __tls_get_addr at +0x${callAt.toString(16)}`);
    }
    if (end > theirs.length) throw new Mismatch("the sequence runs past the end of the function");
    seq.consumed.add(callAt);
    for (let i = start; i < end; i++) free[i] = 1;
    if (!gd) {
      // LD -> LE: one padded mov %fs:0,%rax of the sequence's length.
      const want = end - start === 13 ? LD_LE_13 : LD_LE_12;
      if (!bytesAre(theirs, start, want)) throw new Mismatch(`the linker rewrote the ${what} sequence into other bytes than the psABI's LD -> LE form`);
      return true;
    }
    const field = i32(theirs, off + 8);
    if (bytesAre(theirs, off + 5, LE_LEA)) {
      // GD -> LE: the variable is the executable's; the field is its thread-pointer offset.
      const v = this.tlsVariable(s, r.addend + 4n);
      const want = this.target.tpoff(v.value);
      if (want === undefined || field !== want) throw new Mismatch(`GD -> LE: the thread-pointer offset ${field} is not ${v.name}'s (${want})`);
      return true;
    }
    if (bytesAre(theirs, off + 5, IE_ADD)) {
      // GD -> IE: add x@gottpoff(%rip),%rax; the slot (field + end of the add) holds tpoff(x).
      const slot = field + place + 12n;
      if (s.shndx === SHN_UNDEF) {
        if (this.target.slots(s.name).some((x) => x.address === slot && x.type === R_X86_64_TPOFF64)) return true;
        throw new Mismatch(`GD -> IE: the GOT slot at ${hexa(slot)} is not the TPOFF64 slot of ${s.name}`);
      }
      this.tpoffSlot(this.tlsVariable(s, r.addend + 4n), slot);
      return true;
    }
    throw new Mismatch(`the linker rewrote the ${what} sequence (mov %fs:0,%rax; then 0x${hex2(theirs[off + 5])} 0x${hex2(theirs[off + 6])}) in a way the proof does not know`);
  }

  /** The TLS variable a TLS relocation names, in the target. */
  private tlsVariable(s: ElfSymbol, A: bigint): { name: string; value: bigint } {
    const thing = s.type === STT_SECTION ? this.obj.objectAt(s.shndx, A < 0n ? 0n : A) : s;
    if (!thing) throw new Mismatch("no TLS variable at that place of its section");
    const t = this.target.find(thing.name, thing.bind === 0, this.obj.sourceFile);
    if (!t || t.sym.type !== STT_TLS) throw new Mismatch(`the target has no TLS variable ${thing.name}`);
    return { name: thing.name, value: t.sym.value + (s.type === STT_SECTION ? (A < 0n ? 0n : A) - thing.value : 0n) };
  }

  private tpoffSlot(v: { name: string; value: bigint }, slot: bigint): void {
    const dyn = this.target.slotAt(slot, R_X86_64_TPOFF64);
    if (dyn) return; // filled by ld.so for this variable
    const b = this.target.bytesAt(slot, 8);
    const want = this.target.tpoff(v.value);
    if (!b || want === undefined || i64(b, 0) !== want) throw new Mismatch(`the GOT slot at ${hexa(slot)} does not hold ${v.name}'s thread-pointer offset`);
  }

  /** The GOT slot at `slot` holds the address of `s` (a dynamic GLOB_DAT for it, a RELATIVE or a constant with its address). */
  private gotSlot(s: ElfSymbol, slot: bigint): void {
    const name = s.type === STT_SECTION ? undefined : s.name;
    if (name && this.target.slots(name).some((x) => x.address === slot && (x.type === R_X86_64_GLOB_DAT || x.type === R_X86_64_JUMP_SLOT))) return;
    const want = this.expected(s, 0n);
    const rel = this.target.slotAt(slot, R_X86_64_RELATIVE);
    if (rel) {
      if (want.includes(BigInt.asUintN(64, rel.addend))) return;
      throw new Mismatch(`the GOT slot at ${hexa(slot)} holds ${hexa(rel.addend)}, not ${want.map(hexa).join(" or ")}`);
    }
    const b = this.target.bytesAt(slot, 8);
    if (b && want.includes(BigInt.asUintN(64, i64(b, 0)))) return;
    throw new Mismatch(`the GOT slot at ${hexa(slot)} is not one for it`);
  }

  /** The target's thing at X is what `s` + `A` is in the object. */
  private address(s: ElfSymbol, A: bigint, X: bigint, call: boolean): void {
    if (s.shndx !== SHN_UNDEF && s.shndx !== SHN_ABS && s.shndx < this.obj.sections.length) {
      const sec = this.obj.sections[s.shndx];
      const flags = Number(sec.flags);
      const named = s.type === STT_FUNC || s.type === STT_OBJECT;
      if (sec.type === SHT_NOBITS && (flags & SHF_TLS) === 0) {
        // .bss: no bytes in the object nor in the target's file to compare. The variable
        // itself is the proof: the target's symbol of that name (a static by its STT_FILE
        // and position), of the same size, where the target's code refers.
        this.zeroed(s, X);
        return;
      }
      if (!named && !this.obj.isCode(s.shndx) && (flags & SHF_TLS) === 0) {
        // A label or the section: anonymous data (strings, constants, tables), compared by content.
        if (s.type !== STT_SECTION || !this.obj.objectAt(s.shndx, A < 0n ? 0n : A + 4n)) {
          this.content(s, A, X);
          return;
        }
      }
    }
    const want = this.expected(s, A, call);
    if (!want.includes(BigInt.asUintN(64, X))) {
      throw new Mismatch(`the target has ${hexa(X)} there, not ${want.length ? want.map(hexa).join(" or ") : "(not found in the target)"}`);
    }
  }

  /**
   * A reference into a SHT_NOBITS section (.bss): X is the variable's address in the target
   * (for the section symbol, the section's start: each variable of the section at its
   * offset from there). Each variable is the target's symbol of that name, a static the one
   * of the object's source file, of the same size.
   */
  private zeroed(s: ElfSymbol, X: bigint): void {
    const sec = this.obj.sections[s.shndx];
    const vars = s.type === STT_SECTION ? this.obj.objectsIn(s.shndx) : [s];
    if (!vars.length) throw new Mismatch(`${sec.name} (SHT_NOBITS, no bytes to compare) has no named variable to find in the target`);
    const base = s.type === STT_SECTION ? 0n : s.value;
    for (const v of vars) {
      const local = v.bind === 0;
      const t = this.target.find(v.name, local, this.obj.sourceFile);
      if (!t) throw new Mismatch(`the target has no variable ${v.name}${local ? ` of ${this.obj.sourceFile}` : ""}`);
      if (t.sym.size !== v.size) throw new Mismatch(`${v.name} is ${v.size} bytes in the object, ${t.sym.size} in the target`);
      const want = BigInt.asUintN(64, t.sym.value - v.value + base);
      if (BigInt.asUintN(64, X) !== want) {
        throw new Mismatch(`the target has ${hexa(X)} there, not ${hexa(want)}${s.type === STT_SECTION ? ` (${sec.name} with ${v.name} at ${hexa(t.sym.value)})` : ""}`);
      }
    }
  }

  /**
   * Where `s` is in the target (section symbols: the function or object the section holds):
   * its address, or for an imported function its PLT entry. Several candidates: a call
   * may go to a function or to its PLT entry.
   */
  private expected(s: ElfSymbol, A: bigint, call = false): bigint[] {
    let base = 0n;
    let thing = s;
    if (s.type === STT_SECTION) {
      const inner = this.obj.isCode(s.shndx) ? this.obj.functionAt(s.shndx, 0n) : this.obj.objectAt(s.shndx, 0n);
      if (!inner) throw new Mismatch(`nothing named at the start of ${this.obj.sections[s.shndx].name}`);
      thing = inner;
      base = -inner.value;
    }
    const out: bigint[] = [];
    if (thing.shndx === SHN_UNDEF) {
      const t = this.target.find(thing.name, false, undefined);
      if (t) out.push(t.sym.value);
      for (const slot of this.target.slots(thing.name)) if (slot.plt !== undefined) out.push(slot.plt);
      if (!out.length && !call) {
        // An import reached directly (a copy in the executable appears in its .symtab, found above).
      }
      return out.map((v) => BigInt.asUintN(64, v + base));
    }
    if (thing.shndx === SHN_ABS) return [BigInt.asUintN(64, thing.value)];
    const t = this.target.find(thing.name, thing.bind === 0, this.obj.sourceFile);
    if (t) out.push(t.sym.value + base);
    if (t && thing.bind !== 0) for (const slot of this.target.slots(thing.name)) if (slot.plt !== undefined) out.push(slot.plt + base);
    void A;
    return out.map((v) => BigInt.asUintN(64, v));
  }

  /** Anonymous data: the same string, the same constant, an equivalent table. */
  private content(s: ElfSymbol, A: bigint, X: bigint): void {
    const sec = this.obj.sections[s.shndx];
    const flags = Number(sec.flags);
    const data = this.obj.data(s.shndx);
    if (flags & SHF_MERGE) {
      // The linker merged the section with others: only the piece referred to exists.
      // A label (.LC0) is the piece itself; for the section symbol the piece starts at A
      // plus the distance from the field to the end of the instruction (4 for a plain
      // rip-relative operand).
      const at = s.type === STT_SECTION ? Number(A + 4n) : Number(s.value);
      const where = s.type === STT_SECTION ? X + A + 4n : X;
      if (at < 0 || at > data.length) throw new Mismatch(`offset ${at} is outside ${sec.name}`);
      let len: number;
      if (flags & SHF_STRINGS) {
        const end = data.indexOf(0, at);
        len = (end < 0 ? data.length : end + 1) - at;
      } else {
        len = Math.max(1, Number(sec.entsize));
      }
      const theirs = this.target.bytesAt(where, len);
      const mine = data.subarray(at, at + len);
      if (!theirs || !Buffer.from(theirs).equals(Buffer.from(mine))) {
        throw new Mismatch(`${flags & SHF_STRINGS ? `the string "${printable(mine)}"` : `the ${len}-byte constant`} of ${sec.name} is not at ${hexa(where)} in the target`);
      }
      return;
    }
    // A section kept whole (a jump table, anonymous constants): X is where the symbol is;
    // the section starts s.value before. Its bytes must be the same, and its own
    // relocations (a table's entries) refer to the same things.
    const start = X - s.value;
    const key = `${s.shndx}@${start}`;
    if (this.proven.has(key)) return;
    this.proven.add(key);
    const n = data.length;
    const theirs = this.target.bytesAt(start, n);
    if (!theirs) throw new Mismatch(`${sec.name} (${n} bytes) is not at ${hexa(start)} in the target`);
    const free = new Uint8Array(n);
    for (const r of this.obj.relocs(s.shndx)) {
      const off = Number(r.offset);
      try {
        this.relocation(r, data, theirs, off, start + r.offset, free);
      } catch (e) {
        if (e instanceof Mismatch) throw new Mismatch(`${sec.name}+0x${off.toString(16)}: ${relocName(r.type)} to ${this.describe(r)}: ${e.message}`);
        throw e;
      }
    }
    for (let i = 0; i < n; i++) {
      if (!free[i] && data[i] !== theirs[i]) throw new Mismatch(`${sec.name} differs at +0x${i.toString(16)} (at ${hexa(start)} in the target)`);
    }
  }
}

function printable(b: Uint8Array): string {
  const s = Buffer.from(b).toString("latin1").replace(/\0$/, "");
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
