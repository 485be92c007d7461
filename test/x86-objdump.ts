// objdump as the oracle of the x86 decoder: runs `objdump -d` once over a file and
// parses its instructions into flat arrays, and reads the function symbols and the
// sections with readelf. Shared by test/x86-*.test.ts and bench/core/x86.ts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { X86 } from "../src/core/x86.js";

export interface ObjdumpListing {
  /** Instruction addresses, in output order. */
  addr: number[];
  len: number[];
  /** Direct branch target (jmp/jcc/call/loop/jrcxz/xbegin), -1 when none. */
  branch: number[];
  /** RIP-relative address from objdump's `# addr` comment, -1 when none. */
  rip: number[];
  /** Instruction text (mnemonic and operands). */
  text: string[];
  /** address -> index of the instruction objdump decoded there. */
  at: Map<number, number>;
  /** Addresses where objdump restarts decoding (a symbol starts there). */
  symbolStarts: Set<number>;
}

const PREFIX_WORDS = /^(?:(?:bnd|notrack|data16|addr32|rex(?:\.\w+)?|cs|ds|es|ss|fs|gs|lock|rep|repz|repnz|repe|repne|\{\w+\})\s+)*/;
const BRANCH = /^(j\w+(?:,p[nt])?|call\w*|loop\w*|xbegin\w*)\s+([0-9a-f]+)(?:\s|$)/;

/** Parses `objdump -d -w -z --insn-width=15` output. */
export function parseObjdump(out: string): ObjdumpListing {
  const L: ObjdumpListing = { addr: [], len: [], branch: [], rip: [], text: [], at: new Map(), symbolStarts: new Set() };
  let pos = 0;
  while (pos < out.length) {
    let nl = out.indexOf("\n", pos);
    if (nl < 0) nl = out.length;
    const line = out.slice(pos, nl);
    pos = nl + 1;
    if (line.length === 0) continue;
    if (line.charCodeAt(0) !== 32) {
      // "0000000000026010 <name>:"
      const sp = line.indexOf(" <");
      if (sp > 0 && line.endsWith(">:")) L.symbolStarts.add(parseInt(line.slice(0, sp), 16));
      continue;
    }
    const t1 = line.indexOf(":\t");
    if (t1 < 0) continue;
    const t2 = line.indexOf("\t", t1 + 2);
    if (t2 < 0) continue; // a data dump (an object symbol in code): bytes and their ASCII, no instruction
    const bytes = line.slice(t1 + 2, t2).trim();
    if (bytes.length === 0) continue;
    const a = parseInt(line.slice(0, t1), 16);
    const text = line.slice(t2 + 1).trim();
    const n = (bytes.length + 1) / 3;
    let branch = -1;
    let rip = -1;
    const body = text.replace(PREFIX_WORDS, "");
    const m = BRANCH.exec(body);
    if (m) branch = parseInt(m[2], 16);
    if (text.includes("(%rip)") || text.includes("(%eip)")) {
      const c = text.lastIndexOf("# ");
      if (c >= 0) rip = parseInt(text.slice(c + 2), 16);
    }
    L.at.set(a, L.addr.length);
    L.addr.push(a);
    L.len.push(n);
    L.branch.push(branch);
    L.rip.push(rip);
    L.text.push(text);
  }
  return L;
}

export function runObjdump(file: string, extraArgs: string[] = []): ObjdumpListing {
  const out = execFileSync("objdump", ["-d", "-w", "-z", "--insn-width=15", ...extraArgs, file], {
    maxBuffer: 1 << 30,
  }).toString("latin1");
  return parseObjdump(out);
}

export interface ElfSection {
  name: string;
  addr: number;
  offset: number;
  size: number;
  exec: boolean;
  nobits: boolean;
}

export interface ElfFunction {
  name: string;
  addr: number;
  size: number;
}

export function readSections(file: string): ElfSection[] {
  const out = execFileSync("readelf", ["-W", "-S", file]).toString();
  const res: ElfSection[] = [];
  for (const line of out.split("\n")) {
    const m = /^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+([A-Za-z]*)\s/.exec(line);
    if (!m) continue;
    res.push({
      name: m[1],
      addr: parseInt(m[3], 16),
      offset: parseInt(m[4], 16),
      size: parseInt(m[5], 16),
      exec: m[6].includes("X"),
      nobits: m[2] === "NOBITS",
    });
  }
  return res;
}

/** FUNC (and IFUNC) symbols with a nonzero size from .symtab, or .dynsym when there is none. One per address (the largest). */
export function readFunctions(file: string): ElfFunction[] {
  let out = execFileSync("readelf", ["-W", "--syms", file], { maxBuffer: 1 << 28 }).toString();
  const symtab = out.indexOf("Symbol table '.symtab'");
  out = symtab >= 0 ? out.slice(symtab) : out;
  const byAddr = new Map<number, ElfFunction>();
  for (const line of out.split("\n")) {
    const f = line.trim().split(/\s+/);
    // Num: Value Size Type Bind Vis Ndx Name
    if (f.length < 8 || (f[3] !== "FUNC" && f[3] !== "IFUNC") || f[6] === "UND" || f[6] === "ABS") continue;
    const size = f[2].startsWith("0x") ? parseInt(f[2], 16) : parseInt(f[2], 10);
    if (!(size > 0)) continue;
    const addr = parseInt(f[1], 16);
    const prev = byAddr.get(addr);
    if (!prev || prev.size < size) byAddr.set(addr, { name: f[7], addr, size });
  }
  return [...byAddr.values()].sort((a, b) => a.addr - b.addr);
}

/** The file bytes of the section holding [addr, addr+size), with the section's address. */
export function sectionOf(file: Uint8Array, sections: ElfSection[], addr: number, size: number): { bytes: Uint8Array; addr: number } | undefined {
  for (const s of sections) {
    if (s.nobits || s.addr === 0) continue;
    if (addr >= s.addr && addr + size <= s.addr + s.size) return { bytes: file.subarray(s.offset, s.offset + s.size), addr: s.addr };
  }
  return undefined;
}

export function readFile(file: string): Uint8Array {
  return new Uint8Array(readFileSync(file));
}

// ---- comparison of the decoder with objdump ---------------------------------------


export interface Mismatch {
  fn: string;
  addr: number;
  ours: string;
  objdump: string;
}

export interface Agreement {
  functions: number;
  instructions: number;
  branches: number;
  ripRel: number;
  ambiguous: number;
  /** fwait (9B) + x87 instruction: one instruction for objdump, two for the CPU and us. */
  fwaitMerged: number;
  mismatches: Mismatch[];
}

const hex = (n: number) => n.toString(16);

/**
 * Decodes every function linearly from its start (as objdump does from each symbol)
 * and compares each instruction's length, branch target and RIP-relative address
 * with objdump's. 0x66 near branches (AMBIGUOUS_ENCODING) are counted apart and
 * skipped with objdump's length; anything else that differs is a mismatch (at most
 * one per function: after a difference the two decodings are no longer aligned).
 */
export function compareWithObjdump(x86: X86, file: Uint8Array, sections: ElfSection[], fns: ElfFunction[], L: ObjdumpListing): Agreement {
  const e = x86.raw;
  const core = x86.core;
  const res: Agreement = { functions: 0, instructions: 0, branches: 0, ripRel: 0, ambiguous: 0, fwaitMerged: 0, mismatches: [] };
  const CAP = 1 << 16;
  const out = e.alloc(CAP * 16);
  const loaded = new Map<number, { ptr: number; len: number; addr: number }>();
  try {
    for (const f of fns) {
      const sec = sectionOf(file, sections, f.addr, f.size);
      if (!sec) continue;
      let s = loaded.get(sec.addr);
      if (!s) {
        const ptr = e.alloc(sec.bytes.length);
        core.bytes.set(sec.bytes, ptr);
        s = { ptr, len: sec.bytes.length, addr: sec.addr };
        loaded.set(sec.addr, s);
      }
      res.functions++;
      const bad = (addr: number, ours: string) => {
        const i = L.at.get(addr);
        res.mismatches.push({ fn: f.name, addr, ours, objdump: i === undefined ? "(no instruction here)" : `len ${L.len[i]}: ${L.text[i]}` });
      };
      let off = f.addr - s.addr;
      const end = off + f.size;
      // objdump prints fwait (9B) and the x87 instruction after it as one instruction
      // ("fstsw" is 9B DF E0); the CPU runs 9B on its own, and so do we: the pair must
      // match objdump's one instruction.
      let fwaitAt = -1;
      fn: while (off < end) {
        const n = e.x86_decode_range(s.ptr, s.len, off, end, BigInt(s.addr), out, CAP, 0);
        const v = core.view;
        for (let k = 0; k < n; k++) {
          const r = out + k * 16;
          const o = v.getUint32(r + 8, true);
          const a = s.addr + o;
          const status = v.getUint8(r + 15);
          const i = L.at.get(a);
          if (status !== 0) {
            const code = 399 + status;
            if (code === 402 && i !== undefined && L.branch[i] >= 0) {
              // objdump follows AMD: a rel16 branch
              res.ambiguous++;
              off = o + L.len[i];
              continue fn;
            }
            bad(a, `error ${code}: ${core.lastError().message}`);
            break fn;
          }
          const len = v.getUint8(r + 12);
          const kind = v.getUint8(r + 13);
          const flags = v.getUint8(r + 14);
          const target = Number(v.getBigUint64(r, true));
          if (fwaitAt >= 0) {
            const j = L.at.get(fwaitAt)!;
            fwaitAt = -1;
            if (a !== L.addr[j] + 1 || L.len[j] !== len + 1) { bad(a, `len ${len} after fwait`); break fn; }
            res.fwaitMerged++;
            res.instructions++;
            continue;
          }
          if (i !== undefined && len === 1 && L.len[i] > 1 && core.bytes[s.ptr + o] === 0x9b) {
            fwaitAt = a;
            continue;
          }
          if (i === undefined) { bad(a, `len ${len}`); break fn; }
          if (L.len[i] !== len) { bad(a, `len ${len}`); break fn; }
          const rel = kind === 1 || kind === 2 || kind === 3;
          if (rel !== (L.branch[i] >= 0) || (rel && target !== L.branch[i])) {
            bad(a, rel ? `branch to ${hex(target)}` : "no direct branch");
            break fn;
          }
          const rip = (flags & 1) !== 0;
          if (rip !== (L.rip[i] >= 0) || (rip && target !== L.rip[i])) {
            bad(a, rip ? `rip-relative ${hex(target)}` : "not rip-relative");
            break fn;
          }
          res.instructions++;
          if (rel) res.branches++;
          if (rip) res.ripRel++;
        }
        const next = Number(e.x86_range_next());
        if (next <= off) break;
        off = next;
      }
    }
  } finally {
    e.free(out);
    for (const s of loaded.values()) e.free(s.ptr);
  }
  return res;
}

/**
 * The whole of each executable section, decoded as objdump does: linearly from each
 * symbol start to the next (the pieces between functions included).
 */
export function objdumpPieces(sections: ElfSection[], L: ObjdumpListing): ElfFunction[] {
  const pieces: ElfFunction[] = [];
  const starts = [...L.symbolStarts].sort((a, b) => a - b);
  for (const s of sections) {
    if (!s.exec || s.nobits) continue;
    const cuts = [s.addr, ...starts.filter((a) => a > s.addr && a < s.addr + s.size), s.addr + s.size];
    for (let k = 0; k + 1 < cuts.length; k++) {
      if (cuts[k + 1] > cuts[k]) pieces.push({ name: `${s.name}+0x${hex(cuts[k] - s.addr)}`, addr: cuts[k], size: cuts[k + 1] - cuts[k] });
    }
  }
  return pieces;
}

// ---- objdump on single instructions -------------------------------------------------


/** Candidates per objdump run (and per layout: the decoder must see the same neighbours). */
export const OBJDUMP_BATCH = 40000;

export interface FirstInsn {
  len: number;
  text: string;
  bad: boolean;
}

/**
 * What objdump decodes at the start of each byte string (hex): each one is assembled
 * at its own global symbol, followed by zero bytes, so objdump starts afresh on it.
 */
export function objdumpFirst(cands: string[]): FirstInsn[] {
  const res: FirstInsn[] = [];
  // In batches: objdump's output for a batch stays well below the longest JS string.
  // Each candidate must carry its own tail bytes (objdump reads past a short one into the next).: objdump's output for a batch stays well below the longest JS string
  for (let i = 0; i < cands.length; i += OBJDUMP_BATCH) res.push(...objdumpFirstBatch(cands.slice(i, i + OBJDUMP_BATCH)));
  return res;
}

function objdumpFirstBatch(cands: string[]): FirstInsn[] {
  const dir = mkdtempSync(join(tmpdir(), "patchc-x86-"));
  try {
    writeFileSync(join(dir, "c.o"), relocatableWithSymbols(cands.map((c) => Uint8Array.from(c.match(/../g)!.map((x) => parseInt(x, 16))))));
    const out = execFileSync("objdump", ["-d", "-z", "-w", "--insn-width=16", join(dir, "c.o")], { maxBuffer: 1 << 30 }).toString("latin1");
    const res: FirstInsn[] = new Array(cands.length);
    let cur = -1;
    let pos = 0;
    while (pos < out.length) {
      let nl = out.indexOf("\n", pos);
      if (nl < 0) nl = out.length;
      const line = out.slice(pos, nl);
      pos = nl + 1;
      if (line.endsWith(">:")) {
        const m = /<c(\d+)>:$/.exec(line);
        cur = m ? +m[1] : -1;
        continue;
      }
      if (cur < 0) continue;
      const m = /^\s*[0-9a-f]+:\t([0-9a-f ]+)\t(.*)$/.exec(line);
      if (m) {
        const text = m[2].trim();
        // "(bad)" anywhere: an undefined opcode, or an operand objdump rejects (the
        // length it prints is then not to be trusted either).
        res[cur] = { len: m[1].trim().split(" ").length, text, bad: text.includes("(bad)") };
        cur = -1;
      }
    }
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A minimal ELF64 relocatable object: .text holding the pieces back to back, and a
 * global symbol c<i> at each (what `as` would make of them, without its cost).
 *
 *   ELF header | .text | .symtab (24-byte Elf64_Sym) | .strtab | .shstrtab | section headers
 */
export function relocatableWithSymbols(pieces: Uint8Array[]): Uint8Array {
  const textSize = pieces.reduce((n, p) => n + p.length, 0);
  const names: number[] = [];
  let strtab = "\0";
  pieces.forEach((_, i) => {
    names.push(strtab.length);
    strtab += `c${i}\0`;
  });
  const shstr = "\0.text\0.symtab\0.strtab\0.shstrtab\0";
  const align8 = (n: number) => (n + 7) & ~7;
  const textOff = 64;
  const symOff = align8(textOff + textSize);
  const symSize = (pieces.length + 1) * 24;
  const strOff = symOff + symSize;
  const shstrOff = strOff + strtab.length;
  const shOff = align8(shstrOff + shstr.length);
  const buf = new Uint8Array(shOff + 5 * 64);
  const v = new DataView(buf.buffer);
  buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0); // ELFCLASS64, little-endian, version 1
  v.setUint16(16, 1, true); // ET_REL
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true);
  v.setBigUint64(40, BigInt(shOff), true);
  v.setUint16(52, 64, true); // e_ehsize
  v.setUint16(58, 64, true); // e_shentsize
  v.setUint16(60, 5, true); // e_shnum
  v.setUint16(62, 4, true); // e_shstrndx
  let o = textOff;
  const at: number[] = [];
  for (const p of pieces) {
    at.push(o - textOff);
    buf.set(p, o);
    o += p.length;
  }
  pieces.forEach((_, i) => {
    const s = symOff + (i + 1) * 24;
    v.setUint32(s, names[i], true);
    buf[s + 4] = 0x12; // STB_GLOBAL, STT_FUNC
    v.setUint16(s + 6, 1, true); // .text
    v.setBigUint64(s + 8, BigInt(at[i]), true);
  });
  for (let i = 0; i < strtab.length; i++) buf[strOff + i] = strtab.charCodeAt(i);
  for (let i = 0; i < shstr.length; i++) buf[shstrOff + i] = shstr.charCodeAt(i);
  const sh = (i: number, name: number, type: number, flags: number, off: number, size: number, link: number, info: number, align: number, entsize: number) => {
    const b = shOff + i * 64;
    v.setUint32(b, name, true);
    v.setUint32(b + 4, type, true);
    v.setBigUint64(b + 8, BigInt(flags), true);
    v.setBigUint64(b + 24, BigInt(off), true);
    v.setBigUint64(b + 32, BigInt(size), true);
    v.setUint32(b + 40, link, true);
    v.setUint32(b + 44, info, true);
    v.setBigUint64(b + 48, BigInt(align), true);
    v.setBigUint64(b + 56, BigInt(entsize), true);
  };
  sh(1, 1, 1, 6, textOff, textSize, 0, 0, 1, 0); // .text: PROGBITS, AX
  sh(2, 7, 2, 0, symOff, symSize, 3, 1, 8, 24); // .symtab: link .strtab, first global 1
  sh(3, 15, 3, 0, strOff, strtab.length, 0, 0, 1, 0); // .strtab
  sh(4, 23, 3, 0, shstrOff, shstr.length, 0, 0, 1, 0); // .shstrtab
  return buf;
}
