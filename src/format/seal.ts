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
// Signature: ed25519 (RFC 8032, node:crypto) over "patchc-package-signature-1\0" || hash.
// Key id: sha256 of the signer's raw 32-byte public key.
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
  const h = createHash("sha256");
  const head = Buffer.alloc(4);
  h.update(D.HASH_DOMAIN);
  head.writeUInt32LE(sections.length);
  h.update(head);
  const fields = Buffer.alloc(60);
  for (const s of sections) {
    const name = encoder.encode(s.name);
    head.writeUInt32LE(name.length);
    h.update(head);
    h.update(name);
    fields.writeUInt32LE(s.type, 0);
    fields.writeBigUInt64LE(s.flags, 4);
    fields.writeBigUInt64LE(s.addr, 12);
    fields.writeUInt32LE(s.link, 20);
    fields.writeUInt32LE(s.info, 24);
    fields.writeBigUInt64LE(s.align, 28);
    fields.writeBigUInt64LE(s.entsize, 36);
    fields.writeBigUInt64LE(s.size, 44);
    fields.writeBigUInt64LE(s.name === D.SEC_SEAL || !s.data ? 0n : BigInt(s.data.length), 52);
    h.update(fields);
    if (s.data && s.name !== D.SEC_SEAL) h.update(s.data);
  }
  return new Uint8Array(h.digest());
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

/** sha256 of the raw public key: what a signature records to say who signed. */
export function keyId(key: KeyObject): Uint8Array {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" });
  return new Uint8Array(createHash("sha256").update(Buffer.from(jwk.x as string, "base64url")).digest());
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
  signature?: { algorithm: "ed25519"; keyId: Uint8Array; bytes: Uint8Array };
}

export function makeSeal(hash: Uint8Array, key?: KeyObject): Seal {
  if (!key) return { hash };
  return { hash, signature: { algorithm: "ed25519", keyId: keyId(key), bytes: new Uint8Array(sign(null, signedMessage(hash), key)) } };
}

export function encodeSeal(seal: Seal): Uint8Array {
  const b = new Uint8Array(D.SEAL_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, 1, true);
  v.setUint32(4, seal.signature ? 1 : 0, true);
  b.set(seal.hash, 8);
  if (seal.signature) {
    b.set(seal.signature.keyId, 40);
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
    if (b.subarray(40).some((x) => x !== 0)) return "an unsigned seal has nonzero key id or signature bytes";
    return { hash };
  }
  return { hash, signature: { algorithm: "ed25519", keyId: b.slice(40, 72), bytes: b.slice(72, 136) } };
}

/** Whether the seal's signature is a valid signature of its hash by `key`; a reason when not. */
export function checkSignature(seal: Seal, key: KeyObject): true | string {
  if (!seal.signature) return "the package is not signed";
  const want = keyId(key);
  if (toHex(seal.signature.keyId) !== toHex(want)) {
    return `signed by key ${toHex(seal.signature.keyId).slice(0, 16)}, not by the key given (${toHex(want).slice(0, 16)})`;
  }
  if (!verify(null, signedMessage(seal.hash), key, seal.signature.bytes)) return "the signature does not verify: the package or its seal was altered";
  return true;
}
