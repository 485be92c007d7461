// `patchc inspect FILE [--json] [--require-signed KEY]` through main(), on a package made
// from real gcc output: what it prints for people and for tools, and its exit codes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { main } from "../src/cli/main.js";
import { nodeCore } from "../src/node/core-file.js";
import { writePackageFile } from "../src/format/writer.js";
import type { PackageReport } from "../src/format/describe.js";
import { buildFixture, type Fixture } from "./helpers/package-fixture.js";

const core = nodeCore();
let fx: Fixture;
let file: string;
let signed: string;
let pub: string;
let otherPub: string;

async function patchc(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (t) => void (out += t), err: (t) => void (err += t), isTTY: false });
  return { code, out, err };
}

beforeAll(() => {
  fx = buildFixture(core);
  file = fx.scratch.path("fix.patch");
  writePackageFile(file, { ...fx.model, description: "fixes the answer for case 2" });
  const key = generateKeyPairSync("ed25519");
  const other = generateKeyPairSync("ed25519");
  pub = fx.scratch.write("pub.pem", key.publicKey.export({ type: "spki", format: "pem" }) as string);
  otherPub = fx.scratch.write("other.pem", other.publicKey.export({ type: "spki", format: "pem" }) as string);
  signed = fx.scratch.path("signed.patch");
  writePackageFile(signed, fx.model, { signKey: key.privateKey });
});
afterAll(() => fx?.scratch.remove());

describe("patchc inspect", () => {
  it("prints for people what apply will do", async () => {
    const r = await patchc("inspect", file);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const m = fx.model;
    const lines = r.out.split("\n");
    expect(lines[0]).toMatch(new RegExp(`^${file.replace(/[.]/g, "\\.")}: patch fix-1 \\(format 1\\.0, \\d+ bytes, from patchc test fixture\\)$`));
    expect(lines[1]).toBe("  fixes the answer for case 2");
    expect(r.out).toContain(`build-id ${m.target.buildId} (a PIE or shared library)`);
    expect(r.out).toMatch(/signature +none/);
    expect(r.out).toMatch(/depends on +no other patch/);
    expect(r.out).toContain("apply will:\n  check the target's build-id, and the bytes at each replaced function's entry\n");
    expect(r.out).toMatch(/\n  redirect 2 functions to new code:\n/);
    // One row per replaced function: address and sizes from the target and the new code.
    for (const f of m.functions.filter((x) => x.kind === "replace")) {
      const size = m.symbols[f.symbol].size;
      expect(r.out).toMatch(new RegExp(`\\n    ${f.name} +0x${f.original!.addr.toString(16)} +${f.original!.size} +${size} +16 site bytes \\+ sha256\\n`));
    }
    const cold = m.functions[1].pieces[0];
    expect(r.out).toMatch(new RegExp(`\\n      \\+ cold piece checked\\.cold \\(fix\\.c #1\\) +0x${cold.original!.addr.toString(16)} +${cold.original!.size} +${m.symbols[cold.symbol!].size}`));
    expect(r.out).toMatch(/adds 1 function:\n  audit +32 bytes +\.text\.audit\n/);
    expect(r.out).toMatch(/adds 1 data object:\n  audit_count +4 bytes +\.bss\.audit_count\n/);
    const printf = m.references.find((x) => x.name === "printf")!;
    expect(r.out).toMatch(new RegExp(`printf@GLIBC_2\\.2\\.5 +plt +the target's PLT entry 0x${printf.pltEntry!.toString(16)} \\(GOT slot 0x${printf.gotSlot!.toString(16)}\\) +1 relocation`));
    expect(r.out).toMatch(/tls_counter +tls +TLS LE, offset 0x0 in the target's TLS block +1 relocation/);
    expect(r.out).toMatch(/counter \(fix\.c #1\) +direct +address 0x[0-9a-f]+ in the target +1 relocation/);
    expect(r.out).toMatch(new RegExp(`binds ${m.references.length} references:`));
  });

  it("prints the same as JSON for tools", async () => {
    const r = await patchc("inspect", "--json", file);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as PackageReport;
    const m = fx.model;
    expect(j.patchId).toBe("fix-1");
    expect(j.format).toBe("1.0");
    expect(j.target).toEqual({ buildId: m.target.buildId, path: m.target.path, type: "dyn" });
    expect(j.signature).toEqual({ status: "unsigned" });
    expect(j.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(j.functions.map((f) => [f.kind, f.name, f.size, f.section, f.unwind])).toEqual([
      ["replace", "table_switch", m.symbols[m.functions[0].symbol].size, ".text.table_switch", true],
      ["replace", "checked", m.symbols[m.functions[1].symbol].size, ".text.checked", true],
      ["add", "audit", 32, ".text.audit", true],
    ]);
    expect(j.functions[0].original).toEqual({
      addr: `0x${m.functions[0].original!.addr.toString(16)}`,
      size: Number(m.functions[0].original!.size),
      siteBytes: Buffer.from(m.functions[0].original!.site).toString("hex"),
      sha256: m.functions[0].original!.sha256,
    });
    expect(j.functions[1].pieces).toEqual([
      { kind: "cold", name: "checked.cold", file: "fix.c", sympos: 1, size: m.symbols[m.functions[1].pieces[0].symbol!].size, section: ".text.unlikely.checked", original: { addr: `0x${m.functions[1].pieces[0].original!.addr.toString(16)}`, size: Number(m.functions[1].pieces[0].original!.size) } },
    ]);
    expect(j.data).toEqual([{ name: "audit_count", size: 4, section: ".bss.audit_count", writable: true }]);
    const byName = Object.fromEntries(j.references.map((x) => [x.name, x]));
    expect(byName.printf).toMatchObject({ bind: "plt", scope: "dynamic", type: "func", version: "GLIBC_2.2.5", library: "libc.so.6", relocations: 1 });
    expect(byName.tls_counter).toEqual({ name: "tls_counter", bind: "tls", scope: "module", type: "tls", tls: { model: "le", offset: "0x0" }, relocations: 1 });
    expect(byName.counter).toMatchObject({ file: "fix.c", sympos: 1, bind: "direct", scope: "module", type: "object" });
    expect(j.sections.find((s) => s.name === ".rodata.table_switch")).toEqual({ name: ".rodata.table_switch", type: "progbits", flags: "A", size: 20, align: 4, relocations: 5 });
    expect(j.totals.code).toBe(m.sections.filter((s) => s.flags & 4).reduce((n, s) => n + s.size, 0));
  });

  it("checks a signature when asked, and says who signed", async () => {
    const plain = await patchc("inspect", signed);
    expect(plain.code).toBe(0);
    expect(plain.out).toMatch(/signature +ed25519, key [0-9a-f]{16} \(not checked: --require-signed KEY checks it\)/);
    const ok = await patchc("inspect", "--json", "--require-signed", pub, signed);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out).signature).toMatchObject({ status: "verified", algorithm: "ed25519", key: pub });
    const wrong = await patchc("inspect", "--require-signed", otherPub, signed);
    expect(wrong.code).toBe(1);
    expect(wrong.out).toBe("");
    expect(wrong.err).toMatch(new RegExp(`^patchc: ${signed}: refused: a signature by ${otherPub} is required, and signed by key [0-9a-f]{16}, not by the key given \\([0-9a-f]{16}\\)\\n$`));
    const unsigned = await patchc("inspect", "--require-signed", pub, file);
    expect(unsigned.code).toBe(1);
    expect(unsigned.err).toBe(`patchc: ${file}: refused: a signature by ${pub} is required, and the package is not signed\n`);
  });

  it("fails with the file and the reason, exit code 1, on a bad or missing package", async () => {
    const junk = fx.scratch.write("junk.patch", "not an ELF file at all, just text that is long enough for a header..");
    const r = await patchc("inspect", junk);
    expect(r).toEqual({ code: 1, out: "", err: `patchc: ${junk}: not a readable ELF file: ELF header: not an ELF file (bad magic)\n` });
    const obj = await patchc("inspect", fx.object);
    expect(obj.code).toBe(1);
    expect(obj.err).toBe(`patchc: ${fx.object}: not a patch package: no .patchc.meta section (an ordinary object file?)\n`);
    const missing = await patchc("inspect", fx.scratch.path("nope.patch"));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^patchc: .*nope\.patch: cannot read the package: ENOENT/);
    const badKey = fx.scratch.write("bad.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    const k = await patchc("inspect", "--require-signed", badKey, file);
    expect(k.code).toBe(1);
    expect(k.err).toMatch(new RegExp(`^patchc: ${badKey}: not a PEM public or private key`));
    expect((await patchc("inspect")).code).toBe(2);
  });
});
