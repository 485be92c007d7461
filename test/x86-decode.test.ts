// The decoder's classification through the TypeScript wrapper: kinds and flags of
// representative instructions (objdump checks lengths and targets in x86-oracle and
// x86-opcodes; what an instruction *is* for the entry check is checked here), and
// decodeRange's stop and sweep modes.
import { beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import { InsnFlag, InsnKind, X86, X86Err } from "../src/core/x86.js";

let x86: X86;
beforeAll(() => {
  x86 = new X86(nodeCore());
});

const bytes = (s: string) => Uint8Array.from(s.replace(/ /g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const PC = 0x401000n;

describe("x86 decoder: classification", () => {
  const cases: Array<[string, string, InsnKind, number, bigint?]> = [
    // bytes, what, kind, length, target
    ["f3 0f 1e fa", "endbr64", InsnKind.Endbr64, 4],
    ["f3 0f 1e fb", "endbr32", InsnKind.Other, 4],
    ["90", "nop", InsnKind.Nop, 1],
    ["66 90", "xchg %ax,%ax (nop)", InsnKind.Nop, 2],
    ["41 90", "xchg %eax,%r8d: not a nop", InsnKind.Other, 2],
    ["f3 90", "pause: not a nop", InsnKind.Other, 2],
    ["0f 1f 44 00 00", "nopl 0(%rax,%rax,1)", InsnKind.Nop, 5],
    ["66 2e 0f 1f 84 00 00 00 00 00", "cs nopw 0(%rax,%rax,1)", InsnKind.Nop, 10],
    ["0f 1f 08", "0f 1f /1: reserved nop, not proven padding", InsnKind.Other, 3],
    ["cc", "int3", InsnKind.Int3, 1],
    ["cd 80", "int $0x80", InsnKind.Int, 2],
    ["0f 0b", "ud2", InsnKind.Ud, 2],
    ["0f b9 c0", "ud1", InsnKind.Ud, 3],
    ["0f 05", "syscall", InsnKind.Syscall, 2],
    ["f4", "hlt", InsnKind.Hlt, 1],
    ["c3", "ret", InsnKind.Ret, 1],
    ["f3 c3", "repz ret", InsnKind.Ret, 2],
    ["c2 08 00", "ret $8", InsnKind.Ret, 3],
    ["48 cf", "iretq", InsnKind.Ret, 2],
    ["eb fe", "jmp .", InsnKind.Jmp, 2, PC],
    ["e9 fb 0f 00 00", "jmp rel32", InsnKind.Jmp, 5, PC + 0x1000n],
    ["74 10", "je", InsnKind.Jcc, 2, PC + 0x12n],
    ["0f 85 00 01 00 00", "jne rel32", InsnKind.Jcc, 6, PC + 0x106n],
    ["e3 02", "jrcxz", InsnKind.Jcc, 2, PC + 4n],
    ["e2 fe", "loop", InsnKind.Jcc, 2, PC],
    ["c7 f8 10 00 00 00", "xbegin", InsnKind.Jcc, 6, PC + 0x16n],
    ["e8 00 00 00 00", "call next", InsnKind.Call, 5, PC + 5n],
    ["f2 e8 00 00 00 00", "bnd call", InsnKind.Call, 6, PC + 6n],
    ["ff e0", "jmp *%rax", InsnKind.JmpInd, 2],
    ["3e ff e0", "notrack jmp *%rax", InsnKind.JmpInd, 3],
    ["ff d0", "call *%rax", InsnKind.CallInd, 2],
    ["ff 25 00 10 00 00", "jmp *0x1000(%rip)", InsnKind.JmpInd, 6, PC + 0x1006n],
    ["ff 15 00 10 00 00", "call *0x1000(%rip)", InsnKind.CallInd, 6, PC + 0x1006n],
    ["ff 2c 24", "ljmp *(%rsp)", InsnKind.JmpInd, 3],
  ];
  for (const [hex, what, kind, len, target] of cases) {
    it(`${what}`, () => {
      const d = x86.decode(bytes(hex + " 00 00 00 00"), 0, PC);
      expect(d.length).toBe(len);
      expect(InsnKind[d.kind]).toBe(InsnKind[kind]);
      if (target !== undefined) expect(d.target.toString(16)).toBe(target.toString(16));
    });
  }

  it("flags: RIP-relative (EIP-relative with 67), prefixes, REX.W, VEX", () => {
    const lea = x86.decode(bytes("48 8d 05 f9 ff ff ff"), 0, PC);
    expect(lea.flags & InsnFlag.RipRel).toBeTruthy();
    expect(lea.flags & InsnFlag.RexW).toBeTruthy();
    expect(lea.target).toBe(PC);
    expect(lea.relOffset).toBe(3);
    expect(lea.relSize).toBe(4);
    const eip = x86.decode(bytes("67 8b 05 00 00 00 80"), 0, 0xffffffff00000000n);
    expect(eip.flags & InsnFlag.AddrSize).toBeTruthy();
    expect(eip.target).toBe(0x80000007n); // (next + disp) truncated to 32 bits
    const lock = x86.decode(bytes("f0 48 0f b1 0f"), 0, PC);
    expect(lock.flags & InsnFlag.Lock).toBeTruthy();
    const rep = x86.decode(bytes("f3 48 ab"), 0, PC);
    expect(rep.flags & InsnFlag.Rep).toBeTruthy();
    const vex = x86.decode(bytes("c5 f8 77"), 0, PC);
    expect(vex.flags & InsnFlag.Vex).toBeTruthy();
    expect(vex.length).toBe(3);
    const jmp = x86.decode(bytes("e9 00 00 00 00"), 0, PC);
    expect([jmp.relOffset, jmp.relSize]).toEqual([1, 4]);
  });

  it("errors: truncated, unknown, ambiguous 0x66 branches, longer than 15 bytes", () => {
    const code = (hex: string) => {
      try {
        x86.decode(bytes(hex));
        return 0;
      } catch (e) {
        return (e as { code: number }).code;
      }
    };
    expect(code("e8 00 00")).toBe(X86Err.Truncated);
    expect(code("0f")).toBe(X86Err.Truncated);
    expect(code("06 00")).toBe(X86Err.UnknownOpcode); // push %es: invalid in 64-bit mode
    expect(code("0f 0a 00")).toBe(X86Err.UnknownOpcode);
    expect(code("ff f8 00")).toBe(X86Err.UnknownOpcode); // FF /7
    expect(code("8d c0 00")).toBe(X86Err.UnknownOpcode); // lea with a register operand
    expect(code("66 e8 00 00 00 00")).toBe(X86Err.AmbiguousEncoding);
    expect(code("66 0f 84 00 00 00 00")).toBe(X86Err.AmbiguousEncoding);
    expect(code("66 eb 00")).toBe(X86Err.AmbiguousEncoding);
    expect(code("66 48 e8 00 00 00 00")).toBe(0); // REX.W overrides 0x66 on AMD too
    expect(code("66".repeat(14) + "90")).toBe(0); // 15 bytes
    expect(code("66".repeat(15) + "90")).toBe(X86Err.TooLong);
  });
});

describe("x86 decoder: decodeRange", () => {
  const code = bytes("55 48 89 e5 06 c3 90");
  it("stops at the first error, whose record is the last", () => {
    const r = x86.decodeRange(code, PC);
    expect(r.map((i) => [i.offset, i.length, i.status])).toEqual([[0, 1, 0], [1, 3, 0], [4, 0, X86Err.UnknownOpcode]]);
    expect(r[1].pc).toBe(PC + 1n);
  });
  it("sweeps on a byte past errors", () => {
    const r = x86.decodeRange(code, PC, 0, code.length, true);
    expect(r.map((i) => [i.offset, i.length, i.status])).toEqual([[0, 1, 0], [1, 3, 0], [4, 0, X86Err.UnknownOpcode], [5, 1, 0], [6, 1, 0]]);
    expect([r[3].kind, r[4].kind]).toEqual([InsnKind.Ret, InsnKind.Nop]);
  });
  it("goes on across its record buffer (more than 4096 instructions)", () => {
    const many = new Uint8Array(10000).fill(0x90);
    const r = x86.decodeRange(many, PC);
    expect(r.length).toBe(10000);
    expect(r.every((i, k) => i.offset === k && i.kind === InsnKind.Nop)).toBe(true);
  });
  it("an instruction may run past `to` up to the end of the input", () => {
    const r = x86.decodeRange(bytes("90 e8 00 00 00 00"), PC, 0, 2);
    expect(r.map((i) => i.length)).toEqual([1, 5]);
  });
});
