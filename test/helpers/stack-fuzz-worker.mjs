// Fuzz worker of test/stack-fuzz.test.ts (plain JavaScript: it runs in a worker
// thread, which the test can terminate when a case hangs). It drives core.wasm
// through its raw ABI, every input placed so that it ends at the end of linear
// memory: a read past an input traps instead of silently reading other data.
//
// workerData: { wasm: path, seed, cases, ehFrame, ehAddr, hdr, hdrAddr, vdso, vdsoBase }
// shared Int32Array progress: [0] = index of the case running, [1] = 1 when done.
import { parentPort, workerData } from "node:worker_threads";
import { readFileSync } from "node:fs";

const { wasm, seed, cases, progress } = workerData;
const prog = new Int32Array(progress);
const module = new WebAssembly.Module(readFileSync(wasm));

let inst, ex, mem;
function fresh() {
  inst = new WebAssembly.Instance(module, {
    env: { abort: () => { throw new Error("core.wasm aborted"); } },
  });
  ex = inst.exports;
  mem = ex.memory;
  tailPages = 0;
  tailStart = 0;
}

// Pages grown by the host at the end of memory are never handed to the core's
// allocator (it only adds the pages it grows itself), so they are ours.
let tailPages = 0;
let tailStart = 0;
/** Copies `bytes` so that they end exactly at the end of memory; returns the pointer. */
function atEnd(bytes) {
  const pagesNeeded = Math.ceil((bytes.length + 1) / 65536);
  const size = mem.buffer.byteLength;
  if (tailPages < pagesNeeded || tailStart + tailPages * 65536 !== size) {
    const before = mem.grow(pagesNeeded);
    tailStart = before * 65536;
    tailPages = pagesNeeded;
  }
  const end = mem.buffer.byteLength;
  const p = end - bytes.length;
  new Uint8Array(mem.buffer).set(bytes, p);
  return p;
}

// xorshift128+ (deterministic per case)
let s0 = 0n, s1 = 0n;
const M64 = (1n << 64n) - 1n;
function seedRng(x) {
  s0 = (BigInt(x) * 0x9e3779b97f4a7c15n + 1n) & M64;
  s1 = (s0 ^ 0xdeadbeefcafebaben) & M64;
  for (let i = 0; i < 4; i++) next64();
}
function next64() {
  let a = s0, b = s1;
  s0 = b;
  a ^= (a << 23n) & M64;
  s1 = a ^ b ^ (a >> 17n) ^ (b >> 26n);
  return (s1 + b) & M64;
}
const rnd = (n) => Number(next64() % BigInt(n));
const chance = (p) => rnd(1000) < p * 1000;
function randBytes(n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rnd(256);
  return b;
}

// ---------------------------------------------------------------------------
// Generators

const eh = new Uint8Array(workerData.ehFrame);
const ehAddr = BigInt(workerData.ehAddr);
const hdr = new Uint8Array(workerData.hdr);
const hdrAddr = BigInt(workerData.hdrAddr);
const vdso = workerData.vdso ? new Uint8Array(workerData.vdso) : null;
const vdsoBase = workerData.vdso ? BigInt(workerData.vdsoBase) : 0n;

class W {
  constructor() { this.b = []; }
  u8(v) { this.b.push(v & 0xff); return this; }
  u16(v) { return this.u8(v).u8(v >> 8); }
  u32(v) { return this.u16(v & 0xffff).u16((v >>> 16) & 0xffff); }
  u64(v) { v = BigInt.asUintN(64, BigInt(v)); return this.u32(Number(v & 0xffffffffn)).u32(Number(v >> 32n)); }
  uleb(v) { v = BigInt.asUintN(64, BigInt(v)); do { let c = Number(v & 0x7fn); v >>= 7n; if (v) c |= 0x80; this.u8(c); } while (v); return this; }
  sleb(v) {
    v = BigInt(v);
    for (;;) {
      const c = Number(v & 0x7fn);
      v >>= 7n;
      if ((v === 0n && !(c & 0x40)) || (v === -1n && c & 0x40)) { this.u8(c); return this; }
      this.u8(c | 0x80);
    }
  }
  bytes(a) { for (const x of a) this.u8(x); return this; }
  get length() { return this.b.length; }
  out() { return Uint8Array.from(this.b); }
}

const ENCODINGS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x09, 0x0a, 0x0b, 0x0c, 0x1b, 0x13, 0x14, 0x1c, 0x3b, 0x50, 0x9b, 0x8b, 0xff, 0x20, 0x40, 0x0d, 0x07];
const AUGS = ["", "zR", "zPLR", "zRS", "zLR", "zPR", "eh", "zR\u0042", "zRX", "zRSB", "x", "zzR"];

function randOffset(w) {
  const k = rnd(6);
  if (k === 0) w.sleb(-(rnd(300)));
  else if (k === 1) w.uleb(rnd(1 << 20));
  else w.uleb(rnd(64));
}
function randReg() { return chance(0.9) ? rnd(17) : rnd(200); }

/** A DWARF expression: mostly valid ops, sometimes garbage. */
function randExpr() {
  const w = new W();
  const n = rnd(8);
  for (let i = 0; i < n; i++) {
    const k = rnd(14);
    if (k < 3) w.u8(0x70 + rnd(17)).sleb(rnd(400) - 200); // bregN
    else if (k === 3) w.u8(0x06); // deref
    else if (k === 4) w.u8(0x94).u8(rnd(10)); // deref_size
    else if (k === 5) w.u8(0x30 + rnd(32)); // litN
    else if (k === 6) w.u8([0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e][rnd(17)]);
    else if (k === 7) w.u8([0x12, 0x13, 0x14, 0x16, 0x17, 0x19, 0x1f, 0x20][rnd(8)]);
    else if (k === 8) w.u8(0x23).uleb(rnd(1000)); // plus_uconst
    else if (k === 9) w.u8(rnd(2) ? 0x2f : 0x28).u16(rnd(2) ? (rnd(20) - 10) & 0xffff : 0xfffd); // skip/bra, incl. loops
    else if (k === 10) w.u8(0x15).u8(rnd(4)); // pick
    else if (k === 11) w.u8([0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x03][rnd(11)]).bytes(randBytes(rnd(9)));
    else if (k === 12) w.u8(0x92).uleb(randReg()).sleb(rnd(100));
    else w.u8(rnd(256));
  }
  return w.out();
}

/** A call frame program: the opcodes gcc emits and all the others, with random operands. */
function randProgram(n) {
  const w = new W();
  for (let i = 0; i < n; i++) {
    const k = rnd(26);
    switch (k) {
      case 0: w.u8(0x40 | rnd(64)); break;
      case 1: w.u8(0x80 | rnd(64)).uleb(rnd(32)); break;
      case 2: w.u8(0xc0 | rnd(64)); break;
      case 3: w.u8(0x0e).uleb(rnd(512)); break;
      case 4: w.u8(0x0c).uleb(randReg()).uleb(rnd(256)); break;
      case 5: w.u8(0x0d).uleb(randReg()); break;
      case 6: w.u8(0x0a); break;
      case 7: w.u8(0x0b); break;
      case 8: { const e = randExpr(); w.u8(0x0f).uleb(chance(0.9) ? e.length : rnd(1000)).bytes(e); break; }
      case 9: { const e = randExpr(); w.u8(chance(0.5) ? 0x10 : 0x16).uleb(randReg()).uleb(chance(0.9) ? e.length : rnd(1000)).bytes(e); break; }
      case 10: w.u8(0x02).u8(rnd(256)); break;
      case 11: w.u8(0x03).u16(rnd(65536)); break;
      case 12: w.u8(0x04).u32(rnd(1 << 30)); break;
      case 13: w.u8(0x05).uleb(randReg()); randOffset(w); break;
      case 14: w.u8(0x06).uleb(randReg()); break;
      case 15: w.u8(0x07).uleb(randReg()); break;
      case 16: w.u8(0x08).uleb(randReg()); break;
      case 17: w.u8(0x09).uleb(randReg()).uleb(randReg()); break;
      case 18: w.u8(0x11).uleb(randReg()).sleb(rnd(64) - 32); break;
      case 19: w.u8(0x12).uleb(randReg()).sleb(rnd(64) - 32); break;
      case 20: w.u8(0x13).sleb(rnd(64) - 32); break;
      case 21: w.u8(0x14 + rnd(2)).uleb(randReg()).sleb(rnd(64) - 32); break;
      case 22: w.u8(0x2e).uleb(rnd(100)); break;
      case 23: w.u8(0x2f).uleb(randReg()).uleb(rnd(32)); break;
      case 24: w.u8(0x01).u32(rnd(1 << 30)).u32(0); break; // set_loc
      default: w.u8(rnd(256)); break;
    }
  }
  return w.out();
}

/** A whole synthetic .eh_frame: CIEs and FDEs with random fields, sometimes 64-bit lengths. */
function randEhFrame(addr) {
  const w = new W();
  const cies = [];
  const nrec = 1 + rnd(12);
  for (let r = 0; r < nrec; r++) {
    const start = w.length;
    const body = new W();
    const isCie = cies.length === 0 || chance(0.2);
    const long = chance(0.05);
    if (isCie) {
      body.u32(0);
      if (long) body.u32(0);
      const version = [1, 3, 4, 1, 1, rnd(256)][rnd(6)];
      body.u8(version);
      const aug = AUGS[rnd(AUGS.length)];
      for (const ch of aug) body.u8(ch.charCodeAt(0));
      body.u8(0);
      if (aug === "eh") body.u64(rnd(1 << 30));
      if (version === 4) body.u8(chance(0.9) ? 8 : rnd(16)).u8(chance(0.9) ? 0 : 1);
      body.uleb(chance(0.9) ? 1 : rnd(16));
      body.sleb(chance(0.9) ? -8 : rnd(32) - 16);
      if (version === 1) body.u8(chance(0.9) ? 16 : rnd(256)); else body.uleb(chance(0.9) ? 16 : rnd(300));
      if (aug.startsWith("z")) {
        const d = new W();
        for (const ch of aug.slice(1)) {
          if (ch === "R" || ch === "L") d.u8(chance(0.8) ? 0x1b : ENCODINGS[rnd(ENCODINGS.length)]);
          if (ch === "P") { const e = chance(0.7) ? 0x9b : ENCODINGS[rnd(ENCODINGS.length)]; d.u8(e).bytes(randBytes(rnd(10))); }
        }
        body.uleb(chance(0.9) ? d.length : rnd(64)).bytes(d.out());
      }
      body.bytes(randProgram(rnd(6)));
      cies.push({ off: start, aug });
    } else {
      const cie = cies[rnd(cies.length)];
      const idField = start + (long ? 12 : 4);
      const ptr = chance(0.95) ? idField - cie.off : rnd(1 << 20);
      if (long) body.u64(ptr); else body.u32(ptr);
      const fieldAddr = addr + BigInt(idField + (long ? 8 : 4));
      const pc = 0x10000n + BigInt(rnd(256)) * 16n; // dense, so that random pcs hit FDEs
      const rel = Number(BigInt.asIntN(32, pc - fieldAddr));
      body.u32(rel); // pc_begin, pcrel sdata4 (garbage for other encodings)
      body.u32(chance(0.9) ? 1 + rnd(4096) : rnd(1 << 31));
      if (cie.aug.startsWith("z")) { const n = chance(0.9) ? 0 : rnd(20); body.uleb(n).bytes(randBytes(n)); }
      body.bytes(randProgram(rnd(40)));
    }
    while (chance(0.7) && (body.length + 4) % 8 !== 0) body.u8(0); // DW_CFA_nop padding
    const len = body.length;
    if (long) w.u32(0xffffffff).u64(len); else w.u32(chance(0.97) ? len : rnd(1 << 20));
    w.bytes(body.out());
  }
  if (chance(0.7)) w.u32(0);
  return w.out();
}

/** A slice of libc's .eh_frame from its start (the CIE) with a few bytes changed. */
function mutatedLibc() {
  const len = 8 + rnd(Math.min(eh.length, 4096));
  const b = eh.slice(0, len);
  const flips = rnd(8);
  for (let i = 0; i < flips; i++) b[rnd(b.length)] = chance(0.5) ? rnd(256) : b[rnd(b.length)] ^ (1 << rnd(8));
  return b;
}

/** A header over libc's .eh_frame: valid fields mostly, the table random. */
function randHdr(addr, ehA) {
  const w = new W();
  w.u8(chance(0.9) ? 1 : rnd(4));
  const pe = chance(0.8) ? 0x1b : ENCODINGS[rnd(ENCODINGS.length)];
  const ce = chance(0.8) ? 0x03 : ENCODINGS[rnd(ENCODINGS.length)];
  const te = chance(0.8) ? 0x3b : ENCODINGS[rnd(ENCODINGS.length)];
  w.u8(pe).u8(ce).u8(te);
  w.u32(Number(BigInt.asIntN(32, ehA - (addr + 4n))));
  const n = rnd(40);
  w.u32(chance(0.9) ? n : rnd(1 << 30));
  let pc = 0;
  for (let i = 0; i < n; i++) {
    pc += chance(0.9) ? rnd(1000) : -rnd(100);
    w.u32(pc).u32(chance(0.8) ? Number(ehA - addr) + rnd(eh.length) : rnd(1 << 31));
  }
  return w.out();
}

// ---------------------------------------------------------------------------
// One case

function u64(v) { return BigInt.asUintN(64, BigInt(v)); }

let modSpan = 1n;
function exercise(reg, id) {
  // verify, module info, rows at pcs around the module
  const out = ex.alloc(512);
  const vc = ex.cfi_module_verify(reg, id, out);
  verifyCodes[vc] = (verifyCodes[vc] ?? 0) + 1;
  if (ex.cfi_module_info(reg, id, out) === 0) {
    const v = new DataView(mem.buffer);
    const lo = v.getBigUint64(out, true), hi = v.getBigUint64(out + 8, true);
    const span = hi > lo ? hi - lo : 1n;
    modSpan = span;
    for (let i = 0; i < 8; i++) ex.cfi_row(reg, u64(lo + (next64() % (span + 16n)) - 8n), out);
  }
  ex.free(out);
}

function scanCase(reg, lo) {
  // random registers, a random stack window at the end of memory
  const scan = ex.stack_scan_new(reg);
  for (let i = 0; i < rnd(4); i++) {
    const a = u64(lo + BigInt(rnd(0x20000)));
    ex.stack_scan_add_forbidden(scan, a, u64(a + BigInt(1 + rnd(500))), i);
  }
  if (chance(0.5)) { const a = u64(lo + BigInt(rnd(0x20000))); ex.stack_scan_add_window(scan, a, a + 5n, 9); }
  const winLen = rnd(2048) & ~7;
  const win = new Uint8Array(winLen);
  const wv = new DataView(win.buffer);
  const stackAddr = 0x7ff000000000n + BigInt(rnd(1 << 20)) * 8n;
  for (let i = 0; i + 8 <= winLen; i += 8) {
    const k = rnd(4);
    const val = k === 0 ? lo + BigInt(rnd(0x20000)) : k === 1 ? stackAddr + BigInt(rnd(4096)) : next64();
    wv.setBigUint64(i, u64(val), true);
  }
  const regs = ex.alloc(216);
  const segs = ex.alloc(80);
  const out = ex.alloc(96);
  const frames = ex.alloc(32 * 64);
  const rv = new DataView(mem.buffer);
  for (let i = 0; i < 27; i++) rv.setBigUint64(regs + 8 * i, next64() & 0x7fffffffffffn, true);
  rv.setBigUint64(regs + 128, u64(lo + (modSpan > 1n && chance(0.8) ? next64() % modSpan : BigInt(rnd(0x20000)))), true); // rip in or near the module
  rv.setBigUint64(regs + 152, u64(stackAddr + BigInt(rnd(64)) * 8n), true); // rsp in the window
  const winPtr = atEnd(win);
  const v = new DataView(mem.buffer);
  const nseg = 1 + rnd(2);
  for (let i = 0; i < nseg; i++) {
    v.setBigUint64(segs + 40 * i, BigInt(winPtr), true);
    v.setBigUint64(segs + 40 * i + 8, BigInt(winLen), true);
    v.setBigUint64(segs + 40 * i + 16, stackAddr + BigInt(i) * 0x100000n, true);
    v.setBigUint64(segs + 40 * i + 24, stackAddr - BigInt(rnd(4096)) + BigInt(i) * 0x100000n, true);
    v.setBigUint64(segs + 40 * i + 32, stackAddr + BigInt(winLen + rnd(3) * 4096) + BigInt(i) * 0x100000n, true);
  }
  const r = ex.stack_scan_thread(scan, regs, segs, nseg, 1 + rnd(7), 1 + rnd(200), frames, rnd(65), out);
  const ov = new DataView(mem.buffer);
  const key = r !== 0 ? `error ${r}` : `status ${ov.getUint32(out, true)} mode ${ov.getUint32(out + 4, true)} fallback ${ov.getInt32(out + 36, true)}${ov.getUint32(out + 8, true) > 1 ? " frames>1" : ""}`;
  scans[key] = (scans[key] ?? 0) + 1;
  ex.free(regs); ex.free(segs); ex.free(out); ex.free(frames);
  ex.stack_scan_free(scan);
}

function add(reg, kind, p, input, addr, hdrBytes) {
  // the header is only read during the call: it lives in ordinary core memory
  let hp = 0;
  if (hdrBytes) { hp = ex.alloc(hdrBytes.length); new Uint8Array(mem.buffer).set(hdrBytes, hp); }
  const id = kind === 5
    ? ex.cfi_registry_add_image(reg, p, input.length, vdso ? vdsoBase : 0x7fff00000000n)
    : ex.cfi_registry_add(reg, p, input.length, addr, hp, hdrBytes ? hdrBytes.length : 0, hdrAddr);
  if (hp) ex.free(hp);
  return id;
}

// Real stacks (the deep.c fixture's threads) over the real modules' CFI, damaged.
const real = workerData.real ?? null;
let realReg = 0;
function realRegistry() {
  if (realReg) return realReg;
  realReg = ex.cfi_registry_new();
  for (const m of real.modules) {
    const p = ex.alloc(m.ehFrame.length);
    new Uint8Array(mem.buffer).set(m.ehFrame, p);
    let hp = 0;
    if (m.hdr) { hp = ex.alloc(m.hdr.length); new Uint8Array(mem.buffer).set(m.hdr, hp); }
    if (!ex.cfi_registry_add(realReg, p, m.ehFrame.length, m.ehAddr, hp, m.hdr ? m.hdr.length : 0, m.hdrAddr)) throw new Error("real module refused");
    if (hp) ex.free(hp);
  }
  if (real.vdso) {
    const p = ex.alloc(real.vdso.image.length);
    new Uint8Array(mem.buffer).set(real.vdso.image, p);
    if (!ex.cfi_registry_add_image(realReg, p, real.vdso.image.length, real.vdso.base)) throw new Error("vdso refused");
  }
  if (real.restorer) ex.cfi_registry_add_sigreturn(realReg, real.restorer);
  return realReg;
}

function realCase() {
  const reg = realRegistry();
  const t = real.threads[rnd(real.threads.length)];
  const scan = ex.stack_scan_new(reg);
  // forbidden ranges around pcs the thread really has, so that hits happen
  const rip = new DataView(t.regs.buffer, t.regs.byteOffset).getBigUint64(128, true);
  if (chance(0.5)) ex.stack_scan_add_forbidden(scan, rip - BigInt(rnd(64)), rip + BigInt(1 + rnd(64)), 1);
  if (chance(0.3)) ex.stack_scan_add_window(scan, rip - BigInt(rnd(3)), rip + 3n, 2);
  const damage = (w, n) => { for (let k = 0; k < n; k++) { const at = rnd(Math.min(w.length, chance(0.8) ? 4096 : w.length) || 1); if (at < w.length) w[at] = chance(0.5) ? rnd(256) : w[at] ^ (1 << rnd(8)); } };
  const segsIn = t.segments.filter(() => chance(0.95));
  const nseg = segsIn.length;
  const segs = ex.alloc(Math.max(40 * nseg, 8));
  const heapWins = [];
  const wins = segsIn.map((sg, i) => {
    let w = sg.window.slice(0, chance(0.3) ? rnd(sg.window.length + 1) & ~7 : sg.window.length);
    damage(w, chance(0.3) ? 0 : rnd(6));
    return w;
  });
  // the first window ends at the end of memory, the others are in ordinary core memory
  const ptrs = wins.map((w, i) => {
    if (i === 0) return -1;
    const p = ex.alloc(Math.max(w.length, 1));
    new Uint8Array(mem.buffer).set(w, p);
    heapWins.push(p);
    return p;
  });
  const regs = ex.alloc(216);
  const out = ex.alloc(96);
  const frames = ex.alloc(32 * 128);
  const r8 = t.regs.slice();
  if (chance(0.2)) { const v = new DataView(r8.buffer); const k = rnd(27); v.setBigUint64(8 * k, v.getBigUint64(8 * k, true) ^ (1n << BigInt(rnd(48))), true); }
  new Uint8Array(mem.buffer).set(r8, regs);
  if (nseg > 0) ptrs[0] = atEnd(wins[0]);
  const v = new DataView(mem.buffer);
  segsIn.forEach((sg, i) => {
    v.setBigUint64(segs + 40 * i, BigInt(ptrs[i]), true);
    v.setBigUint64(segs + 40 * i + 8, BigInt(wins[i].length), true);
    v.setBigUint64(segs + 40 * i + 16, sg.windowAddr, true);
    v.setBigUint64(segs + 40 * i + 24, sg.mapLo, true);
    v.setBigUint64(segs + 40 * i + 32, sg.mapHi, true);
  });
  const flags = [1, 3, 5, 7, 2, 6][rnd(6)];
  const r = ex.stack_scan_thread(scan, regs, segs, nseg, flags, 1 + rnd(300), frames, rnd(129), out);
  const ov = new DataView(mem.buffer);
  const key = r !== 0 ? `real error ${r}` : `real status ${ov.getUint32(out, true)} mode ${ov.getUint32(out + 4, true)} fallback ${ov.getInt32(out + 36, true)}${ov.getUint32(out + 8, true) > 8 ? " frames>8" : ""}`;
  scans[key] = (scans[key] ?? 0) + 1;
  for (const p of heapWins) ex.free(p);
  ex.free(segs); ex.free(regs); ex.free(out); ex.free(frames);
  ex.stack_scan_free(scan);
  return 0;
}

function runCase(i) {
  seedRng(seed * 1000003 + i);
  const kind = i % (real ? 8 : 6);
  if (kind >= 6) return realCase();
  let addr = 0x400000n + BigInt(rnd(1 << 16)) * 16n;
  let input;
  let hdrBytes = null;
  if (kind === 0) input = randBytes(rnd(600));
  else if (kind === 1) { input = mutatedLibc(); addr = ehAddr; }
  else if (kind === 2 || kind === 3) input = randEhFrame(addr);
  else if (kind === 4) { input = eh.slice(0, Math.min(eh.length, 8192)); addr = ehAddr; hdrBytes = chance(0.5) ? randHdr(hdrAddr, ehAddr) : hdr; }
  else input = vdso ? vdso.slice() : randBytes(256);
  if (kind === 5 && vdso) for (let k = rnd(6); k > 0; k--) input[rnd(Math.min(input.length, 4096))] = rnd(256);

  // Phase 1: the (borrowed) input ends at the end of memory: add, verify, rows.
  let reg = ex.cfi_registry_new();
  const id = add(reg, kind, atEnd(input), input, addr, hdrBytes);
  const code = id === 0 ? ex.core_error_code() : 0;
  if (id === 0) {
    // a failed add names its reason
    if (ex.core_error_message_len() === 0) throw new Error(`case ${i}: add failed with code ${code} and no message`);
    ex.cfi_registry_free(reg);
    return code;
  }
  exercise(reg, id);
  const out = ex.alloc(32);
  ex.cfi_module_info(reg, id, out);
  const lo = new DataView(mem.buffer).getBigUint64(out, true);
  ex.free(out);
  ex.cfi_registry_free(reg);

  // Phase 2: the input in ordinary core memory, a stack window at the end of memory: unwind.
  const copy = ex.alloc(Math.max(input.length, 1));
  new Uint8Array(mem.buffer).set(input, copy);
  reg = ex.cfi_registry_new();
  const id2 = add(reg, kind, copy, input, addr, hdrBytes);
  if (id2 === 0) throw new Error(`case ${i}: the same input added again fails (${ex.core_error_code()})`);
  if (chance(0.2)) ex.cfi_registry_add_sigreturn(reg, lo + 16n);
  scanCase(reg, lo);
  ex.cfi_registry_free(reg);
  ex.free(copy);
  return code;
}

fresh();
const codes = {};
const verifyCodes = {};
const scans = {};
const failures = [];
let added = 0;
for (let i = 0; i < cases; i++) {
  Atomics.store(prog, 0, i);
  try {
    const c = runCase(i);
    codes[c] = (codes[c] ?? 0) + 1;
    if (c === 0) added++;
  } catch (e) {
    failures.push({ case: i, seed, kind: i % (real ? 8 : 6), error: String(e && e.stack || e) });
    fresh();
    realReg = 0;
    if (failures.length > 5) break;
  }
}
Atomics.store(prog, 1, 1);
parentPort.postMessage({ codes, verifyCodes, scans, failures, added });
