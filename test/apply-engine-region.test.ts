// The patch region header (src/apply/region.ts): what encode writes decodes back exactly,
// and a damaged header is reported as such (RegionError naming the field), never trusted:
// every byte flipped, every truncation, lying counts and offsets.
import { describe, expect, it } from "vitest";
import { decodeRegion, encodeRegion, RegionError, STATE_OFFSET, type RegionHeader } from "../src/apply/region.js";

const BASE = 0x7f0000000000n;

function header(): RegionHeader {
  return {
    state: "active",
    sequence: 3,
    appliedAt: new Date(1796000000123),
    base: BASE,
    size: 0x4000n,
    bias: 0x555555554000n,
    ehFrame: { addr: BASE + 0x2000n, size: 0x40n },
    hash: "ab".repeat(32),
    patchId: "fix-2",
    modulePath: "/usr/sbin/nginx (deleted)",
    buildId: "0123456789abcdef0123456789abcdef01234567",
    functions: [
      { name: "f", site: 0x555555555140n, newAddr: BASE + 0x1000n, newSize: 0x20n, saved: Uint8Array.of(0xe9, 1, 2, 3, 4), jump: Uint8Array.of(0xe9, 5, 6, 7, 8), previous: "fix-1" },
      { name: "g (a.c #2)", site: 0x555555555200n, newAddr: BASE + 0x1040n, newSize: 0x10n, saved: Uint8Array.of(0x55, 0x48, 0x89, 0xe5, 0x41), jump: Uint8Array.of(0xe9, 9, 9, 9, 9) },
    ],
    symbols: [{ name: "audit_count", addr: BASE + 0x3000n, size: 4n }],
    parts: [
      { offset: 0, size: 0x1000, prot: 1 },
      { offset: 0x1000, size: 0x1000, prot: 5 },
      { offset: 0x2000, size: 0x1000, prot: 1 },
      { offset: 0x3000, size: 0x1000, prot: 3 },
    ],
    dependencies: [{ patchId: "fix-1", hash: "cd".repeat(32) }, { patchId: "base" }],
  };
}

describe("region header", () => {
  it("decodes what it encodes", () => {
    const h = header();
    const b = encodeRegion(h);
    expect(decodeRegion(b, "t")).toEqual(h);
    // Trailing bytes (the rest of the page) are ignored.
    const page = new Uint8Array(4096);
    page.set(b);
    expect(decodeRegion(page, "t")).toEqual(h);
    const retired = page.slice();
    retired[STATE_OFFSET] = 2;
    expect(decodeRegion(retired, "t").state).toBe("retired");
  });

  it("refuses damaged headers with the reason", () => {
    const b = encodeRegion(header());
    const bad = (edit: (v: DataView, c: Uint8Array) => void, re: RegExp) => {
      const c = b.slice();
      edit(new DataView(c.buffer), c);
      expect(() => decodeRegion(c, "process 1, region at 0x7f0000000000")).toThrow(re);
      try {
        decodeRegion(c, "x");
      } catch (e) {
        expect(e).toBeInstanceOf(RegionError);
      }
    };
    bad((_, c) => (c[0] = 0x51), /bad magic/);
    bad((v) => v.setUint16(8, 2, true), /version 2/);
    bad((v) => v.setUint32(12, 10, true), /size 10 is outside/);
    bad((v) => v.setUint32(12, b.length + 1, true), /the header says \d+ bytes/);
    bad((v) => v.setUint32(STATE_OFFSET, 7, true), /state 7/);
    bad((v) => v.setUint32(20, 0xffffffff, true), /do not fit/);
    bad((v) => v.setUint32(120, 0xfffffff0, true), /patch id: bytes .* outside the string area/);
    bad((v) => v.setUint32(124, 0, true), /patch id "" is not a valid patch id/);
    bad((v) => v.setBigUint64(48, BASE + 1n, true), /not page-aligned/);
    bad((v) => v.setBigUint64(160 + 16, BASE + 0x10000n, true), /function 0 \(f\): its new code .* outside the region/);
    bad((v) => v.setUint32(160 + 64 * 2 + 24 + 16 + 8, 7, true), /part 1: .* never writable and executable/);
    bad((v) => v.setUint32(160 + 64 * 2 + 24 + 4, 0x2000, true), /part 1: 4096 bytes at 4096 /);
    bad((v) => v.setBigUint64(80, 0x100000n, true), /\.eh_frame lies outside/);
  });

  it("reports every truncation and every single-byte change without crashing", () => {
    const b = encodeRegion(header());
    for (let n = 0; n < b.length; n++) expect(() => decodeRegion(b.subarray(0, n), "t")).toThrow(RegionError);
    let refused = 0;
    for (let i = 0; i < b.length; i++) {
      for (const x of [0x00, 0xff, b[i] ^ 0x80]) {
        if (x === b[i]) continue;
        const c = b.slice();
        c[i] = x;
        try {
          decodeRegion(c, "t");
        } catch (e) {
          expect(e).toBeInstanceOf(RegionError);
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(b.length / 2);
  });
});
