// The ELF reader against readelf (binutils) on real files: a gcc object, PIE and
// non-PIE executables, libc.so.6, and images read from this process's own memory.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSync, readFileSync, readSync, closeSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader, SymbolTableKind, type ElfSymbol } from "../src/core/elf.js";
import { CoreError } from "../src/core/instance.js";
import { LIBC, Scratch, run } from "./helpers/gcc.js";

const FIXTURE = `
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
__thread int tls_counter;
static int helper(int x) { return x * 3 + tls_counter; }
int table_switch(int x) {
  switch (x) { case 0: return 11; case 1: return helper(2); case 2: return 37; case 3: return 41; case 4: return 5; default: return -1; }
}
const char *greeting = "hello";
int main(int argc, char **argv) {
  char buf[64];
  memcpy(buf, argv[0], strlen(argv[0]) % 60);
  printf("%s %d\\n", greeting, table_switch(argc));
  return 0;
}
`;

let scratch: Scratch;
const core = nodeCore();
const files: Record<string, string> = {};

beforeAll(() => {
  scratch = new Scratch();
  files.obj = scratch.gcc(FIXTURE, "fixture.o", ["-O2", "-c", "-ffunction-sections", "-fdata-sections"]);
  files.pie = scratch.gcc(FIXTURE, "fixture-pie", ["-O2", "-pie", "-fPIE", "-Wl,--build-id"]);
  files.nopie = scratch.gcc(FIXTURE, "fixture-nopie", ["-O2", "-no-pie", "-fno-PIE", "-Wl,--build-id"]);
  files.libc = LIBC;
});
afterAll(() => scratch?.remove());

function open(path: string): ElfReader {
  return new ElfReader(core, readFileSync(path), path);
}

/** readelf -SW: [Nr] Name Type Address Off Size ... */
function readelfSections(path: string) {
  const out = run("readelf", ["-SW", path]);
  const rows: Array<{ name: string; type: string; addr: bigint; off: bigint; size: bigint }> = [];
  for (const line of out.split("\n")) {
    const m = /^\s*\[\s*(\d+)\]\s+(\S*)\s+(\S+)\s+([0-9a-f]{16})\s+([0-9a-f]{6,})\s+([0-9a-f]{6,})/.exec(line);
    if (m) rows[Number(m[1])] = { name: m[2], type: m[3], addr: BigInt("0x" + m[4]), off: BigInt("0x" + m[5]), size: BigInt("0x" + m[6]) };
  }
  return rows;
}

/** readelf -sW (or --dyn-syms): index -> "value size name[@version]" */
function readelfSymbols(path: string, dyn: boolean): Map<number, string> {
  const out = run("readelf", ["-W", dyn ? "--dyn-syms" : "--syms", path]);
  const rows = new Map<number, string>();
  let section = "";
  for (const line of out.split("\n")) {
    if (line.startsWith("Symbol table")) section = line;
    if (!dyn && !section.includes(".symtab")) continue;
    const m = /^\s*(\d+):\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\S+\s?(.*)$/.exec(line);
    if (m) rows.set(Number(m[1]), `${BigInt("0x" + m[2])} ${BigInt(m[3])} ${m[4].replace(/ \(\d+\)$/, "")}`);
  }
  return rows;
}

/** A symbol as readelf prints it: section symbols by their section's name, versions after @ or @@. */
function ours(s: ElfSymbol, dyn: boolean, sectionNames: string[] = []): string {
  let name = s.type === 3 && s.name === "" ? (sectionNames[s.shndx] ?? "") : s.name;
  if (dyn && s.version && s.version !== s.name) name += (s.hidden || s.versionFile ? "@" : "@@") + s.version;
  return `${s.value} ${s.size} ${name}`;
}

describe("ELF reader against readelf", () => {
  for (const kind of ["obj", "pie", "nopie", "libc"]) {
    it(`reads sections, segments and symbols of ${kind}`, () => {
      const path = files[kind];
      const elf = open(path);
      try {
        const expected = readelfSections(path);
        const secs = elf.sections();
        expect(secs.length).toBe(expected.length);
        for (let i = 1; i < secs.length; i++) {
          const e = expected[i];
          expect({ i, name: secs[i].name.slice(0, e.name.length), addr: secs[i].addr, off: secs[i].offset, size: secs[i].size }).toEqual({ i, name: e.name, addr: e.addr, off: e.off, size: e.size });
        }
        expect(elf.sectionIndex(".text")).toBe(secs.findIndex((s) => s.name === ".text"));
        const symtab = readelfSymbols(path, false);
        if (symtab.size) {
          const syms = elf.symbols(SymbolTableKind.SYMTAB);
          expect(syms.length).toBe(symtab.size);
          const names = secs.map((x) => x.name);
          for (const s of syms) expect(ours(s, false, names)).toBe(symtab.get(s.index));
        }
        const dynsym = readelfSymbols(path, true);
        if (dynsym.size) {
          const syms = elf.symbols(SymbolTableKind.DYNSYM);
          expect(syms.length).toBe(dynsym.size);
          for (const s of syms) expect(ours(s, true)).toBe(dynsym.get(s.index));
        }
        const phdrs = run("readelf", ["-lW", path]).split("\n").filter((l) => /^\s+[A-Z][A-Z_]+\s+0x/.test(l));
        expect(elf.segments().length).toBe(phdrs.length);
      } finally {
        elf.close();
      }
    });
  }

  it("reads relocation tables with the counts readelf shows", () => {
    for (const kind of ["obj", "pie", "libc"]) {
      const path = files[kind];
      const elf = open(path);
      const out = run("readelf", ["-rW", path]);
      // For RELR, readelf counts packed words and then lists the "N offsets" they expand to.
      const counts = [...out.matchAll(/Relocation section '([^']+)' at offset 0x[0-9a-f]+ contains (\d+) entr[^\n]*\n(?:\s+(\d+) offsets)?/g)].map((m) => [m[1], Number(m[3] ?? m[2])]);
      const secs = elf.sections();
      const tables = elf.relaTables();
      expect(tables.map((t) => [secs[t.section].name, t.count])).toEqual(counts);
      // The first relocation of each table decodes like readelf's first line after its header.
      for (const t of tables) {
        const r = elf.relas(t)[0];
        const block = out.split(`Relocation section '${secs[t.section].name}'`)[1].split("\n");
        if (t.kind === "relr") {
          const listed = block.slice(2, 2 + t.count).map((l) => BigInt("0x" + l.trim()));
          expect(elf.relas(t).map((x) => x.offset)).toEqual(listed);
        } else {
          expect(block[2].startsWith(r.offset.toString(16).padStart(16, "0"))).toBe(true);
        }
      }
      elf.close();
    }
  });

  it("finds the GNU build-id, DT_NEEDED, the soname and versions", () => {
    for (const kind of ["pie", "nopie", "libc"]) {
      const elf = open(files[kind]);
      const notes = run("readelf", ["-n", files[kind]]);
      expect(elf.info.buildId).toBe(/Build ID: ([0-9a-f]+)/.exec(notes)![1]);
      const dyn = run("readelf", ["-dW", files[kind]]);
      expect(elf.needed()).toEqual([...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]));
      elf.close();
    }
    const libc = open(LIBC);
    expect(libc.soname()).toBe("libc.so.6");
    const vers = libc.versions();
    expect(vers.some((v) => v.isDef && v.name === "GLIBC_2.14")).toBe(true);
    expect(vers.some((v) => v.isDef && v.isBase && v.name === "libc.so.6")).toBe(true);
    const memcpys = libc.symbols(SymbolTableKind.DYNSYM).filter((s) => s.name === "memcpy");
    expect(memcpys.map((s) => `${s.version}${s.hidden ? " hidden" : ""}`).sort()).toEqual(["GLIBC_2.14", "GLIBC_2.2.5 hidden"]);
    expect(memcpys.find((s) => !s.hidden)!.type).toBe(10); // the default memcpy is an STT_GNU_IFUNC
    libc.close();
    const pie = open(files.pie);
    const req = pie.symbols(SymbolTableKind.DYNSYM).find((s) => s.name === "printf")!;
    expect(req.versionFile).toBe("libc.so.6");
    expect(req.version).toMatch(/^GLIBC_2\./);
    pie.close();
  });

  it("locates .eh_frame and .eh_frame_hdr", () => {
    const elf = open(files.pie);
    const secs = elf.sections();
    const t = elf.unwindTables();
    const eh = secs.find((s) => s.name === ".eh_frame")!;
    const hdr = secs.find((s) => s.name === ".eh_frame_hdr")!;
    expect(t.ehFrame).toEqual({ addr: eh.addr, offset: Number(eh.offset), size: Number(eh.size) });
    expect(t.ehFrameHdr).toEqual({ addr: hdr.addr, offset: Number(hdr.offset), size: Number(hdr.size) });
    elf.close();
  });
});

/** Reads a module's mappings from this process's memory, as an image starting at its first mapping. */
function readImage(match: (line: string) => boolean): { data: Uint8Array; base: bigint } {
  const maps = readFileSync("/proc/self/maps", "utf8").split("\n").filter(match);
  const ranges = maps.map((l) => l.split(" ")[0].split("-").map((x) => parseInt(x, 16)));
  const base = ranges[0][0];
  const end = ranges[ranges.length - 1][1];
  const data = new Uint8Array(end - base);
  const fd = openSync("/proc/self/mem", "r");
  try {
    for (const [s, e] of ranges) readSync(fd, data, s - base, e - s, s);
  } finally {
    closeSync(fd);
  }
  return { data, base: BigInt(base) };
}

describe("ELF images read from memory (program headers only)", () => {
  it("reads the vDSO's dynamic symbols, versions and unwind tables", () => {
    const { data, base } = readImage((l) => l.endsWith("[vdso]"));
    const elf = new ElfReader(core, data, "vdso", base);
    expect(elf.info.isImage).toBe(true);
    expect(elf.info.sectionCount).toBe(0);
    const syms = elf.symbols(SymbolTableKind.DYNSYM);
    const gettime = syms.find((s) => s.name === "__vdso_clock_gettime");
    expect(gettime?.version).toBe("LINUX_2.6");
    const t = elf.unwindTables();
    expect(t.ehFrameHdr).toBeDefined();
    expect(t.ehFrame!.addr).toBeGreaterThan(base);
    expect(elf.info.buildId).toMatch(/^[0-9a-f]{40}$/);
    elf.close();
  });

  it("reads libc as mapped in this process like the file", () => {
    const { data, base } = readImage((l) => l.endsWith("/libc.so.6"));
    const image = new ElfReader(core, data, "libc image", base);
    const file = open(LIBC);
    const a = image.symbols(SymbolTableKind.DYNSYM).map((s) => ours(s, true));
    const b = file.symbols(SymbolTableKind.DYNSYM).map((s) => ours(s, true));
    expect(a).toEqual(b);
    expect(image.info.buildId).toBe(file.info.buildId);
    const kinds = image.relaTables().map((t) => [t.kind, t.count]);
    const fileTables = file.relaTables();
    const secs = file.sections();
    const fileKind: Record<string, string> = { ".rela.plt": "plt", ".rela.dyn": "dyn", ".relr.dyn": "relr" };
    expect(kinds.sort()).toEqual(fileTables.map((t) => [fileKind[secs[t.section].name], t.count]).sort());
    // The expanded RELR relocations are the same from either view.
    const relr = (e: ElfReader) => e.relas(e.relaTables().find((t) => t.kind === "relr")!).map((r) => r.offset);
    expect(relr(image)).toEqual(relr(file));
    const ft = file.unwindTables();
    const it = image.unwindTables();
    expect(it.ehFrameHdr!.addr - base).toBe(ft.ehFrameHdr!.addr);
    expect(it.ehFrame!.addr - base).toBe(ft.ehFrame!.addr);
    image.close();
    file.close();
  });
});

describe("ELF reader errors", () => {
  it("names the record and the reason", () => {
    const obj = readFileSync(files.obj);
    const err = (data: Uint8Array): string => {
      try {
        new ElfReader(core, data, "x.o").close();
        return "no error";
      } catch (e) {
        expect(e).toBeInstanceOf(CoreError);
        return (e as Error).message;
      }
    };
    expect(err(obj.subarray(0, 10))).toMatch(/^x\.o: ELF header: input of 10 bytes is shorter/);
    expect(err(new Uint8Array(64))).toMatch(/not an ELF file/);
    expect(err(obj.subarray(0, obj.length - 100))).toMatch(/section headers: .* run past the end/);
    const bad = new Uint8Array(obj);
    new DataView(bad.buffer).setUint16(18, 3, true);
    expect(err(bad)).toMatch(/machine 3 is not x86-64/);
  });
});
