// ed25519 signatures: signing at write time and afterwards, requiring a key (right,
// wrong, missing signature), and what an attacker without the key can and cannot do.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { nodeCore } from "../src/node/core-file.js";
import { ElfReader } from "../src/core/elf.js";
import { encodePackage } from "../src/format/writer.js";
import { decodePackage } from "../src/format/reader.js";
import { PackageError } from "../src/format/errors.js";
import { contentHash, encodeSeal, makeSeal, rawPublicKey } from "../src/format/seal.js";
import { readSigningKey, readVerifyingKey, requireSignature, signatureStatus, signPackageBytes } from "../src/format/verify.js";
import { buildFixture, type Fixture } from "./helpers/package-fixture.js";
import { thrown as thrownBy } from "./helpers/thrown.js";

const core = nodeCore();
let fx: Fixture;
let key: { publicKey: KeyObject; privateKey: KeyObject };
let other: { publicKey: KeyObject; privateKey: KeyObject };
let unsigned: Uint8Array;
let signed: Uint8Array;

beforeAll(() => {
  fx = buildFixture(core);
  key = generateKeyPairSync("ed25519");
  other = generateKeyPairSync("ed25519");
  unsigned = encodePackage(fx.model);
  signed = encodePackage(fx.model, { signKey: key.privateKey });
});
afterAll(() => fx?.scratch.remove());

const refusal = (fn: () => unknown): string => thrownBy(PackageError, fn).message;

/** The seal's file offset. */
function sealOffset(bytes: Uint8Array): number {
  const r = new ElfReader(core, bytes, "x");
  try {
    return Number(r.sections().find((s) => s.name === ".patchc.seal")!.offset);
  } finally {
    r.close();
  }
}

/** An attacker's edit: change bytes, recompute the content hash into the seal (no key needed). */
function tamper(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const b = bytes.slice();
  b[at] = value;
  const r = new ElfReader(core, b, "x");
  try {
    const secs = r.sections();
    b.set(contentHash(secs.slice(1).map((s) => ({ ...s, data: s.hasData ? r.sectionData(s) : undefined }))), sealOffset(b) + 8);
  } finally {
    r.close();
  }
  return b;
}

describe("signatures", () => {
  it("a signed package reads the same, with the same content hash, and says who signed", () => {
    const a = decodePackage(core, unsigned, "u.patch");
    const s = decodePackage(core, signed, "s.patch");
    expect(s.model).toEqual(a.model);
    expect(s.hash).toBe(a.hash);
    expect(signatureStatus(a)).toEqual({ status: "unsigned" });
    const st = signatureStatus(s);
    expect(st).toMatchObject({ status: "signed", algorithm: "ed25519" });
    expect(signatureStatus(s, { key: key.publicKey, name: "pub.pem" })).toEqual({ status: "verified", algorithm: "ed25519", keyId: (st as { keyId: string }).keyId, key: "pub.pem" });
    expect(signatureStatus(s, { key: other.publicKey, name: "other.pem" }).status).toBe("signed");
    // Only the seal differs between the two files.
    const at = sealOffset(signed);
    expect(signed.length).toBe(unsigned.length);
    for (let i = 0; i < signed.length; i++) if (signed[i] !== unsigned[i]) expect(i === at + 4 || (i >= at + 40 && i < at + 136), `byte ${i}`).toBe(true);
  });

  it("is required: right key passes, wrong key, no signature are refused with the reason", () => {
    const s = decodePackage(core, signed, "s.patch");
    requireSignature(s, key.publicKey, "pub.pem");
    requireSignature(s, key.privateKey, "key.pem"); // a private key stands for its public half
    expect(refusal(() => requireSignature(s, other.publicKey, "other.pem"))).toMatch(/^s\.patch: refused: a signature by other\.pem is required, and signed by key [0-9a-f]{16}, not by the key given \([0-9a-f]{16}\)$/);
    expect(refusal(() => requireSignature(decodePackage(core, unsigned, "u.patch"), key.publicKey, "pub.pem"))).toBe("u.patch: refused: a signature by pub.pem is required, and the package is not signed");
  });

  it("signs a package already written, without changing its contents", () => {
    const later = signPackageBytes(core, unsigned, "u.patch", key.privateKey);
    expect(later).toEqual(signed); // ed25519 is deterministic: the same bytes as signing at write time
    requireSignature(decodePackage(core, later, "u.patch"), key.publicKey, "pub.pem");
    // A damaged package is not signed.
    expect(refusal(() => signPackageBytes(core, unsigned.slice(0, 100), "u.patch", key.privateKey))).toMatch(/^u\.patch: not a readable ELF file/);
  });

  it("refuses what an attacker without the key can make", () => {
    // Changed code with a recomputed hash: the signature no longer verifies.
    const code = Number(fx.model.sections.findIndex((s) => s.name === ".text.table_switch"));
    expect(code).toBe(0);
    const r = new ElfReader(core, signed, "x");
    const textOffset = Number(r.sections()[1].offset);
    r.close();
    const changed = tamper(signed, textOffset + 0x21, 0x27); // mov $0x26 -> mov $0x27
    expect(refusal(() => decodePackage(core, changed, "s.patch"))).toMatch(/^s\.patch: \.patchc\.seal: the signature by key [0-9a-f]{16} does not verify: the package or its seal was altered$/);
    // The same change, unsigned and re-sealed, reads (the hash is not a signature) ...
    const resealed = tamper(unsigned, textOffset + 0x21, 0x27);
    expect(decodePackage(core, resealed, "u.patch").model.sections[0].data![0x21]).toBe(0x27);
    // ... and re-signed with the attacker's own key, it verifies, but not as the required key.
    const forged = signPackageBytes(core, resealed, "f.patch", other.privateKey);
    const f = decodePackage(core, forged, "f.patch");
    expect(refusal(() => requireSignature(f, key.publicKey, "pub.pem"))).toMatch(/^f\.patch: refused: a signature by pub\.pem is required, and signed by key [0-9a-f]{16}, not by the key given/);
    // The trusted public key put beside the attacker's signature does not verify.
    const swapped = forged.slice();
    swapped.set(rawPublicKey(key.publicKey), sealOffset(forged) + 40);
    expect(refusal(() => decodePackage(core, swapped, "f.patch"))).toMatch(/the signature by key [0-9a-f]{16} does not verify/);
    // A signature of another package's hash, moved over, does not verify either.
    const moved = resealed.slice();
    const sealOfSigned = signed.subarray(sealOffset(signed), sealOffset(signed) + 136);
    moved.set(encodeSeal({ ...makeSeal(decodePackage(core, resealed, "u").seal.hash), signature: { algorithm: "ed25519", publicKey: sealOfSigned.slice(40, 72), bytes: sealOfSigned.slice(72, 136) } }), sealOffset(moved));
    expect(refusal(() => decodePackage(core, moved, "m.patch"))).toMatch(/does not verify/);
  });

  it("reads PEM keys, and refuses other kinds of keys and files with the reason", () => {
    const dir = fx.scratch;
    const priv = dir.write("key.pem", key.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    const pub = dir.write("pub.pem", key.publicKey.export({ type: "spki", format: "pem" }) as string);
    expect(rawPublicKey(readVerifyingKey(pub))).toEqual(rawPublicKey(key.publicKey));
    expect(rawPublicKey(readVerifyingKey(priv))).toEqual(rawPublicKey(key.publicKey));
    expect(rawPublicKey(readSigningKey(priv))).toEqual(rawPublicKey(key.publicKey));
    expect(refusal(() => readSigningKey(pub))).toMatch(new RegExp(`^${pub}: not a PEM private key`));
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const ecPem = dir.write("ec.pem", ec.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    expect(refusal(() => readSigningKey(ecPem))).toBe(`${ecPem}: a ec key; signing needs an ed25519 key`);
    expect(refusal(() => readVerifyingKey(ecPem))).toBe(`${ecPem}: a ec key; package signatures are ed25519`);
    expect(refusal(() => readVerifyingKey(dir.path("absent.pem")))).toMatch(/absent\.pem: cannot read the key: ENOENT/);
  });
});
