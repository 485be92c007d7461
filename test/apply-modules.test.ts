// Modules of a live process found by build-id from its memory, and its link_map order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, unlinkSync, copyFileSync } from "node:fs";
import { once } from "node:events";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { parseMaps } from "../src/apply/maps.js";
import { ProcMemory } from "../src/apply/proc-memory.js";
import { findModuleByBuildId, listModules, readLinkMap } from "../src/apply/modules.js";
import { Scratch } from "./helpers/gcc.js";

const core = nodeCore();
let scratch: Scratch;
let child: ChildProcess;
let lib: string;
let preload: string;
let exe: string;

beforeAll(async () => {
  scratch = new Scratch();
  lib = scratch.gcc("int libfix_value(void) { return 42; }\n", "libfix.so", ["-O2", "-shared", "-fPIC", "-Wl,--build-id"]);
  preload = scratch.gcc("int preload_value(void) { return 7; }\n", "libpre.so", ["-O2", "-shared", "-fPIC", "-Wl,--build-id"]);
  exe = scratch.gcc(
    `#include <stdio.h>
#include <unistd.h>
int libfix_value(void);
int main(void) { printf("ready %d\\n", libfix_value()); fflush(stdout); for (;;) pause(); }
`,
    "fixture",
    ["-O2", "-Wl,--build-id", `-L${scratch.dir}`, `-Wl,-rpath,${scratch.dir}`],
    ["-lfix"],
  );
  // Run a copy of the library that is then deleted: the module must still be found by build-id.
  copyFileSync(lib, lib + ".orig");
  child = spawn(exe, [], { env: { ...process.env, LD_PRELOAD: preload }, stdio: ["ignore", "pipe", "inherit"] });
  const [data] = (await once(child.stdout!, "data")) as [Buffer];
  expect(data.toString()).toBe("ready 42\n");
  unlinkSync(lib);
});

afterAll(() => {
  child?.kill("SIGKILL");
  scratch?.remove();
});

const buildId = (path: string): string => {
  const e = new ElfReader(core, readFileSync(path), path);
  const id = e.info.buildId!;
  e.close();
  return id;
};

describe("process modules", () => {
  it("finds a deleted library and the executable by build-id, with the load bias", () => {
    const pid = child.pid!;
    const maps = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"), `/proc/${pid}/maps`);
    const mods = listModules(maps);
    expect(mods.find((m) => m.path === lib)?.deleted).toBe(true);
    expect(mods.some((m) => m.path === "[vdso]")).toBe(true);
    const mem = new ProcMemory(pid);
    try {
      const found = findModuleByBuildId(core, mem, pid, maps, buildId(lib + ".orig"))!;
      expect(found.module.path).toBe(lib);
      expect(found.image.info.buildId).toBe(buildId(lib + ".orig"));
      const sym = found.image.symbols(1).find((s) => s.name === "libfix_value")!;
      // The function's bytes in the target are the file's bytes at that symbol.
      const file = new ElfReader(core, readFileSync(lib + ".orig"), lib);
      const off = file.addrToOffset(sym.value, sym.size);
      expect(mem.read(found.bias + sym.value, Number(sym.size))).toEqual(new Uint8Array(readFileSync(lib + ".orig").subarray(off, off + Number(sym.size))));
      file.close();
      found.image.close();
      expect(findModuleByBuildId(core, mem, pid, maps, "00".repeat(20))).toBeUndefined();
    } finally {
      mem.close();
    }
  });

  it("reads the link_map in ld.so's order: executable, LD_PRELOAD, needed libraries", () => {
    const pid = child.pid!;
    const maps = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"), `/proc/${pid}/maps`);
    const mem = new ProcMemory(pid);
    try {
      const exeMod = findModuleByBuildId(core, mem, pid, maps, buildId(exe))!;
      const chain = readLinkMap(mem, exeMod);
      const names = chain.map((e) => e.name);
      expect(names[0]).toBe("");
      expect(chain[0].addr).toBe(exeMod.bias);
      const iPre = names.indexOf(preload);
      const iLib = names.indexOf(lib);
      const iLibc = names.findIndex((n) => n.endsWith("/libc.so.6"));
      expect(iPre).toBeGreaterThan(0);
      expect(iPre).toBeLessThan(iLib);
      expect(iLib).toBeLessThan(iLibc);
      exeMod.image.close();
    } finally {
      mem.close();
    }
  });
});
