// The seal of a package: a sha256 over its canonical contents and an optional ed25519
// signature of that hash (docs/format.md, "Content hash and signature").
//
// Canonical contents: every section but the null one, in section-table order, as
//   u32 name length, name (UTF-8), u32 sh_type, u64 sh_flags, u64 sh_addr, u32 sh_link,
//   u32 sh_info, u64 sh_addralign, u64 sh_entsize, u64 sh_size, then its data
//   (none for SHT_NOBITS and for .patchc.seal itself),
// after the domain string "patchc-package-1\0" and a u32 section count. File offsets are
// not part of it: only what a reader of the sections sees. Signing fills .patchc.seal in
// place (its size is fixed), so a signed and an unsigned package have the same hash.
//
// Signature: ed25519 (RFC 8032, node:crypto) over "patchc-package-signature-1\0" || hash,
// with the signer's raw 32-byte public key beside it: every read checks that the signature
// is valid for that key (an altered seal is refused); --require-signed KEY checks the key.
// Key id (shown to people): sha256 of the raw public key.
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import * as D from "./defs.js";
import { PackageError } from "./errors.js";

export interface CanonicalSection {
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  link: number;
  info: number;
  align: bigint;
  entsize: bigint;
  size: bigint;
  data?: Uint8Array; // absent for SHT_NOBITS
}

const encoder = new TextEncoder();

export function contentHash(sections: readonly CanonicalSection[]): Uint8Array {
  // One buffer, one digest: a hash update per field costs more than the hashing itself.
  const names = sections.map((s) => encoder.encode(s.name));
  const bodies = sections.map((s) => (s.data && s.name !== D.SEC_SEAL ? s.data : undefined));
  const domain = encoder.encode(D.HASH_DOMAIN);
  let total = domain.length + 4;
  sections.forEach((_, i) => (total += 4 + names[i].length + 60 + (bodies[i]?.length ?? 0)));
  const buf = new Uint8Array(total);
  const v = new DataView(buf.buffer);
  buf.set(domain, 0);
  let at = domain.length;
  v.setUint32(at, sections.length, true);
  at += 4;
  sections.forEach((s, i) => {
    v.setUint32(at, names[i].length, true);
    buf.set(names[i], at + 4);
    at += 4 + names[i].length;
    v.setUint32(at, s.type, true);
    v.setBigUint64(at + 4, s.flags, true);
    v.setBigUint64(at + 12, s.addr, true);
    v.setUint32(at + 20, s.link, true);
    v.setUint32(at + 24, s.info, true);
    v.setBigUint64(at + 28, s.align, true);
    v.setBigUint64(at + 36, s.entsize, true);
    v.setBigUint64(at + 44, s.size, true);
    v.setBigUint64(at + 52, BigInt(bodies[i]?.length ?? 0), true);
    at += 60;
    const body = bodies[i];
    if (body) {
      buf.set(body, at);
      at += body.length;
    }
  });
  return new Uint8Array(createHash("sha256").update(buf).digest());
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "hex"));
}

function signedMessage(hash: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(D.SIGNATURE_DOMAIN), hash]);
}

/** The raw 32-byte ed25519 public key of a public or private key. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return new Uint8Array(Buffer.from(pub.export({ format: "jwk" }).x as string, "base64url"));
}

/** sha256 of the raw public key: how people tell keys apart. */
export function keyId(raw: Uint8Array): string {
  return createHash("sha256").update(raw).digest("hex");
}

/** A private ed25519 key from PEM (PKCS#8) text; `what` names its file in errors. */
export function signingKey(pem: string | Uint8Array, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(typeof pem === "string" ? pem : Buffer.from(pem));
  } catch (e) {
    throw new PackageError(what, `not a PEM private key (${(e as Error).message})`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new PackageError(what, `a ${key.asymmetricKeyType} key; signing needs an ed25519 key`);
  return key;
}

/** An ed25519 public key from PEM text (a public key, or a private key whose public half is used). */
export function verifyingKey(pem: string | Uint8Array, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(typeof pem === "string" ? pem : Buffer.from(pem));
  } catch (e) {
    throw new PackageError(what, `not a PEM public or private key (${(e as Error).message})`);
  }
  if (key.asymmetricKeyType !== "ed25519") throw new PackageError(what, `a ${key.asymmetricKeyType} key; package signatures are ed25519`);
  return key;
}

export interface Seal {
  hash: Uint8Array; // 32 bytes
  signature?: { algorithm: "ed25519"; publicKey: Uint8Array; bytes: Uint8Array };
}

export function makeSeal(hash: Uint8Array, key?: KeyObject): Seal {
  if (!key) return { hash };
  return { hash, signature: { algorithm: "ed25519", publicKey: rawPublicKey(key), bytes: new Uint8Array(sign(null, signedMessage(hash), key)) } };
}

export function encodeSeal(seal: Seal): Uint8Array {
  const b = new Uint8Array(D.SEAL_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, 1, true);
  v.setUint32(4, seal.signature ? 1 : 0, true);
  b.set(seal.hash, 8);
  if (seal.signature) {
    b.set(seal.signature.publicKey, 40);
    b.set(seal.signature.bytes, 72);
  }
  return b;
}

/** Decodes a seal; returns the reason when it is malformed. */
export function decodeSeal(b: Uint8Array): Seal | string {
  if (b.length !== D.SEAL_SIZE) return `the seal is ${b.length} bytes, not ${D.SEAL_SIZE}`;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const hashAlg = v.getUint32(0, true);
  const sigAlg = v.getUint32(4, true);
  if (hashAlg !== 1) return `hash algorithm ${hashAlg} is not 1 (sha256)`;
  if (sigAlg > 1) return `signature algorithm ${sigAlg} is not 0 (none) or 1 (ed25519)`;
  const hash = b.slice(8, 40);
  if (sigAlg === 0) {
    if (b.subarray(40).some((x) => x !== 0)) return "an unsigned seal has nonzero public key or signature bytes";
    return { hash };
  }
  const signature = { algorithm: "ed25519" as const, publicKey: b.slice(40, 72), bytes: b.slice(72, 136) };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(signature.publicKey).toString("base64url") }, format: "jwk" });
  } catch {
    return "the signer's public key is not a valid ed25519 key";
  }
  if (!verify(null, signedMessage(hash), key, signature.bytes)) return `the signature by key ${keyId(signature.publicKey).slice(0, 16)} does not verify: the package or its seal was altered`;
  return { hash, signature };
}

/** Whether the seal holds a signature by `key` (decodeSeal checked that it verifies); a reason when not. */
export function checkSignature(seal: Seal, key: KeyObject): true | string {
  if (!seal.signature) return "the package is not signed";
  const want = rawPublicKey(key);
  if (toHex(seal.signature.publicKey) !== toHex(want)) {
    return `signed by key ${keyId(seal.signature.publicKey).slice(0, 16)}, not by the key given (${keyId(want).slice(0, 16)})`;
  }
  return true;
}
