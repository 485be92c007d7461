// The core's second host: core-portable.wasm translated to C by wasm2c (Debian's wabt),
// linked with test/hosts/core-host.c, opens ELF files and looks symbols up (by name, by
// address, bound over a scope as ld.so does, GOT/PLT slots) through docs/core-abi.md's
// ABI alone. Its report must equal, line for line, what Node computes through src/core.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader, SymbolTableKind, type ElfSymbol } from "../src/core/elf.js";
import { SymbolIndex, SymbolTable, lookupInScope, splitVersion } from "../src/core/symbols.js";
import { Relocation, SLOT_KINDS } from "../src/core/reloc.js";
import { CoreError, type Core } from "../src/core/instance.js";
import { LIBC, Scratch, run } from "./helpers/gcc.js";
import { imageOf } from "./helpers/elf-image.js";

const ROOT = new URL("..", import.meta.url).pathname;
const PORTABLE = `${ROOT}build/core-portable.wasm`;
const HOST_SRC = `${ROOT}test/hosts/core-host.c`;
/** wasm2c's runtime sources, as Debian's wabt 1.0.32 installs them (wasm-rt.h is in /usr/include). */
const WASM2C_RT = "/usr/share/wabt/wasm2c";

const FIXTURE = `
#include <stdio.h>
#include <string.h>
__thread int tls_counter;
static int helper(int x) { return x * 3 + tls_counter; }
int table_switch(int x) {
  switch (x) { case 0: return 11; case 1: return helper(2); case 2: return 37; case 3: return 41; default: return -1; }
}
int main(int argc, char **argv) {
  char buf[64];
  memcpy(buf, argv[0], strlen(argv[0]) % 60);
  printf("%s %d\\n", buf, table_switch(argc));
  return 0;
}
`;

const IMAGE_BASE = 0x7f1234560000n;
/** The load bias of the one-module scope the C host binds in (core-host.c's SCOPE_BIAS). */
const SCOPE_BIAS = 0x7f0000000000n;
/** core-host.c's relocation: the object laid out at RELOC_BASE, undefined symbol k at EXTERN_BASE + 0x1000 (k + 1). */
const RELOC_BASE = 0x400000n;
const EXTERN_BASE = 0x7f0000000000n;
const NAMES = ["memcpy", "strlen", "main", "helper", "table_switch", "tls_counter", "printf", "__libc_start_main", "environ", "memcpy@GLIBC_2.2.5", "memcpy@GLIBC_2.14", "puts@GLIBC_2.2.5"];

let scratch: Scratch;
let host: string;
const inputs: Record<string, { path: string; image?: bigint }> = {};

beforeAll(() => {
  scratch = new Scratch();
  const c = scratch.path("core.c");
  run("wasm2c", ["-n", "core", PORTABLE, "-o", c]);
  host = scratch.path("core-host");
  execFileSync("gcc", ["-O0", "-w", `-I${WASM2C_RT}`, `-I${scratch.dir}`, c, `${WASM2C_RT}/wasm-rt-impl.c`, HOST_SRC, "-o", host, "-lm"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  inputs["libc.so.6"] = { path: LIBC };
  inputs["gcc -c object"] = { path: scratch.gcc(FIXTURE, "fixture.o", ["-O2", "-c", "-ffunction-sections"]) };
  inputs["gcc -c -fPIC -fno-plt object"] = { path: scratch.gcc(FIXTURE, "fixture-pic.o", ["-O2", "-c", "-fPIC", "-fno-plt", "-ffunction-sections"]) };
  inputs["PIE executable"] = { path: scratch.gcc(FIXTURE, "fixture-pie", ["-O2", "-pie", "-fPIE", "-Wl,--build-id"]) };
  const { image, firstVaddr } = imageOf(readFileSync(LIBC));
  writeFileSync(scratch.path("libc.image"), image);
  inputs["libc.so.6 as a mapped image"] = { path: scratch.path("libc.image"), image: IMAGE_BASE + BigInt(firstVaddr) };
}, 180_000);
afterAll(() => scratch?.remove());

// ---- the same report, from Node through src/core ------------------------------------

const FNV_OFFSET = 14695981039346656037n;
const FNV_PRIME = 1099511628211n;
const enc = new TextEncoder();

class Digest {
  h = FNV_OFFSET;
  add(s: string): void {
    this.addBytes(enc.encode(s));
  }
  addBytes(bytes: Uint8Array): void {
    for (const b of bytes) this.h = BigInt.asUintN(64, (this.h ^ BigInt(b)) * FNV_PRIME);
  }
  get hex(): string {
    return this.h.toString(16).padStart(16, "0");
  }
}

const hex = (v: bigint | number) => "0x" + v.toString(16);

function symbolLine(table: number, s: ElfSymbol): string {
  let name = s.name;
  if (s.version) name += (s.hidden || s.versionFile ? "@" : "@@") + s.version;
  const file = s.versionFile ? ` file=${s.versionFile}` : "";
  return `sym ${table} ${s.index} ${name}${file} value=${hex(s.value)} size=${s.size} info=${(s.bind << 4) | s.type} other=${s.other} versym=${s.versym} shndx=${s.shndx}`;
}

function nodeReport(data: Uint8Array, image: bigint | undefined, names: string[]): string {
  const core = nodeCore();
  const out: string[] = [`abi ${core.exports.core_abi_version()}`];
  const elf = new ElfReader(core, data, "input", image);
  const i = elf.info;
  const flags = (i.isImage ? 1 : 0) | (i.hasSymtab ? 2 : 0) | (i.hasDynsym ? 4 : 0) | (i.hasDynamic ? 8 : 0) | (i.tlsSegment >= 0 ? 16 : 0);
  out.push(
    `info type=${i.type} machine=${i.machine} flags=${hex(flags)} entry=${hex(i.entry)} sections=${i.sectionCount} segments=${i.segmentCount} ` +
      `symtab=${i.symtabCount} dynsym=${i.dynsymCount} relatables=${i.relaTableCount} versions=${i.versionCount} dynamic=${i.dynamicCount} ` +
      `firstvaddr=${hex(i.firstVaddr)} base=${hex(i.base)} tls=${i.tlsSegment} buildid=${i.buildId ?? ""}`,
  );
  for (const s of elf.sections()) {
    out.push(`section ${s.index} ${s.name} type=${s.type} link=${s.link} flags=${hex(s.flags)} addr=${hex(s.addr)} offset=${hex(s.offset)} size=${hex(s.size)} info=${s.info} data=${s.hasData ? 1 : 0}`);
  }
  elf.segments().forEach((s, k) => out.push(`segment ${k} type=${hex(s.type)} flags=${s.flags} offset=${hex(s.offset)} vaddr=${hex(s.vaddr)} filesz=${hex(s.filesz)} memsz=${hex(s.memsz)}`));
  for (const table of [SymbolTableKind.SYMTAB, SymbolTableKind.DYNSYM]) {
    if (!(table === SymbolTableKind.SYMTAB ? i.hasSymtab : i.hasDynsym)) continue;
    const d = new Digest();
    const syms = elf.symbols(table);
    for (const s of syms) {
      d.add(`${s.name}\t${s.version ?? ""}\t${s.versionFile ?? ""}\t${s.value.toString(16)}\t${s.size}\t${(s.bind << 4) | s.type}\t${s.other}\t${s.versym}\t${s.shndx}\n`);
      if (names.includes(s.name)) out.push(symbolLine(table, s));
    }
    out.push(`symbols ${table} ${table === 0 ? ".symtab" : ".dynsym"} count=${syms.length} digest=${d.hex}`);
  }
  elf.versions().forEach((v, k) => out.push(`version ${k} index=${v.index} def=${v.isDef ? 1 : 0} base=${v.isBase ? 1 : 0} name=${v.name} file=${v.file ?? ""}`));
  const dyn = elf.dynamic();
  const dd = new Digest();
  for (const e of dyn) dd.add(`${e.tag}\t${e.val.toString(16)}\n`);
  out.push(`dynamic count=${dyn.length} digest=${dd.hex}`);
  for (const e of dyn) {
    if (e.tag === 1n) out.push(`needed ${elf.dynstr(Number(e.val))}`);
    if (e.tag === 14n) out.push(`soname ${elf.dynstr(Number(e.val))}`);
  }
  for (const t of elf.relaTables()) {
    const d = new Digest();
    for (const r of elf.relas(t)) d.add(`${r.offset.toString(16)}\t${r.type}\t${r.sym}\t${r.addend}\n`);
    out.push(`relatable ${t.index} kind=${t.kind} count=${t.count} section=${t.section} target=${t.target} symtab=${t.symtab} digest=${d.hex}`);
  }
  const u = elf.unwindTables();
  const eh = u.ehFrame, hdr = u.ehFrameHdr;
  out.push(
    `ehframe addr=${hex(eh?.addr ?? 0n)} offset=${eh?.offset ?? -1} size=${hex(eh?.size ?? 0)} hdr=${hex(hdr?.addr ?? 0n)} hdroffset=${hdr?.offset ?? -1} hdrsize=${hex(hdr?.size ?? 0)}`,
  );
  symbolIndex(core, elf, names);
  if (i.type === 1) relocate(elf);
  elf.close();
  const elfClose = core.exports.elf_close as (h: number) => number;
  out.push(`closed ${elfClose(elf.handle) === 1 ? 1 : 0}`); // BAD_HANDLE the second time
  try {
    new ElfReader(core, data.subarray(0, Math.min(63, data.length)), "").close(); // the C host uses elf_open here
    out.push("truncated opened?");
  } catch (e) {
    const err = e as CoreError;
    out.push(`truncated ${err.code} ${err.message}`);
  }
  return out.join("\n") + "\n";

  function symbolIndex(core: Core, elf: ElfReader, refs: string[]): void {
    const idx = new SymbolIndex(core, elf, SymbolTable.BEST);
    const dyn = elf.info.hasDynsym ? new SymbolIndex(core, elf, SymbolTable.DYNSYM) : undefined;
    out.push(`index table=${idx.table} symbols=${idx.count} functions=${idx.functionCount} flags=${idx.isRelocatable ? 1 : 0}`);
    const PIECE = { whole: 0, cold: 1, part: 2 };
    const KIND = { func: 1, object: 2, ifunc: 3, tls: 4, notype: 5, common: 6 };
    const PLT = { plt: 1, "plt.sec": 2, "plt.got": 3 };
    for (const ref of refs) {
      const { name } = splitVersion(ref);
      if (name === ref) {
        const ids = idx.findAll(name);
        out.push(`find ${name} ids=${ids.join(",")}`);
        if (ids.length) {
          const s = idx.get(ids[0]);
          out.push(
            `get ${s.id} name=${s.name} flags=${s.defined ? 1 : 0} value=${hex(s.value)} size=${s.size} info=${(s.bind << 4) | s.type} versym=${s.versym} ` +
              `shndx=${s.shndx} file=${s.file} sympos=${s.sympos} piece=${PIECE[s.piece]} root=${s.root} rootlen=${s.rootName.length} baselen=${s.baseName.length}`,
          );
          if ((s.type === 2 || s.type === 10) && s.size > 1n) {
            const addr = s.value + s.size / 2n;
            const a = idx.at(addr, idx.isRelocatable ? s.shndx : 0);
            out.push(`at ${hex(addr)} id=${a ? a.id : -1}` + (a ? ` start=${hex(a.start)} end=${hex(a.end)} root=${a.root} piece=${PIECE[a.piece]} flags=${a.guessedEnd ? 1 : 0}` : ""));
          }
        }
      }
      if (dyn) {
        const b = lookupInScope(core, [{ index: dyn, bias: SCOPE_BIAS }], ref);
        const flags = (b?.weak ? 1 : 0) | (b?.absolute ? 2 : 0) | (b?.canonicalPlt ? 4 : 0) | (b?.protectedVisibility ? 8 : 0) | (b?.hiddenVersion ? 16 : 0);
        out.push(
          `bind ${ref} pos=${b ? b.position : -1}` +
            (b ? ` id=${b.id} kind=${KIND[b.kind]} flags=${flags} address=${hex(b.address ?? 0n)} value=${hex(b.value)} size=${b.size} resolver=${hex(b.resolver ?? 0n)}` : ""),
        );
        if (!idx.isRelocatable) {
          const slots = dyn.slotsOf(ref);
          out.push(
            `slots ${ref} n=${slots.length}` +
              slots
                .slice(0, 16)
                .map((t) => ` [${hex(t.address)} plt=${hex(t.plt ?? 0n)} addend=${t.addend} type=${t.type} sym=${t.symbol} pltsec=${t.pltSection ? PLT[t.pltSection] : 0}]`)
                .join(""),
          );
        }
      }
    }
    dyn?.close();
    idx.close();
  }

  function relocate(elf: ElfReader): void {
    const r = new Relocation(elf);
    const f = r.info;
    const iflags = (f.usesGot ? 1 : 0) | (f.hasTlsSections ? 2 : 0) | (f.tlsRefs ? 4 : 0) | (f.staticTls ? 8 : 0) | (f.dynamicTls ? 16 : 0);
    out.push(`reloc relocations=${f.relocations} tables=${f.tables} refs=${f.refCount} flags=${iflags} sections=${f.sections} stubcandidates=${f.stubCandidates} maxalign=${f.maxAlign}`);
    const refs = r.refs();
    for (const x of refs) {
      const fl = (x.undefined ? 1 : 0) | (x.weak ? 2 : 0) | (x.tls ? 4 : 0) | (x.gotSymbol ? 8 : 0) | (x.common ? 16 : 0);
      out.push(`ref ${x.sym} ${x.name} refs=${x.refs} shndx=${x.shndx} info=${(x.bind << 4) | x.type} flags=${fl} value=${hex(x.value)}`);
    }
    refs.forEach((x, k) => {
      if (x.gotSymbol || !x.undefined) return;
      if (x.tls) r.bindTls(x.sym, { module: 2n, blockTpoff: -0x200n }, 0x10n * BigInt(k));
      else r.bindAddress(x.sym, EXTERN_BASE + 0x1000n * BigInt(k + 1));
    });
    const p = r.plan();
    const pflags = (p.below2G ? 1 : 0) | (p.below4G ? 2 : 0) | (p.near ? 4 : 0);
    out.push(
      `plan gotsize=${p.gotSize} stubsize=${p.stubSize} slots=${p.gotSlots} stubs=${p.stubs} flags=${pflags} below=${hex(p.below)} ` +
        `near=${hex(p.near?.lo ?? 0n)}..${hex(p.near?.hi ?? 0n)} maxalign=${p.maxAlign}`,
    );
    const size = r.layout(RELOC_BASE, { pages: true });
    const tls = r.tlsImage;
    out.push(`layout base=${hex(RELOC_BASE)} size=${size} tls=${tls ?? -1}`);
    if (tls !== undefined) r.setTls({ module: 1n, blockTpoff: -0x100n, tlsStart: tls });
    const win = r.apply(RELOC_BASE, Number(size));
    const d = new Digest();
    d.addBytes(win);
    out.push(`window size=${size} digest=${d.hex}`);
    for (let sec = 0; sec < elf.info.sectionCount; sec++) {
      const a = r.sectionAddress(sec);
      if (a !== undefined) out.push(`placed ${sec} ${hex(a)}`);
    }
    out.push(`areas got=${r.gotAddress ?? -1} stubs=${r.stubsAddress ?? -1}`);
    for (const g of r.gotSlots(p.gotSlots)) out.push(`got ${hex(g.addr)} value=${hex(g.value)} sym=${g.sym} kind=${SLOT_KINDS.indexOf(g.kind)}`);
    for (const t of r.stubs(p.stubs)) out.push(`stub ${hex(t.addr)} target=${hex(t.target)} sym=${t.sym} flags=${t.branch ? 1 : 0} addend=${t.addend}`);
    for (const x of refs) out.push(`value ${x.sym} ${hex(r.symbolValue(x.sym))}`);
    r.close();
  }
}

describe("the core from C (wasm2c) gives the same results as from Node", () => {
  for (const name of ["libc.so.6", "gcc -c object", "gcc -c -fPIC -fno-plt object", "PIE executable", "libc.so.6 as a mapped image"]) {
    it(name, () => {
      const input = inputs[name];
      const args = input.image === undefined ? [input.path, ...NAMES] : ["--image", hex(input.image), input.path, ...NAMES];
      const fromC = execFileSync(host, args, { encoding: "utf8", maxBuffer: 64 << 20 });
      const fromNode = nodeReport(readFileSync(input.path), input.image, NAMES);
      expect(fromC.split("\n")).toEqual(fromNode.split("\n"));
      // The report carries the facts, not only agreement.
      expect(fromC).toMatch(/^info type=\d+ machine=62 /m);
      if (name.startsWith("libc")) {
        expect(fromC).toMatch(/^sym 1 \d+ memcpy@@GLIBC_2\.14 value=0x[0-9a-f]+ size=\d+ info=26 /m); // STT_GNU_IFUNC, global
        expect(fromC).toMatch(/^sym 1 \d+ memcpy@GLIBC_2\.2\.5 value=0x[0-9a-f]+ /m);
        expect(fromC).toMatch(/^soname libc\.so\.6$/m);
        // The symbol index: memcpy is an IFUNC, bound to its resolver, never to an address;
        // memcpy@GLIBC_2.2.5 is a plain function (of a hidden version).
        expect(fromC).toMatch(/^bind memcpy pos=0 id=\d+ kind=3 flags=0 address=0x0 value=0x[0-9a-f]+ size=\d+ resolver=0x7f0000[0-9a-f]+$/m);
        expect(fromC).toMatch(/^bind memcpy@GLIBC_2\.2\.5 pos=0 id=\d+ kind=1 flags=16 address=0x7f0000[0-9a-f]+ /m);
        expect(fromC).toMatch(/^slots memcpy n=1 \[0x[0-9a-f]+ plt=0x[0-9a-f]+ addend=\d+ type=37 /m); // libc's own IRELATIVE slot
      }
      if (name.startsWith("gcc -c")) {
        expect(fromC).toMatch(/^relatable \d+ kind=section count=[1-9]\d* /m);
        // Relocated: a window of bytes, and calls to libc beyond +-2 GiB through stubs (or GOT slots with -fno-plt).
        expect(fromC).toMatch(/^window size=[1-9]\d* digest=[0-9a-f]{16}$/m);
        if (name === "gcc -c object") expect(fromC).toMatch(/^stub 0x[0-9a-f]+ target=0x7f0000[0-9a-f]+ sym=\d+ flags=1 addend=-4$/m);
        else expect(fromC).toMatch(/^got 0x[0-9a-f]+ value=0x7f0000[0-9a-f]+ sym=\d+ kind=0$/m);
      }
      if (name === "PIE executable") expect(fromC).toMatch(/^slots printf n=1 \[0x[0-9a-f]+ plt=0x[0-9a-f]+ addend=0 type=7 sym=\d+ pltsec=[12]\]$/m); // JUMP_SLOT
      if (!name.startsWith("libc")) {
        const id = /^find table_switch ids=(\d+)$/m.exec(fromC)?.[1];
        expect(id).toBeDefined();
        expect(fromC).toMatch(new RegExp(`^at 0x[0-9a-f]+ id=${id} start=0x[0-9a-f]+ end=0x[0-9a-f]+ root=${id} piece=0 flags=0$`, "m"));
      }
      expect(fromC).toMatch(/^truncated 100 ELF header: /m);
    });
  }

  it("memcpy's value from C is readelf's", () => {
    const out = execFileSync(host, [LIBC, "memcpy"], { encoding: "utf8" });
    const ours = [...out.matchAll(/^sym 1 \d+ memcpy(@@?\S+) value=0x([0-9a-f]+) size=(\d+)/gm)].map((m) => `${m[1]} ${BigInt("0x" + m[2])} ${m[3]}`);
    const theirs = run("readelf", ["-W", "--dyn-syms", LIBC])
      .split("\n")
      .map((l) => /^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+\S+\s+memcpy(@@?\S+)/.exec(l))
      .filter((m) => m !== null)
      .map((m) => `${m![3].replace(/ \(\d+\)$/, "")} ${BigInt("0x" + m![1])} ${m![2]}`);
    expect(ours.length).toBe(2);
    expect(ours.sort()).toEqual(theirs.sort());
  });
});
