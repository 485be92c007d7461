// The x86 writer against golden bytes, one disassembly comment per line, and the
// comments against objdump: each line is disassembled at the pc it will run at.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeCore } from "../src/node/core-file.js";
import type { Core } from "../src/core/instance.js";
import { WriteOp, x86JmpSize, x86Write, X86Err } from "../src/core/x86.js";

const P = 0x401000n;
const FAR = 0x7f0000001000n;

// [bytes, what objdump prints for them at their pc] per line; ".quad" lines are data.
type Line = [string, string];
interface Golden {
  name: string;
  op: WriteOp;
  pc: bigint;
  arg: bigint;
  lines: Line[];
}

const GOLDEN: Golden[] = [
  { name: "jmp: rel8 forward", op: WriteOp.Jmp, pc: P, arg: P + 0x10n, lines: [["eb 0e", "jmp 0x401010"]] },
  { name: "jmp: rel8 at its farthest back", op: WriteOp.Jmp, pc: P, arg: P + 2n - 128n, lines: [["eb 80", "jmp 0x400f82"]] },
  { name: "jmp: rel8 at its farthest forward", op: WriteOp.Jmp, pc: P, arg: P + 2n + 127n, lines: [["eb 7f", "jmp 0x401081"]] },
  { name: "jmp: rel32 just past rel8", op: WriteOp.Jmp, pc: P, arg: P + 2n + 128n, lines: [["e9 7d 00 00 00", "jmp 0x401082"]] },
  { name: "jmp: rel32", op: WriteOp.Jmp, pc: P, arg: P + 0x1000n, lines: [["e9 fb 0f 00 00", "jmp 0x402000"]] },
  { name: "jmp: rel32 backwards", op: WriteOp.JmpRel32, pc: P, arg: P - 0x100000n, lines: [["e9 fb ff ef ff", "jmp 0x301000"]] },
  {
    name: "jmp: rel32 at its farthest",
    op: WriteOp.Jmp,
    pc: 0x7f0000000000n,
    arg: 0x7f0000000005n + 0x7fffffffn,
    lines: [["e9 ff ff ff 7f", "jmp 0x7f0080000004"]],
  },
  {
    name: "jmp: absolute beyond rel32",
    op: WriteOp.Jmp,
    pc: P,
    arg: FAR,
    lines: [
      ["ff 25 00 00 00 00", "jmp *0x0(%rip) # 0x401006"],
      ["00 10 00 00 00 7f 00 00", ".quad 0x7f0000001000"],
    ],
  },
  {
    name: "jmp: absolute, asked for",
    op: WriteOp.JmpAbs,
    pc: P,
    arg: P + 0x10n,
    lines: [
      ["ff 25 00 00 00 00", "jmp *0x0(%rip) # 0x401006"],
      ["10 10 40 00 00 00 00 00", ".quad 0x401010"],
    ],
  },
  { name: "jmp through a GOT slot", op: WriteOp.JmpRip, pc: P, arg: P + 0x3018n, lines: [["ff 25 12 30 00 00", "jmp *0x3012(%rip) # 0x404018"]] },
  { name: "call: rel32", op: WriteOp.Call, pc: P, arg: P + 0x20n, lines: [["e8 1b 00 00 00", "call 0x401020"]] },
  { name: "call: rel32 backwards", op: WriteOp.CallRel32, pc: P, arg: P - 0x20n, lines: [["e8 db ff ff ff", "call 0x400fe0"]] },
  {
    name: "call: absolute beyond rel32",
    op: WriteOp.Call,
    pc: P,
    arg: 0x7fff12345678n,
    lines: [
      ["ff 15 02 00 00 00", "call *0x2(%rip) # 0x401008"],
      ["eb 08", "jmp 0x401010"],
      ["78 56 34 12 ff 7f 00 00", ".quad 0x7fff12345678"],
    ],
  },
  { name: "call through a GOT slot", op: WriteOp.CallRip, pc: P, arg: P - 0x1000n, lines: [["ff 15 fa ef ff ff", "call *-0x1006(%rip) # 0x400000"]] },
  { name: "endbr64", op: WriteOp.Endbr64, pc: P, arg: 0n, lines: [["f3 0f 1e fa", "endbr64"]] },
  { name: "nop 1", op: WriteOp.Nops, pc: P, arg: 1n, lines: [["90", "nop"]] },
  { name: "nop 2", op: WriteOp.Nops, pc: P, arg: 2n, lines: [["66 90", "xchg %ax,%ax"]] },
  { name: "nop 3", op: WriteOp.Nops, pc: P, arg: 3n, lines: [["0f 1f 00", "nopl (%rax)"]] },
  { name: "nop 4", op: WriteOp.Nops, pc: P, arg: 4n, lines: [["0f 1f 40 00", "nopl 0x0(%rax)"]] },
  { name: "nop 5", op: WriteOp.Nops, pc: P, arg: 5n, lines: [["0f 1f 44 00 00", "nopl 0x0(%rax,%rax,1)"]] },
  { name: "nop 6", op: WriteOp.Nops, pc: P, arg: 6n, lines: [["66 0f 1f 44 00 00", "nopw 0x0(%rax,%rax,1)"]] },
  { name: "nop 7", op: WriteOp.Nops, pc: P, arg: 7n, lines: [["0f 1f 80 00 00 00 00", "nopl 0x0(%rax)"]] },
  { name: "nop 8", op: WriteOp.Nops, pc: P, arg: 8n, lines: [["0f 1f 84 00 00 00 00 00", "nopl 0x0(%rax,%rax,1)"]] },
  { name: "nop 9", op: WriteOp.Nops, pc: P, arg: 9n, lines: [["66 0f 1f 84 00 00 00 00 00", "nopw 0x0(%rax,%rax,1)"]] },
  {
    name: "nop 12: 9 + 3",
    op: WriteOp.Nops,
    pc: P,
    arg: 12n,
    lines: [
      ["66 0f 1f 84 00 00 00 00 00", "nopw 0x0(%rax,%rax,1)"],
      ["0f 1f 00", "nopl (%rax)"],
    ],
  },
  { name: "int3 x3", op: WriteOp.Int3, pc: P, arg: 3n, lines: [["cc", "int3"], ["cc", "int3"], ["cc", "int3"]] },
  {
    name: "jump stub (relocation engine)",
    op: WriteOp.JumpStub,
    pc: P,
    arg: 0x123456789an,
    lines: [
      ["ff 25 00 00 00 00", "jmp *0x0(%rip) # 0x401006"],
      ["9a 78 56 34 12 00 00 00", ".quad 0x123456789a"],
      ["cc", "int3"],
      ["cc", "int3"],
    ],
  },
  {
    name: "PLT stub",
    op: WriteOp.PltStub,
    pc: P,
    arg: P + 0x3018n,
    lines: [
      ["f3 0f 1e fa", "endbr64"],
      ["ff 25 0e 30 00 00", "jmp *0x300e(%rip) # 0x404018"],
      ["66 0f 1f 44 00 00", "nopw 0x0(%rax,%rax,1)"],
    ],
  },
];

let core: Core;
let dir: string;
beforeAll(() => {
  core = nodeCore();
  dir = mkdtempSync(join(tmpdir(), "patchc-x86-writer-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
const bytesOf = (s: string) => Uint8Array.from(s.split(" ").map((x) => parseInt(x, 16)));

/** objdump's disassembly of one instruction's bytes at `pc`, spaces collapsed. */
function objdumpAt(bytes: Uint8Array, pc: bigint): string[] {
  const f = join(dir, "insn.bin");
  writeFileSync(f, bytes);
  const out = execFileSync("objdump", ["-D", "-b", "binary", "-m", "i386:x86-64", "-w", `--adjust-vma=0x${pc.toString(16)}`, f]).toString();
  return out
    .split("\n")
    .filter((l) => /^\s*[0-9a-f]+:\t/.test(l))
    .map((l) => l.split("\t").slice(2).join(" ").replace(/\s+/g, " ").trim());
}

describe("x86 writer", () => {
  for (const g of GOLDEN) {
    it(`${g.name}: golden bytes, and objdump reads them as commented`, () => {
      const out = x86Write(core, g.op, g.pc, g.arg);
      expect(hex(out)).toBe(g.lines.map((l) => l[0]).join(" "));
      let off = 0n;
      for (const [bytes, text] of g.lines) {
        const b = bytesOf(bytes);
        if (text.startsWith(".quad ")) {
          const v = new DataView(b.buffer).getBigUint64(0, true);
          expect(`.quad 0x${v.toString(16)}`).toBe(text);
        } else {
          expect(objdumpAt(b, g.pc + off)).toEqual([text]);
        }
        off += BigInt(b.length);
      }
    });
  }

  it("chooses the shortest jump that reaches, and says when none fits", () => {
    expect(x86JmpSize(core, P, P + 0x81n)).toBe(2);
    expect(x86JmpSize(core, P, P + 0x82n)).toBe(5);
    expect(x86JmpSize(core, P, P - 0x7en)).toBe(2);
    expect(x86JmpSize(core, P, P - 0x7fn)).toBe(5);
    expect(x86JmpSize(core, P, P + 5n + 0x7fffffffn)).toBe(5);
    expect(x86JmpSize(core, P, P + 5n + 0x80000000n)).toBe(14);
    expect(x86JmpSize(core, 0x7f0000000000n, 0x1000n)).toBe(14);
    // none fits: the buffer is shorter than the shortest jump that reaches
    expect(() => x86Write(core, WriteOp.Jmp, P, FAR, 13)).toThrow(expect.objectContaining({ code: X86Err.NoRoom }));
    expect(() => x86Write(core, WriteOp.Jmp, P, P + 0x1000n, 4)).toThrow(expect.objectContaining({ code: X86Err.NoRoom }));
    expect(hex(x86Write(core, WriteOp.Jmp, P, P + 0x1000n, 5))).toBe("e9 fb 0f 00 00");
    // an encoding asked for that cannot reach
    expect(() => x86Write(core, WriteOp.JmpRel8, P, P + 0x200n)).toThrow(expect.objectContaining({ code: X86Err.OutOfRange }));
    expect(() => x86Write(core, WriteOp.JmpRel32, P, FAR)).toThrow(/beyond the reach/);
    expect(() => x86Write(core, WriteOp.CallRel32, P, FAR)).toThrow(expect.objectContaining({ code: X86Err.OutOfRange }));
    expect(() => x86Write(core, WriteOp.JmpRip, P, FAR)).toThrow(expect.objectContaining({ code: X86Err.OutOfRange }));
    expect(() => x86Write(core, WriteOp.PltStub, P, FAR)).toThrow(expect.objectContaining({ code: X86Err.OutOfRange }));
    expect(() => x86Write(core, 99 as WriteOp, P, 0n)).toThrow(/unknown op/);
  });

  it("writes nothing past its room", () => {
    const e = core.exports as unknown as { x86_write(op: number, buf: number, cap: number, pc: bigint, arg: bigint): number } & typeof core.exports;
    const buf = e.alloc(32);
    try {
      core.bytes.fill(0xa5, buf, buf + 32);
      for (const [op, arg] of [[WriteOp.JumpStub, FAR], [WriteOp.CallAbs, FAR], [WriteOp.Nops, 20n], [WriteOp.PltStub, P]] as const) {
        expect(e.x86_write(op, buf, 3, P, arg)).toBe(0);
        expect([...core.bytes.subarray(buf, buf + 32)].every((b) => b === 0xa5)).toBe(true);
      }
    } finally {
      e.free(buf);
    }
  });
});
