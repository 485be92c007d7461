// Refusals of `patchc apply` through the command line (src/cli/main.ts, as dist/patchc.cjs
// runs it), each comparing the target's maps and text before and after:
// - a truncated package: exit 1 naming it;
// - a dead pid: exit 1 naming it;
// - an unsigned package with --require-signed KEY: exit 1; the same package signed by KEY
//   applies (exit 0) and reverts.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, expectUnchanged, patchc, snapshot, stopAll, type BuiltModule } from "./helpers/apply.js";

const scratch = new Scratch();
let simple: BuiltModule;
let simpleFile: string, signedFile: string, pubKey: string;

beforeAll(async () => {
  simple = buildModule(scratch, { name: "simple", sources: ["simple.c"] });
  const keys = generateKeyPairSync("ed25519");
  const privKey = scratch.write("key.pem", keys.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
  pubKey = scratch.write("key.pub.pem", keys.publicKey.export({ type: "spki", format: "pem" }) as string);
  simpleFile = await buildPatch(simple, "simple-1");
  signedFile = await buildPatch(simple, "simple-s", ["--sign", privKey]);
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

async function start() {
  const { t } = await LiveTarget.start(simple.path);
  expect(await t.ask("call", "call")).toEqual({ r: "1" });
  return { t, before: snapshot(t.pid) };
}

describe("patchc apply refuses, exit 1, target unchanged", () => {
  it("a truncated package, naming it", async () => {
    const { t, before } = await start();
    const bytes = readFileSync(simpleFile);
    const cut = scratch.path("truncated.patch");
    writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
    const r = await patchc("apply", String(t.pid), cut);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toContain("truncated.patch");
    expect(r.out).toBe("");
    expectUnchanged(before);
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
  });

  it("a dead pid, naming it", async () => {
    const { t } = await start();
    const pid = t.pid;
    await t.stop();
    const r = await patchc("apply", String(pid), simpleFile);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toContain(`process ${pid}`);
  });

  it("an unsigned package with --require-signed; the signed one applies and reverts", async () => {
    const { t, before } = await start();
    const r = await patchc("apply", String(t.pid), simpleFile, "--require-signed", pubKey);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/simple-1\.patch.*signature|signature.*simple-1\.patch/);
    expectUnchanged(before);
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
    const ok = await patchc("apply", String(t.pid), signedFile, "--require-signed", pubKey);
    expect(ok.code, ok.err).toBe(0);
    expect(await t.ask("call", "call")).toEqual({ r: "2" });
    const rv = await patchc("revert", String(t.pid), "simple-s");
    expect(rv.code, rv.err).toBe(0);
    expect(await t.ask("call", "call")).toEqual({ r: "1" });
  });
});
