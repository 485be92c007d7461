import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { parseMaps, moduleMappings, type Mapping } from "../src/apply/maps.js";
import { findGap, PAGE } from "../src/apply/gap.js";

describe("parseMaps", () => {
  it("parses this process's maps, with deleted files and pseudo-names", () => {
    const text = [
      "55d0c7a00000-55d0c7a28000 r--p 00000000 fe:01 1835049                    /usr/bin/my server",
      "7f0000000000-7f0000001000 r-xp 00001000 fe:01 99                         /usr/lib/libx.so.1 (deleted)",
      "7ffd1c5fe000-7ffd1c600000 r-xp 00000000 00:00 0                          [vdso]",
      "7ffd1c600000-7ffd1c601000 rw-s 00000000 00:05 3                          ",
    ].join("\n");
    const m = parseMaps(text, "test");
    expect(m[0]).toMatchObject({ start: 0x55d0c7a00000n, end: 0x55d0c7a28000n, read: true, write: false, exec: false, path: "/usr/bin/my server", inode: 1835049 });
    expect(m[1]).toMatchObject({ exec: true, offset: 0x1000n, path: "/usr/lib/libx.so.1", deleted: true });
    expect(m[2].path).toBe("[vdso]");
    expect(m[3]).toMatchObject({ shared: true, write: true, path: "" });
    const self = parseMaps(readFileSync("/proc/self/maps", "utf8"), "/proc/self/maps");
    expect(self.some((x) => x.path === process.execPath && x.exec)).toBe(true);
    expect(moduleMappings(self, process.execPath).length).toBeGreaterThan(1);
    expect(() => parseMaps("garbage here\n", "/proc/1/maps")).toThrow(/\/proc\/1\/maps: line 1 is not a mapping/);
  });
});

const map = (start: bigint, end: bigint): Mapping => ({ start, end, read: true, write: false, exec: true, shared: false, offset: 0n, dev: "0:0", inode: 1, path: "/x", deleted: false });
const GiB = 1n << 30n;

describe("findGap", () => {
  it("finds the nearest hole that every range reaches, with guard pages", () => {
    const maps = [map(0x555500000000n, 0x555500100000n), map(0x555500101000n, 0x555500200000n), map(0x7f0000000000n, 0x7f0000100000n)];
    const a = findGap(maps, { size: 0x3000n, reach: [{ start: 0x555500000000n, end: 0x555500200000n }] })!;
    expect(a % PAGE).toBe(0n);
    // Not in the 4 KiB hole between the two mappings (too small with guards): next to the module, a guard page apart.
    expect([0x555500000000n - PAGE - 0x3000n, 0x555500200000n + PAGE]).toContain(a);
    for (const m of maps) expect(a + 0x3000n <= m.start - PAGE || a >= m.end + PAGE).toBe(true);
  });

  it("keeps the whole patch within +-2 GiB of every byte of the module", () => {
    const mod = { start: 0x400000000n, end: 0x400000000n + GiB };
    const maps = [map(0x10000n, mod.end + GiB)]; // everything within reach is taken
    const free = [map(mod.start, mod.end)];
    expect(findGap(maps, { size: PAGE, reach: [mod] })).toBeUndefined();
    const a = findGap(free, { size: 0x10000n, reach: [mod] })!;
    expect(a + 0x10000n - mod.start < 2n * GiB).toBe(true);
    expect(mod.end - a < 2n * GiB).toBe(true);
  });

  it("honours below-2GiB for non-PIE code and says none when nothing fits", () => {
    const maps = [map(0x400000n, 0x500000n)];
    const a = findGap(maps, { size: 0x2000n, reach: [{ start: 0x400000n, end: 0x500000n }], below2G: true })!;
    expect(a + 0x2000n <= 2n * GiB).toBe(true);
    const far = [{ start: 0x7f0000000000n, end: 0x7f0000001000n }];
    expect(findGap([], { size: PAGE, reach: far, below2G: true })).toBeUndefined();
  });
});
