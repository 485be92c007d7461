// diff_units (assembly/diff/producer.ts) through compileUnits(): the compile units of an
// ELF file's DWARF, compared with readelf --debug-dump=info as the oracle, on objects
// (relocated string offsets), linked executables, DWARF 4 and 5, a split-DWARF .dwo
// (strx forms through .debug_str_offsets), and on malformed input (named failure, no trap).
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { compileUnits, type CompileUnit } from "../src/core/diff.js";
import { ElfReader } from "../src/core/elf.js";
import { CoreError } from "../src/core/instance.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch, run } from "./helpers/gcc.js";

const core = nodeCore();
const scratch = new Scratch();
afterAll(() => scratch.remove());

const SRC = "int twice(int x) { return 2 * x; }\nint main(int c, char **v) { (void)v; return twice(c); }\n";
const OTHER = "int thrice(int x) { return 3 * x; }\n";

function units(file: string): CompileUnit[] {
  const e = new ElfReader(core, fs.readFileSync(file), file);
  try {
    return compileUnits(core, e);
  } finally {
    e.close();
  }
}

/** readelf's view: per unit, the name, producer and comp_dir of its first DIE. */
function oracle(file: string): Array<{ offset: number; name?: string; producer?: string; compDir?: string }> {
  const out: Array<{ offset: number; name?: string; producer?: string; compDir?: string }> = [];
  let cur: (typeof out)[number] | undefined;
  let first = false;
  for (const line of run("readelf", ["--debug-dump=info", "-W", file]).split("\n")) {
    const u = /Compilation Unit @ offset (0x[0-9a-f]+|\d+):/.exec(line);
    if (u) {
      cur = { offset: Number(u[1]) };
      out.push(cur);
      first = true;
      continue;
    }
    if (/^\s*<1>/.test(line)) first = false;
    const a = /^\s*<[0-9a-f]+>\s+(DW_AT_name|DW_AT_producer|DW_AT_comp_dir)\s*: (.*)$/.exec(line);
    if (!a || !cur || !first) continue;
    // "(strp) (offset: 0x0): text", "(string) text", older: "(indirect string, offset: 0x0): text"
    const value = a[2].replace(/^\((indirect|indexed)[^)]*\): /, "").replace(/^\([a-z0-9_]+\) (\(offset: (0x[0-9a-f]+|\d+)\): )?/, "").replace(/\s+$/, "");
    const key = a[1] === "DW_AT_name" ? "name" : a[1] === "DW_AT_producer" ? "producer" : "compDir";
    cur[key] = value;
  }
  return out;
}

const strip = (us: CompileUnit[]) => us.map((u) => ({ offset: u.offset, ...(u.name !== undefined ? { name: u.name } : {}), ...(u.producer !== undefined ? { producer: u.producer.trimEnd() } : {}), ...(u.compDir !== undefined ? { compDir: u.compDir } : {}) }));

describe("diff_units: the compile units of an ELF file", () => {
  scratch.write("a.c", SRC);
  scratch.write("b.c", OTHER);
  const gcc = (args: string[]) => execFileSync("gcc", args, { cwd: scratch.dir });

  for (const dwarf of ["-gdwarf-4", "-gdwarf-5"]) {
    it(`${dwarf}: an object (relocated strp/line_strp) and the executable linked from two, as readelf says`, () => {
      gcc(["-O2", dwarf, "-ffunction-sections", "-c", "a.c", "-o", "a.o"]);
      gcc(["-O1", dwarf, "-c", "b.c", "-o", "b.o"]);
      gcc(["a.o", "b.o", "-o", "ab"]);
      const obj = units(scratch.path("a.o"));
      expect(obj).toHaveLength(1);
      expect(obj[0].version).toBe(dwarf === "-gdwarf-4" ? 4 : 5);
      expect(obj[0].name).toBe("a.c");
      expect(obj[0].producer).toMatch(/^GNU C\S* \d+\.\d+\.\d+ .*-O2.*-ffunction-sections/);
      expect(obj[0].compDir).toBe(scratch.dir);
      expect(strip(obj)).toEqual(oracle(scratch.path("a.o")));
      const exe = units(scratch.path("ab"));
      expect(strip(exe)).toEqual(oracle(scratch.path("ab")));
      const names = exe.map((u) => u.name);
      expect(names).toContain("a.c");
      expect(names).toContain("b.c");
      expect(exe.find((u) => u.name === "b.c")!.producer).toMatch(/ -O1/);
    });
  }

  it("a split-DWARF .dwo: strx forms through .debug_str_offsets.dwo", () => {
    gcc(["-O2", "-gdwarf-5", "-gsplit-dwarf", "-c", "a.c", "-o", "split.o"]);
    expect(run("readelf", ["--debug-dump=info", "-W", scratch.path("split.dwo")])).toMatch(/DW_AT_producer\s*: \(strx\)/);
    // (readelf 2.40 reads these indices without the 8-byte header of .debug_str_offsets.dwo
    // and shows every string shifted by one: the oracle here is what gcc wrote.)
    const dwo = units(scratch.path("split.dwo"));
    expect(dwo).toHaveLength(1);
    expect(dwo[0].unitType).toBe(5); // DW_UT_split_compile
    expect(dwo[0].name).toBe("a.c");
    expect(dwo[0].compDir).toBe(scratch.dir);
    expect(dwo[0].producer).toMatch(/^GNU C\S* \d+\.\d+\.\d+ -mtune=generic -march=x86-64 -gdwarf-5 -gsplit-dwarf -O2/);
    const strings = run("readelf", ["-p", ".debug_str.dwo", scratch.path("split.dwo")]);
    expect(strings).toContain(dwo[0].producer!);
  });

  for (const dwarf of ["-gdwarf-4", "-gdwarf-5"]) {
    it(`${dwarf} -gsplit-dwarf: the skeleton's DW_AT_(GNU_)dwo_name and dwo_id (diff_units_dwo), as readelf says, and its .dwo's id`, () => {
      gcc(["-O2", dwarf, "-gsplit-dwarf", "-c", "a.c", "-o", `sk${dwarf}.o`]);
      const text = run("readelf", ["--debug-dump=info", "-W", scratch.path(`sk${dwarf}.o`)]).split("Contents of the .debug_info.dwo")[0];
      const name = /DW_AT_(?:GNU_)?dwo_name\s*:.*?: (\S+)$/m.exec(text)![1];
      const id = BigInt(/(?:DWO ID|DW_AT_GNU_dwo_id)\s*:\s*(?:\(data8\) )?(0x[0-9a-f]+)/.exec(text)![1]);
      const sk = units(scratch.path(`sk${dwarf}.o`));
      expect(sk).toHaveLength(1);
      expect(sk[0]).toMatchObject({ unitType: dwarf === "-gdwarf-5" ? 4 : 1, compDir: scratch.dir, dwoName: name, dwoId: id });
      expect(sk[0].producer).toBeUndefined();
      const full = units(scratch.path(name));
      expect(full[0].dwoId).toBe(id);
      expect(full[0].dwoName).toBeUndefined();
      expect(units(scratch.path("a.o"))[0]).not.toHaveProperty("dwoId");
    });
  }

  it("2800 mutations of the debug sections and their relocations: no trap, no read outside the input", () => {
    gcc(["-O2", "-gdwarf-5", "-ffunction-sections", "-c", "a.c", "-o", "f5.o"]);
    gcc(["-O2", "-gdwarf-4", "-c", "a.c", "-o", "f4.o"]);
    gcc(["-O2", "-gdwarf-5", "-gsplit-dwarf", "-c", "a.c", "-o", "fs.o"]);
    const e = core.exports as unknown as { memory: WebAssembly.Memory; alloc(n: number): number; free(p: number): void; elf_open(p: number, l: number): number; elf_close(h: number): number; diff_units(h: number, out: number, cap: number): number; diff_units_dwo(h: number, out: number, cap: number): number; core_error_code(): number };
    let seed = 0x9e3779b9;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    let read = 0;
    let ourEnd = 0;
    for (const file of ["f5.o", "f4.o", "fs.dwo", "fs.o"]) {
      const bytes = fs.readFileSync(scratch.path(file));
      const r = new ElfReader(core, bytes, file);
      const secs = r.sections().filter((s) => s.hasData && /^\.(debug_(info|abbrev|str_offsets|str|line_str)|rela\.debug_(info|str_offsets))/.test(s.name));
      r.close();
      expect(secs.length).toBeGreaterThanOrEqual(3);
      for (let i = 0; i < 700; i++) {
        const m = Buffer.from(bytes);
        for (let k = 1 + rand(4); k > 0; k--) {
          const s = secs[rand(secs.length)];
          const at = Number(s.offset) + rand(Number(s.size));
          m[at] = [0, 0xff, 0x80, 0x7f, 1, rand(256)][rand(6)];
        }
        // Place the input so that it ends at the last byte of memory: a read past it traps.
        // (memory grown once; again only when the allocator took the end meanwhile)
        const mem = e.memory;
        if (mem.buffer.byteLength !== ourEnd) {
          mem.grow(Math.ceil(m.length / 65536) + 1);
          ourEnd = mem.buffer.byteLength;
        }
        const ptr = ourEnd - m.length;
        new Uint8Array(mem.buffer).set(m, ptr);
        const h = e.elf_open(ptr, m.length);
        if (!h) continue;
        const n = e.diff_units(h, 0, 0);
        if (n < 0) expect([740, 741]).toContain(e.core_error_code());
        else if (n > 0) {
          const out = e.alloc(n * 40);
          expect(e.diff_units(h, out, n)).toBe(n);
          const v = new DataView(e.memory.buffer);
          for (let u = 0; u < n; u++) {
            for (const f of [12, 20, 28]) {
              const p = v.getUint32(out + u * 40 + f, true);
              const len = v.getUint32(out + u * 40 + f + 4, true);
              if (p || len) expect(p >= ptr && p + len <= ptr + m.length, `${file} mutation ${i}: a string outside the input`).toBe(true);
            }
          }
          const dwo = e.alloc(n * 24);
          expect(e.diff_units_dwo(h, dwo, n)).toBe(n);
          const w = new DataView(e.memory.buffer);
          for (let u = 0; u < n; u++) {
            const p = w.getUint32(dwo + u * 24, true);
            const len = w.getUint32(dwo + u * 24 + 4, true);
            if (p || len) expect(p >= ptr && p + len <= ptr + m.length, `${file} mutation ${i}: a dwo name outside the input`).toBe(true);
          }
          e.free(dwo);
          e.free(out);
          read++;
        }
        e.elf_close(h);
      }
    }
    expect(read).toBeGreaterThan(300); // most mutations still read: the code paths run
  });

  it("no .debug_info: no units; damaged units fail with a named reason, never a trap", () => {
    gcc(["-O2", "-g0", "-c", "a.c", "-o", "nodebug.o"]);
    expect(units(scratch.path("nodebug.o"))).toEqual([]);
    gcc(["-O2", "-g", "-c", "a.c", "-o", "a.o"]);
    const bytes = fs.readFileSync(scratch.path("a.o"));
    const e = new ElfReader(core, bytes, "a.o");
    const info = e.sections().find((s) => s.name === ".debug_info")!;
    e.close();
    const off = Number(info.offset);
    const damaged = (patch: (b: Buffer) => void) => {
      const b = Buffer.from(bytes);
      patch(b);
      const f = scratch.path("damaged.o");
      fs.writeFileSync(f, b);
      try {
        units(f);
      } catch (x) {
        expect(x).toBeInstanceOf(CoreError);
        return (x as CoreError).message;
      }
      return "read";
    };
    expect(damaged((b) => b.writeUInt32LE(0x7fffffff, off))).toMatch(/^\S+damaged\.o: \.debug_info unit at 0x0: unit length 2147483647 runs past the end of \.debug_info$/);
    expect(damaged((b) => b.writeUInt16LE(9, off + 4))).toMatch(/DWARF version 9 \(2 to 5 are read\)$/);
    // Every truncation of the section and every byte flipped: a result or a named failure.
    for (let i = 0; i < Math.min(Number(info.size), 64); i++) {
      const r = damaged((b) => (b[off + i] ^= 0xff));
      expect(r === "read" || /\.debug_info unit at 0x|\.debug_/.test(r), r).toBe(true);
    }
  });
});
