// The number of dynamic symbols of a module read from a live process's memory (image
// mode: program headers and the dynamic segment only, no section headers), against
// readelf --dyn-syms on the file (which uses .dynsym's section header).
//
// The case that used to fail: a non-PIE executable exporting nothing. GNU ld gives its
// .gnu.hash symoffset 1 and only empty buckets, so the GNU hash counts 1 symbol while
// .dynsym holds every import after it; `patchc apply` then refused the target ("DT_RELA:
// relocation 0 refers to symbol 1 of a table with 1 symbols"). See the notes above
// dynsymCount in assembly/elf/file.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader, SymbolTableKind, type ElfSymbol } from "../src/core/elf.js";
import { CoreError } from "../src/core/instance.js";
import { parseMaps } from "../src/apply/maps.js";
import { ProcMemory } from "../src/apply/proc-memory.js";
import { listModules, readModuleImage } from "../src/apply/modules.js";
import { Scratch, run } from "./helpers/gcc.js";
import { imageOf } from "./helpers/elf-image.js";

const core = nodeCore();

// Imports only (puts, malloc, pause): no stdout, whose copy relocation would export it.
const PROGRAM = `
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
  char *volatile p = malloc(16);
  puts(p ? "ready" : "no memory");
  fflush(NULL); /* not fflush(stdout): stdout would be a copy-relocated export */
  for (;;) pause();
}
`;

const LIB = `
#include <stdio.h>
#include <stdlib.h>
int gh_counter;
int gh_value(int x) { char *volatile p = malloc(8); free(p); return x + gh_counter; }
void gh_hello(void) { puts("ready"); fflush(NULL); }
`;

const LIB_MAIN = `
#include <unistd.h>
int gh_value(int);
void gh_hello(void);
int main(void) { gh_hello(); for (;;) pause(); return gh_value(1); }
`;

interface Fixture {
  name: string;
  exe: string; // what runs
  module: string; // the module whose image is read (exe or a library)
}

let scratch: Scratch;
const fixtures: Record<string, Fixture> = {};
const children: ChildProcess[] = [];
const pids: Record<string, number> = {};

beforeAll(async () => {
  scratch = new Scratch();
  const exe = (name: string, flags: string[]): void => {
    const p = scratch.gcc(PROGRAM, name, flags);
    fixtures[name] = { name, exe: p, module: p };
  };
  exe("nopie", ["-no-pie", "-fno-PIE"]);
  // exit is in .dynsym (forced by -u) but no relocation names it: only .gnu.version counts it.
  exe("nopie-u-exit", ["-no-pie", "-fno-PIE", "-Wl,-u,exit"]);
  exe("pie", ["-pie", "-fPIE"]);
  exe("nopie-sysv", ["-no-pie", "-fno-PIE", "-Wl,--hash-style=sysv"]);
  exe("nopie-gnu", ["-no-pie", "-fno-PIE", "-Wl,--hash-style=gnu"]);
  exe("pie-sysv", ["-pie", "-fPIE", "-Wl,--hash-style=sysv"]);
  exe("pie-now", ["-pie", "-fPIE", "-Wl,-z,now"]);
  const lib = scratch.gcc(LIB, "libgh.so", ["-O2", "-shared", "-fPIC"]);
  const libExe = scratch.gcc(LIB_MAIN, "uses-lib", ["-O2", `-L${scratch.dir}`, `-Wl,-rpath,${scratch.dir}`], ["-lgh"]);
  fixtures.so = { name: "so", exe: libExe, module: lib };
  const libSysv = scratch.gcc(LIB, "libghsysv.so", ["-O2", "-shared", "-fPIC", "-Wl,--hash-style=sysv"]);
  const libSysvExe = scratch.gcc(LIB_MAIN, "uses-lib-sysv", ["-O2", `-L${scratch.dir}`, `-Wl,-rpath,${scratch.dir}`], ["-lghsysv"]);
  fixtures["so-sysv"] = { name: "so-sysv", exe: libSysvExe, module: libSysv };
  for (const f of Object.values(fixtures)) {
    const child = spawn(f.exe, [], { stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    const [data] = (await once(child.stdout!, "data")) as [Buffer];
    expect(data.toString()).toBe("ready\n");
    pids[f.name] = child.pid!;
  }
});

afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
  scratch?.remove();
});

/** readelf -W --dyn-syms: "value size name[@version]" per index. */
function readelfDynsyms(path: string): string[] {
  const rows: string[] = [];
  for (const line of run("readelf", ["-W", "--dyn-syms", path]).split("\n")) {
    const m = /^\s*(\d+):\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\S+\s?(.*)$/.exec(line);
    if (m) rows[Number(m[1])] = `${BigInt("0x" + m[2])} ${BigInt(m[3])} ${m[4].replace(/ \(\d+\)$/, "")}`;
  }
  return rows;
}

function ours(s: ElfSymbol): string {
  let name = s.name;
  if (s.version && s.version !== s.name) name += (s.hidden || s.versionFile ? "@" : "@@") + s.version;
  return `${s.value} ${s.size} ${name}`;
}

/** The image of fixture `f`'s module as the running process maps it. */
function liveImage(f: Fixture): ElfReader {
  const pid = pids[f.name];
  const maps = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"), `/proc/${pid}/maps`);
  const mod = listModules(maps).find((m) => m.path === f.module);
  if (!mod) throw new Error(`${f.module} is not mapped in process ${pid}`);
  const mem = new ProcMemory(pid);
  try {
    return readModuleImage(core, mem, pid, mod);
  } finally {
    mem.close();
  }
}

/** .gnu.hash's header and buckets, from the file's section. */
function gnuHash(path: string): { symoffset: number; buckets: number[] } | undefined {
  const file = new ElfReader(core, readFileSync(path), path);
  try {
    const s = file.sections().find((x) => x.name === ".gnu.hash");
    if (!s) return undefined;
    const d = file.sectionData(s);
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const nbuckets = v.getUint32(0, true);
    const bloom = v.getUint32(8, true);
    const buckets = Array.from({ length: nbuckets }, (_, i) => v.getUint32(16 + bloom * 8 + i * 4, true));
    return { symoffset: v.getUint32(4, true), buckets };
  } finally {
    file.close();
  }
}

const hasSection = (path: string, name: string): boolean => run("readelf", ["-SW", path]).includes(` ${name} `);

describe("dynamic symbols of images read from a live process", () => {
  it("the fixtures are the cases they claim to be", () => {
    // No exports: symoffset 1, every bucket empty; the imports are in .dynsym after it.
    for (const name of ["nopie", "nopie-gnu", "nopie-u-exit"]) {
      const path = fixtures[name].module;
      const h = gnuHash(path)!;
      expect({ name, symoffset: h.symoffset, used: h.buckets.some((b) => b !== 0) }).toEqual({ name, symoffset: 1, used: false });
      expect(hasSection(path, ".hash")).toBe(false);
      const names = readelfDynsyms(path).map((r) => r.split(" ")[2]);
      expect(names.length).toBeGreaterThan(3);
      expect(names).toEqual(expect.arrayContaining(["puts@GLIBC_2.2.5", "malloc@GLIBC_2.2.5"]));
    }
    // exit: the last symbol, named by no relocation.
    const uExit = fixtures["nopie-u-exit"].module;
    const last = readelfDynsyms(uExit).at(-1)!;
    expect(last).toBe("0 0 exit@GLIBC_2.2.5");
    expect(run("readelf", ["-rW", uExit])).not.toMatch(/ exit@/);
    for (const name of ["nopie-sysv", "pie-sysv", "so-sysv"]) {
      expect(hasSection(fixtures[name].module, ".hash")).toBe(true);
      expect(hasSection(fixtures[name].module, ".gnu.hash")).toBe(false);
    }
    // The shared library exports: its buckets are used.
    expect(gnuHash(fixtures.so.module)!.buckets.some((b) => b !== 0)).toBe(true);
  });

  for (const name of ["nopie", "nopie-gnu", "nopie-u-exit", "pie", "pie-now", "nopie-sysv", "pie-sysv", "so", "so-sysv"]) {
    it(`${name}: count, names and versions equal readelf's`, () => {
      const f = fixtures[name];
      const image = liveImage(f);
      try {
        expect(image.info.isImage).toBe(true);
        expect(image.info.sectionCount).toBe(0);
        const expected = readelfDynsyms(f.module);
        const syms = image.symbols(SymbolTableKind.DYNSYM);
        expect(syms.map(ours)).toEqual(expected);
        // Every relocation names a symbol of the table (what apply's open checks).
        for (const t of image.relaTables()) for (const r of image.relas(t)) expect(r.sym).toBeLessThan(syms.length);
      } finally {
        image.close();
      }
    });
  }
});

describe("the room of .dynsym bounds the count", () => {
  /** Opens the nopie fixture as an image (built from the file) after `edit(view, firstVaddr, file)`: symbol count or error. */
  function edited(edit: (v: DataView, firstVaddr: number, file: ElfReader) => void): number | string {
    const path = fixtures.nopie.module;
    const bytes = new Uint8Array(readFileSync(path));
    const { image, firstVaddr } = imageOf(bytes);
    const file = new ElfReader(core, bytes, path);
    try {
      edit(new DataView(image.buffer), firstVaddr, file);
    } finally {
      file.close();
    }
    try {
      const e = new ElfReader(core, image, "nopie image", BigInt(firstVaddr));
      const n = e.symbols(SymbolTableKind.DYNSYM).length;
      e.close();
      return n;
    } catch (e) {
      expect(e).toBeInstanceOf(CoreError);
      return (e as Error).message;
    }
  }

  const section = (file: ElfReader, name: string) => file.sections().find((s) => s.name === name)!;
  const count = () => readelfDynsyms(fixtures.nopie.module).length;

  it("opens the unedited image with readelf's count", () => {
    expect(edited(() => {})).toBe(count());
  });

  it("refuses a relocation whose symbol lies past DT_STRTAB", () => {
    const msg = edited((v, first, file) => {
      const at = Number(section(file, ".rela.plt").addr) - first + 8 + 4; // r_sym: the high word of the first r_info
      v.setUint32(at, 40, true);
    });
    expect(msg).toMatch(new RegExp(`DT_JMPREL: relocation 0 refers to symbol 40: only ${count()} symbols fit between DT_SYMTAB 0x[0-9a-f]+ and 0x[0-9a-f]+`));
  });

  it("refuses a GNU hash whose symoffset lies past the room", () => {
    const msg = edited((v, first, file) => {
      v.setUint32(Number(section(file, ".gnu.hash").addr) - first + 4, 1000, true);
    });
    expect(msg).toMatch(new RegExp(`DT_GNU_HASH: the hashed symbols end at 1000: only ${count()} symbols fit`));
  });

  it("ignores .gnu.version when non-zero entries run past the room (the gap is not only .gnu.version)", () => {
    let padding = 0n;
    const n = edited((v, first, file) => {
      const vs = section(file, ".gnu.version");
      const vr = section(file, ".gnu.version_r");
      padding = vr.addr - (vs.addr + vs.size);
      if (padding >= 2n) v.setUint16(Number(vs.addr + vs.size) - first, 7, true);
    });
    expect(padding).toBeGreaterThanOrEqual(2n); // else the edit did nothing
    expect(n).toBe(count());
  });
});
