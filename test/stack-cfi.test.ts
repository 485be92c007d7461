// The CFI parser and the CFA program interpreter against readelf: for every FDE
// of real objects (libc, ld.so, libstdc++ with its personality/LSDA augmentation,
// node's 50000 FDEs, the vDSO read from this process's memory), every row
// `readelf --debug-dump=frames-interp` prints must be the row the core computes
// for that location: same FDE, same CFA rule, same rule for every register.
import { describe, expect, it } from "vitest";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeCore } from "../src/node/core-file.js";
import { CfiRegistry } from "../src/core/stack.js";
import { compare, readelfFrames } from "./helpers/cfi-oracle.js";
import { fileCfi, parseMaps } from "./helpers/stack.js";

const LIBS = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib64/ld-linux-x86-64.so.2",
  "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
].filter(existsSync);

describe("CFI rows match readelf --debug-dump=frames-interp", () => {
  for (const lib of LIBS) {
    it(`${lib}, through .eh_frame_hdr and through a scan of .eh_frame`, () => {
      const core = nodeCore();
      const cfi = fileCfi(lib)!;
      const fdes = readelfFrames(lib);
      expect(fdes.length).toBeGreaterThan(100);
      const bias = 0x7f0000000000n; // as if loaded there
      const withHdr = new CfiRegistry(core);
      const a = withHdr.addModule(cfi.ehFrame, cfi.ehAddr + bias, cfi.hdr, cfi.hdrAddr + bias);
      const r = compare(withHdr, fdes, bias);
      expect(r.rows).toBeGreaterThan(fdes.length);
      const scanned = new CfiRegistry(core);
      const b = scanned.addModule(cfi.ehFrame, cfi.ehAddr + bias);
      compare(scanned, fdes, bias, 7);
      const ia = withHdr.moduleInfo(a), ib = scanned.moduleInfo(b);
      expect(ia.fromHdr).toBe(true);
      expect(ib.fromHdr).toBe(false);
      expect({ ...ib, fromHdr: true }).toEqual(ia);
      expect(ia.fdes).toBe(fdes.filter((f) => f.end > f.begin).length);
      const v = withHdr.verify(a);
      expect(v.fdes).toBe(fdes.length);
      // glibc's __restore_rt: the one signal frame, an 'S' CIE with expression rules
      if (lib.includes("libc.so")) {
        const sig = fdes.filter((f) => f.aug.includes("S"));
        expect(sig.length).toBe(1);
        const row = withHdr.row(sig[0].begin + bias)!;
        expect(row.signalFrame).toBe(true);
        expect(row.cfa.kind).toBe("expression");
        expect(row.rules[16].kind).toBe("expression");
      }
      withHdr.free();
      scanned.free();
    });
  }

  it("node's .eh_frame (every 5th of its FDEs)", () => {
    const node = realpathSync(process.execPath);
    const cfi = fileCfi(node)!;
    const fdes = readelfFrames(node);
    expect(fdes.length).toBeGreaterThan(10000);
    const reg = new CfiRegistry(nodeCore());
    reg.addModule(cfi.ehFrame, cfi.ehAddr, cfi.hdr, cfi.hdrAddr);
    compare(reg, fdes, 0n, 5);
    reg.free();
  });

  it("the vDSO, read from this process's memory", () => {
    const maps = parseMaps(readFileSync("/proc/self/maps", "utf8"));
    const v = maps.find((m) => m.path === "[vdso]");
    if (!v) return; // a kernel without vDSO
    const image = new Uint8Array(Number(v.hi - v.lo));
    const fd = openSync("/proc/self/mem", "r");
    readSync(fd, image, 0, image.length, Number(v.lo));
    closeSync(fd);
    const dir = mkdtempSync(join(tmpdir(), "patchc-vdso-"));
    try {
      const file = join(dir, "vdso.so");
      writeFileSync(file, image);
      const fdes = readelfFrames(file);
      expect(fdes.length).toBeGreaterThan(0);
      const reg = new CfiRegistry(nodeCore());
      const id = reg.addImage(image, v.lo);
      const info = reg.moduleInfo(id);
      expect(info.fromHdr).toBe(true);
      const bias = v.lo - fileCfi(file)!.firstPage;
      compare(reg, fdes, bias);
      reg.free();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("CFI registry", () => {
  it("refuses modules whose pcs overlap, and finds pcs again after a removal", () => {
    const core = nodeCore();
    const cfi = fileCfi("/lib/x86_64-linux-gnu/libc.so.6")!;
    const reg = new CfiRegistry(core);
    const a = reg.addModule(cfi.ehFrame, cfi.ehAddr, cfi.hdr, cfi.hdrAddr);
    const lo = reg.moduleInfo(a).lo;
    expect(() => reg.addModule(cfi.ehFrame, cfi.ehAddr + 0x1000n, cfi.hdr, cfi.hdrAddr + 0x1000n)).toThrow(/overlap/);
    expect(reg.row(lo)).not.toBeNull();
    reg.remove(a);
    expect(reg.row(lo)).toBeNull();
    const b = reg.addModule(cfi.ehFrame, cfi.ehAddr + 0x1000n, cfi.hdr, cfi.hdrAddr + 0x1000n);
    expect(reg.row(lo + 0x1000n)?.module).toBe(b);
    reg.free();
  });

  it("rejects a header whose eh_frame_ptr is not the .eh_frame given", () => {
    const cfi = fileCfi("/lib/x86_64-linux-gnu/libc.so.6")!;
    const reg = new CfiRegistry(nodeCore());
    expect(() => reg.addModule(cfi.ehFrame, cfi.ehAddr + 16n, cfi.hdr, cfi.hdrAddr)).toThrow(/eh_frame_ptr/);
    reg.free();
  });
});
