// Regenerates the opcode-validity tables of the x86-64 decoder from GNU objdump's
// opinion (the generated part of assembly/x86/tables.ts, between the BEGIN/END
// GENERATED markers). Development tool, not run by the build or the tests:
//   node scripts/x86-tables.mjs            prints the tables
//   node scripts/x86-tables.mjs --write    rewrites assembly/x86/tables.ts in place
//
// Method: every opcode of every map is assembled with each mandatory prefix (none,
// 66, F3, F2 for the legacy maps; VEX/EVEX/XOP.pp for the others), a memory ModRM
// for each ModRM.reg and every register ModRM (C0..FF), each at its own symbol so
// objdump resynchronises; what objdump does not print as "(bad)" is valid, and its
// length gives the ModRM and immediate format. VEX/EVEX/XOP validity is the union
// over L, W, vvvv and EVEX.aaa (the decoder does not check those fields: they never
// change an instruction's length). The one-byte map's formats are written by hand in
// tables.ts; only its ModRM.reg groups come from here.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const h2 = (n) => n.toString(16).padStart(2, "0");
const dir = mkdtempSync(join(tmpdir(), "x86-tables-"));

/** First instruction objdump decodes at each candidate: {len, bad}. */
function objdumpFirst(cands) {
  let s = ".text\n";
  cands.forEach((c, i) => {
    s += `c${i}:\n.byte ${c.match(/../g).map((x) => "0x" + x).join(",")}\n.fill 16,1,0\n`;
  });
  writeFileSync(join(dir, "c.s"), s);
  execFileSync("as", ["-o", join(dir, "c.o"), join(dir, "c.s")]);
  // objdump only labels global symbols in a relocatable object: make them all global.
  execFileSync("objcopy", ["--globalize-symbol=*", join(dir, "c.o")]);
  const out = execFileSync("objdump", ["-d", "-z", "-w", "--insn-width=16", join(dir, "c.o")], { maxBuffer: 1 << 30 }).toString();
  const res = new Array(cands.length);
  let cur = -1;
  for (const line of out.split("\n")) {
    if (line.endsWith(">:")) {
      const m = /<c(\d+)>:$/.exec(line);
      cur = m ? +m[1] : -1;
      continue;
    }
    if (cur < 0) continue;
    const m = /^\s*[0-9a-f]+:\t([0-9a-f ]+)\t(.*)$/.exec(line);
    if (m) {
      res[cur] = { len: m[1].trim().split(" ").length, bad: m[2].includes("(bad)") };
      cur = -1;
    }
  }
  return res;
}

const CLASSES = ["", "66", "f3", "f2"]; // mandatory prefix classes, in table order
// Memory operand: ModRM rm=100 + SIB 0x20 (base rax, index 100: none, or xmm4 for VSIB).
const memModrm = (reg) => h2((reg << 3) | 4) + "20";

/**
 * Probes one map. `enc(cls, op, variant)` returns the hex bytes before the ModRM;
 * `variants` lists the encodings of the fields that do not change the length.
 * Returns per opcode: {mem[4], reg[4] (BigInt), imm (bytes), modrm (bool), fmtConflict}.
 */
function probe(name, ops, enc, variants, fullReg, fullRegOps = []) {
  const cands = [];
  const meta = [];
  for (const op of ops)
    for (let cls = 0; cls < 4; cls++)
      for (const v of variants) {
        const pre = enc(cls, op, v);
        const full = fullReg || fullRegOps.includes(op);
        for (let reg = 0; reg < 8; reg++) {
          cands.push(pre + memModrm(reg) + "00000000");
          meta.push([op, cls, pre.length / 2, "m", reg]);
        }
        for (let x = 0; x < 64; x++) {
          if (!full && (x & 7) !== 0) continue;
          cands.push(pre + h2(0xc0 | x) + "00000000");
          meta.push([op, cls, pre.length / 2, "r", x, full]);
        }
      }
  const res = objdumpFirst(cands);
  const out = new Map();
  res.forEach((r, i) => {
    const [op, cls, plen, k, x, full] = meta[i];
    let o = out.get(op);
    if (!o) out.set(op, (o = { mem: [0, 0, 0, 0], reg: [0n, 0n, 0n, 0n], fmt: new Set() }));
    if (!r || r.bad) return;
    const extra = r.len - plen; // 0: no ModRM; else ModRM (+SIB) + immediate
    if (k === "m") {
      o.mem[cls] |= 1 << x;
      o.fmt.add(extra === 0 ? "n" : "m" + (extra - 2));
    } else {
      if (full) o.reg[cls] |= 1n << BigInt(x);
      else o.reg[cls] |= 0xffn << BigInt(x); // reg-level granularity: all rm values
      o.fmt.add(extra === 0 ? "n" : "m" + (extra - 1));
    }
  });
  for (const [op, o] of out) {
    if (o.fmt.size > 1) console.error(`${name} ${h2(op)}: formats disagree: ${[...o.fmt].join(",")}`);
  }
  return out;
}

const ALL = [...Array(256).keys()];
const FULL = (1n << 64n) - 1n;

function fmtChar(o, immOk = [0, 1]) {
  if (!o || o.fmt.size === 0) return ".";
  const f = [...o.fmt][0];
  if (f === "n") return "n";
  const imm = +f.slice(1);
  if (imm === 0) return "m";
  if (imm === 1) return "B";
  if (imm === 4) return "Z";
  return "?" + imm;
}

function groupsOf(map, probed, fmtOverride) {
  const groups = [];
  for (const [op, o] of probed) {
    if (o.fmt.size === 0) continue;
    if ([...o.fmt][0] === "n") {
      // No ModRM: only the mandatory prefix can make it invalid.
      if (o.mem.every((m) => m !== 0)) continue;
      o.mem = o.mem.map((m) => (m ? 0xff : 0));
      o.reg = o.reg.map((r) => (r ? FULL : 0n));
    }
    const full = o.mem.every((m) => m === 0xff) && o.reg.every((r) => r === FULL);
    if (full) continue;
    groups.push([map, op, o]);
  }
  return groups;
}

// ---- legacy maps 0F, 0F38, 0F3A -------------------------------------------------
const esc = { 1: "0f", 2: "0f38", 3: "0f3a" };
const legacy = {};
for (const m of [1, 2, 3]) {
  const ops = ALL.filter((op) => !(m === 1 && (op === 0x0f || op === 0x38 || op === 0x3a)));
  legacy[m] = probe("map" + esc[m], ops, (cls, op) => CLASSES[cls] + esc[m] + h2(op), [null], true);
}
// ---- one-byte map groups (formats are hand-written) -----------------------------
const oneByteGroupOps = [0x8d, 0x8f, 0xc6, 0xc7, 0xfe, 0xff, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf];
const oneImm = { 0xc6: "00", 0xc7: "00000000" };
const one = probe("map1byte", oneByteGroupOps, (cls, op) => h2(op), [null], true);
// (one-byte groups do not depend on a mandatory prefix: the probe sets all classes alike)

// ---- VEX maps 1..3: C4 RXBmmmmm WvvvvLpp -----------------------------------------
const vex = {};
for (const m of [1, 2, 3]) {
  const variants = [];
  for (const W of [0, 1]) for (const L of [0, 1]) for (const vvvv of [0xf, 0xe]) variants.push({ W, L, vvvv });
  // AMX (map 2, 49: tilerelease, tilezero) is valid for some ModRM.rm values only.
  vex[m] = probe("vex" + m, ALL, (cls, op, v) => "c4" + h2(0xe0 | m) + h2((v.W << 7) | (v.vvvv << 3) | (v.L << 2) | cls) + h2(op), variants, false, m === 2 ? [0x49] : []);
}
// ---- EVEX maps 1,2,3,5,6: 62 RXBR'0mmm Wvvvv1pp zL'LbV'aaa -----------------------
const evex = {};
for (const m of [1, 2, 3, 5, 6]) {
  const variants = [];
  for (const W of [0, 1]) for (const LL of [0, 2]) for (const [vvvv, aaa] of [[0xf, 0], [0xe, 1], [0xf, 1]]) variants.push({ W, LL, vvvv, aaa });
  evex[m] = probe("evex" + m, ALL, (cls, op, v) => "62" + h2(0xf0 | m) + h2((v.W << 7) | (v.vvvv << 3) | 4 | cls) + h2((v.LL << 5) | 8 | v.aaa) + h2(op), variants, false);
}
// ---- XOP maps 8, 9, A: 8F RXBmmmmm WvvvvLpp ---------------------------------------
const xop = {};
for (const m of [8, 9, 10]) {
  const variants = [];
  for (const W of [0, 1]) for (const L of [0, 1]) variants.push({ W, L, vvvv: 0xf });
  xop[m] = probe("xop" + m, ALL, (cls, op, v) => "8f" + h2(0xe0 | m) + h2((v.W << 7) | (v.vvvv << 3) | (v.L << 2) | cls) + h2(op), variants, false);
}
rmSync(dir, { recursive: true });

// ---- output ----------------------------------------------------------------------
function fmtString(name, probed, override = {}) {
  let s = `export const ${name}: string =\n`;
  const rows = [];
  for (let r = 0; r < 16; r++) {
    let row = "";
    for (let c = 0; c < 16; c++) {
      const op = r * 16 + c;
      row += override[op] ?? fmtChar(probed.get(op));
    }
    rows.push(`  "${row}" + // ${h2(r * 16)}`);
  }
  rows[15] = rows[15].replace(" + //", "; //");
  return s + rows.join("\n") + "\n";
}

const MAPS = { 0: "1-byte", 1: "0F", 2: "0F38", 3: "0F3A", 0x11: "VEX 0F", 0x12: "VEX 0F38", 0x13: "VEX 0F3A",
  0x21: "EVEX 0F", 0x22: "EVEX 0F38", 0x23: "EVEX 0F3A", 0x25: "EVEX map 5", 0x26: "EVEX map 6",
  0x38: "XOP 8", 0x39: "XOP 9", 0x3a: "XOP A" };
const records = new Map(); // record text -> index
const recordRows = [];
const indexRows = [];
function addGroups(mapId, probed) {
  const line = [];
  for (const [, op, o] of groupsOf(mapId, probed)) {
    const cells = [];
    for (let cls = 0; cls < 4; cls++) cells.push(`0x${h2(o.mem[cls])}, 0x${o.reg[cls].toString(16).padStart(16, "0")}`);
    const rec = cells.join(", ");
    let idx = records.get(rec);
    if (idx === undefined) {
      idx = records.size;
      records.set(rec, idx);
      recordRows.push(`  ${rec}, // ${idx}`);
    }
    line.push(`0x${(((mapId << 8) | op) << 16 | idx).toString(16).padStart(8, "0")}`);
  }
  for (let i = 0; i < line.length; i += 6) indexRows.push(`  ${line.slice(i, i + 6).join(", ")},${i === 0 ? " // " + MAPS[mapId] : ""}`);
}
// one-byte: the same masks for every class (probe already ran all four)
addGroups(0, one);
addGroups(1, legacy[1]); addGroups(2, legacy[2]); addGroups(3, legacy[3]);
for (const m of [1, 2, 3]) addGroups(0x10 | m, vex[m]);
for (const m of [1, 2, 3, 5, 6]) addGroups(0x20 | m, evex[m]);
for (const m of [8, 9, 10]) addGroups(0x30 | m, xop[m]);

// Formats of 0F that objdump cannot show (escapes) or that the decoder treats specially.
const over0F = { 0x0f: ".", 0x38: "S", 0x3a: "S", 0x20: "r", 0x21: "r", 0x22: "r", 0x23: "r", 0x78: "Q" };
for (let op = 0x80; op < 0x90; op++) over0F[op] = "J";
let text = "// BEGIN GENERATED by scripts/x86-tables.mjs (objdump " +
  execFileSync("objdump", ["--version"]).toString().split("\n")[0].replace(/^.* /, "") + ")\n";
text += fmtString("FMT_0F", legacy[1], over0F);
text += fmtString("FMT_0F38", legacy[2]);
text += fmtString("FMT_0F3A", legacy[3]);
for (const m of [1, 2, 3]) text += fmtString(`FMT_VEX${m}`, vex[m]);
for (const m of [1, 2, 3, 5, 6]) text += fmtString(`FMT_EVEX${m}`, evex[m]);
for (const m of [8, 9, 10]) text += fmtString(`FMT_XOP${m.toString(16).toUpperCase()}`, xop[m]);
text += "\n// Validity records: for each mandatory prefix class (none, 66, F3, F2), the\n";
text += "// ModRM.reg values valid with a memory operand (bit n: reg n) and the register\n";
text += "// ModRM bytes valid (bit n: ModRM 0xC0 + n). An opcode without ModRM is valid\n";
text += "// in a class whose memory mask is nonzero.\n";
text += "export const GROUP_RECORDS: StaticArray<u64> = [\n" + recordRows.join("\n") + "\n];\n";
text += "// Opcodes whose validity depends on ModRM or the mandatory prefix:\n";
text += "// (map << 8 | opcode) << 16 | record. Maps: 00 one-byte, 01 0F, 02 0F38, 03 0F3A,\n";
text += "// 1m VEX map m, 2m EVEX map m, 38..3A XOP maps 8..A.\n";
text += "export const GROUP_INDEX: StaticArray<u32> = [\n" + indexRows.join("\n") + "\n];\n";
text += "// END GENERATED\n";

if (process.argv.includes("--write")) {
  const path = new URL("../assembly/x86/tables.ts", import.meta.url);
  const src = readFileSync(path, "utf8");
  const a = src.indexOf("// BEGIN GENERATED");
  const b = src.indexOf("// END GENERATED\n");
  if (a < 0 || b < 0) throw new Error("tables.ts: GENERATED markers not found");
  writeFileSync(path, src.slice(0, a) + text + src.slice(b + "// END GENERATED\n".length));
} else {
  process.stdout.write(text);
}
