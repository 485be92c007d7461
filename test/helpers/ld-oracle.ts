// The system linker as an oracle for the relocation engine: link one object with `ld`
// at fixed addresses (a linker script), `--no-relax` and `-Map`, then read back from the
// map and from readelf/objdump of the output where ld put each input section, its GOT
// slots (with the dynamic relocations that fill them) and its PLT entries.
import { readFileSync } from "node:fs";
import { run, type Scratch } from "./gcc.js";

export const LDSO = "/lib64/ld-linux-x86-64.so.2";

/** Fixed addresses per group of sections; everything else ld places as orphans. */
export const LINKER_SCRIPT = `
SECTIONS
{
  . = 0x200000 + SIZEOF_HEADERS;
  .text 0x400000 : { *(.text .text.*) }
  .plt : { *(.plt) *(.plt.*) }
  .rodata 0x500000 : { *(.rodata .rodata.*) }
  .eh_frame : { *(.eh_frame) }
  .tdata 0x600000 : { *(.tdata .tdata.*) }
  .tbss : { *(.tbss .tbss.*) }
  .data : { *(.data .data.*) }
  .got : { *(.got) }
  .got.plt : { *(.got.plt) }
  .bss : { *(.bss .bss.*) *(COMMON) }
}
`;

export type LinkMode = "exec" | "pie" | "shared";

export interface OutSection {
  name: string;
  type: string;
  addr: bigint;
  off: number;
  size: number;
}

export interface DynReloc {
  offset: bigint;
  type: string;
  sym?: string; // without @version
  symValue?: bigint;
  addend: bigint;
}

export interface MapEntry {
  name: string;
  addr: bigint;
  size: bigint;
}

export class Linked {
  readonly bytes: Uint8Array;
  readonly sections: OutSection[];
  readonly symbols = new Map<string, bigint>(); // .symtab, defined or with a value
  readonly dynRelocs: DynReloc[];
  readonly plt = new Map<string, bigint>();
  readonly tls?: { vaddr: bigint; memsz: bigint; align: bigint };
  readonly mapEntries: MapEntry[];

  constructor(
    readonly path: string,
    mapPath: string,
    objPath: string,
    readonly mode: LinkMode,
  ) {
    this.bytes = readFileSync(path);
    this.sections = [];
    for (const line of run("readelf", ["-SW", path]).split("\n")) {
      const m = /^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]{16})\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line);
      if (m) this.sections.push({ name: m[1], type: m[2], addr: BigInt("0x" + m[3]), off: parseInt(m[4], 16), size: parseInt(m[5], 16) });
    }
    for (const line of run("readelf", ["-sW", path]).split("\n")) {
      const m = /^\s*\d+:\s+([0-9a-f]{16})\s+\d+\s+\S+\s+\S+\s+\S+\s+(\S+)\s+(\S+)/.exec(line);
      if (m && m[2] !== "UND") this.symbols.set(m[3].replace(/@.*$/, ""), BigInt("0x" + m[1]));
      else if (m && !this.symbols.has(m[3].replace(/@.*$/, ""))) this.symbols.set(m[3].replace(/@.*$/, ""), BigInt("0x" + m[1]));
    }
    this.dynRelocs = [];
    for (const line of run("readelf", ["-rW", path]).split("\n")) {
      const m = /^([0-9a-f]{16})\s+[0-9a-f]{16}\s+(R_X86_64_\w+)\s+(?:([0-9a-f]{16})\s+(\S+)\s+([+-])\s+([0-9a-f]+)|([0-9a-f]+))?\s*$/.exec(line);
      if (!m) continue;
      if (m[4] !== undefined) {
        const a = BigInt("0x" + m[6]);
        this.dynRelocs.push({ offset: BigInt("0x" + m[1]), type: m[2], sym: m[4].replace(/@.*$/, ""), symValue: BigInt("0x" + m[3]), addend: m[5] === "-" ? -a : a });
      } else {
        this.dynRelocs.push({ offset: BigInt("0x" + m[1]), type: m[2], addend: m[7] !== undefined ? BigInt("0x" + m[7]) : 0n });
      }
    }
    const pltSections = this.sections.filter((s) => s.name.startsWith(".plt")).flatMap((s) => ["-j", s.name]);
    if (pltSections.length) {
      for (const line of run("objdump", ["-d", ...pltSections, path]).split("\n")) {
        const m = /^([0-9a-f]+) <(.+)@plt>:/.exec(line);
        if (m) this.plt.set(m[2].replace(/@.*$/, ""), BigInt("0x" + m[1]));
      }
    }
    for (const line of run("readelf", ["-lW", path]).split("\n")) {
      const m = /^\s+TLS\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+\S+\s+0x([0-9a-f]+)/.exec(line);
      if (m) this.tls = { vaddr: BigInt("0x" + m[1]), memsz: BigInt("0x" + m[2]), align: BigInt("0x" + m[3]) };
    }
    this.mapEntries = parseMap(readFileSync(mapPath, "utf8"), objPath);
  }

  /** tpoff of the executable's TLS block (variant II: TP is the block's aligned end). */
  get blockTpoff(): bigint {
    if (!this.tls) throw new Error(`${this.path}: no PT_TLS`);
    const a = this.tls.align || 1n;
    return -((this.tls.memsz + a - 1n) / a) * a;
  }

  section(name: string): OutSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** Bytes of the output at a link-time address (from the file, through section headers). */
  at(addr: bigint, size: number): Uint8Array {
    for (const s of this.sections) {
      if (s.type === "NOBITS" || s.addr === 0n) continue;
      if (addr >= s.addr && addr + BigInt(size) <= s.addr + BigInt(s.size)) {
        const o = s.off + Number(addr - s.addr);
        return this.bytes.subarray(o, o + size);
      }
    }
    throw new Error(`${this.path}: no file bytes at 0x${addr.toString(16)}+${size}`);
  }

  u64(addr: bigint): bigint {
    const b = this.at(addr, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }

  i32(addr: bigint): number {
    const b = this.at(addr, 4);
    return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
  }

  /** Dynamic relocations at an address. */
  relocsAt(addr: bigint): DynReloc[] {
    return this.dynRelocs.filter((r) => r.offset === addr);
  }

  /** The GOT slots of .got, each with the dynamic relocations that fill it. */
  gotSlots(): Array<{ addr: bigint; relocs: DynReloc[]; content: bigint }> {
    const got = this.section(".got");
    if (!got) return [];
    const r: Array<{ addr: bigint; relocs: DynReloc[]; content: bigint }> = [];
    for (let a = got.addr; a < got.addr + BigInt(got.size); a += 8n) r.push({ addr: a, relocs: this.relocsAt(a), content: this.u64(a) });
    return r;
  }
}

/** Input sections of `objPath` in an ld -Map file: name, address, size, in map order. */
export function parseMap(text: string, objPath: string): MapEntry[] {
  const start = text.indexOf("Linker script and memory map");
  const lines = text.slice(start).split("\n");
  const r: MapEntry[] = [];
  for (let i = 0; i < lines.length; i++) {
    let m = /^ (\.\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$/.exec(lines[i]);
    if (!m) {
      // A long name sits alone on its line; address, size and file follow on the next.
      const n = /^ (\.\S+)$/.exec(lines[i]);
      const m2 = n && i + 1 < lines.length ? /^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$/.exec(lines[i + 1]) : null;
      if (n && m2) {
        m = [lines[i], n[1], m2[1], m2[2], m2[3]] as unknown as RegExpExecArray;
        i++;
      }
    }
    if (m && m[4] === objPath) r.push({ name: m[1], addr: BigInt("0x" + m[2]), size: BigInt("0x" + m[3]) });
  }
  return r;
}

/** Links `obj` with the script, --no-relax and -Map; `libs` are shared libraries to link against. */
export function ldLink(scratch: Scratch, obj: string, out: string, mode: LinkMode, libs: string[]): Linked {
  const script = scratch.write("link.ld", LINKER_SCRIPT);
  const map = scratch.path(out + ".map");
  const o = scratch.path(out);
  const modeFlags = mode === "pie" ? ["-pie"] : mode === "shared" ? ["-shared"] : [];
  run("ld", ["--no-relax", ...modeFlags, "-T", script, "-Map", map, "--dynamic-linker", LDSO, "-e", "0", "-o", o, obj, ...libs], { cwd: scratch.dir });
  return new Linked(o, map, obj, mode);
}
