// Where a PC-relative reference into a merged string section points: S + A + tail, the
// tail being the bytes from the field to the end of the instruction. Hand-written
// assembly pairs put an immediate after the displacement, so A is not -4; the string at
// the true position decides, not its neighbour's.
import { afterAll, describe, expect, it } from "vitest";
import { Scratch } from "./helpers/gcc.js";
import { byStatus, diffSources } from "./helpers/diff.js";

const scratch: Scratch[] = [];
afterAll(() => scratch.forEach((s) => s.remove()));

/** An object with function f (the instruction given) and two strings .LC0, .LC1 in one merged section. */
function asm(insn: string, lc0: string, lc1: string, extra = ""): string {
  return `\t.section .rodata.str1.1,"aMS",@progbits,1\n.LC0:\n\t.string "${lc0}"\n.LC1:\n\t.string "${lc1}"\n` +
    `\t.section .text.f,"ax",@progbits\n\t.globl f\n\t.type f, @function\nf:\n\t${insn}\n\tret\n${extra}\t.size f, .-f\n` +
    `\t.section .text.g,"ax",@progbits\n\t.globl g\n\t.type g, @function\ng:\n\tret\n\t.size g, .-g\n`;
}

function diff(insn: string, a: [string, string], b: [string, string], extra = "") {
  const s = new Scratch();
  scratch.push(s);
  return byStatus(diffSources(s, asm(insn, ...a, extra), asm(insn, ...b, extra), { name: "fix.s", flags: [] }));
}

describe("object diff: the position a PC-relative reference points to", () => {
  // 62 f3 fd 48 1b 05 <disp32> 01: the byte before the ModRM reads as `sbb` (no
  // immediate, tail 4) when read backwards; decoded from the function's start it is
  // EVEX vextractf64x4 with an imm8 (tail 5): the reference is to .LC1 itself.
  const evex = "vextractf64x4 $1, %zmm0, .LC1(%rip)";
  it("EVEX with an immediate: the string at the decoded position changed", () => {
    expect(diff(evex, ["AB", "CD"], ["AB", "CE"])).toEqual({ changed: ["f"], unchanged: ["g"] });
  });
  it("EVEX with an immediate: only the neighbouring string changed", () => {
    expect(diff(evex, ["AB", "CD"], ["XY", "CD"])).toEqual({ unchanged: ["f", "g"] });
  });

  const cmpb = "cmpb $0x41, .LC1(%rip)"; // 80 3d <disp32> 41: tail 5
  it("an imm8 after the displacement", () => {
    expect(diff(cmpb, ["AB", "CD"], ["AB", "CE"])).toEqual({ changed: ["f"], unchanged: ["g"] });
    expect(diff(cmpb, ["AB", "CD"], ["XY", "CD"])).toEqual({ unchanged: ["f", "g"] });
  });

  // Bytes after the ret that do not decode (0x06 is invalid in 64-bit mode): the linear
  // decode fails, the tail is read backwards from the lea (8d 05: no immediate, tail 4).
  const lea = "leaq .LC1(%rip), %rax";
  it("code that does not decode: read backwards", () => {
    expect(diff(lea, ["AB", "CD"], ["AB", "CE"], "\t.byte 0x06\n")).toEqual({ changed: ["f"], unchanged: ["g"] });
    expect(diff(lea, ["AB", "CD"], ["XY", "CD"], "\t.byte 0x06\n")).toEqual({ unchanged: ["f", "g"] });
  });

  // Undecodable and ambiguous backwards (66 0f 3a 0b: roundsd has an imm8, while the byte
  // before the ModRM also reads as a one-byte `or`): every tail 4..8 is compared, so a
  // change in either neighbouring position counts (conservative).
  const round = "roundsd $4, .LC1(%rip), %xmm0";
  it("ambiguous backwards and undecodable: every possible position must agree", () => {
    expect(diff(round, ["AB", "CD"], ["AB", "CE"], "\t.byte 0x06\n")).toEqual({ changed: ["f"], unchanged: ["g"] });
    expect(diff(round, ["AB", "CD"], ["AB", "CD"], "\t.byte 0x06\n")).toEqual({ unchanged: ["f", "g"] });
  });
});

describe("object diff: anonymous constants in the unsuffixed .rodata", () => {
  // gcc -fdata-sections still puts some anonymous constants in .rodata (nginx's
  // ngx_http_script.o has a 2-byte one, referenced as `.rodata - 4`): accepted, and
  // compared as one block with the reference's offset.
  const src = (bytes: string, off: number) => `\t.section .rodata\n\t.byte ${bytes}\n` +
    `\t.section .text.f,"ax",@progbits\n\t.globl f\n\t.type f, @function\nf:\n\tleaq .rodata+${off}(%rip), %rax\n\tret\n\t.size f, .-f\n`;
  function diff(a: string, b: string) {
    const s = new Scratch();
    scratch.push(s);
    return byStatus(diffSources(s, a, b, { name: "fix.s", flags: [] }));
  }
  it("the same block and offset: unchanged; another byte of the block or another offset: changed", () => {
    expect(diff(src("1, 2, 3, 4", 2), src("1, 2, 3, 4", 2))).toEqual({ unchanged: ["f"] });
    expect(diff(src("1, 2, 3, 4", 2), src("1, 2, 3, 5", 2))).toEqual({ changed: ["f"] });
    expect(diff(src("1, 2, 3, 4", 2), src("1, 2, 3, 4", 1))).toEqual({ changed: ["f"] });
  });
});
