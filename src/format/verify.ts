// Verification of a package beyond what decoding checks (the content hash is checked by
// every read): its signature, required or reported; and signing a package already written.
import { readFileSync } from "node:fs";
import type { KeyObject } from "node:crypto";
import type { Core } from "../core/instance.js";
import { ElfReader } from "../core/elf.js";
import * as D from "./defs.js";
import { PackageError } from "./errors.js";
import { decodePackage, type ReadPackage } from "./reader.js";
import { checkSignature, encodeSeal, fromHex, keyId, makeSeal, signingKey, verifyingKey } from "./seal.js";

export type SignatureStatus =
  | { status: "unsigned" }
  | { status: "signed"; algorithm: "ed25519"; keyId: string } // signed (the signature verifies for the key it carries), not checked against a given key
  | { status: "verified"; algorithm: "ed25519"; keyId: string; key: string }; // checked: signed by `key`

/** What the package says about its signature, checked against `key` when one is given. */
export function signatureStatus(pkg: ReadPackage, key?: { key: KeyObject; name: string }): SignatureStatus {
  const sig = pkg.seal.signature;
  if (!sig) return { status: "unsigned" };
  const id = keyId(sig.publicKey);
  if (key && checkSignature(pkg.seal, key.key) === true) return { status: "verified", algorithm: sig.algorithm, keyId: id, key: key.name };
  return { status: "signed", algorithm: sig.algorithm, keyId: id };
}

/**
 * Refuses a package that is not signed by `key` (apply --require-signed KEY): unsigned,
 * signed by another key, or a signature that does not verify. The error names the
 * package, the key file and the reason.
 */
export function requireSignature(pkg: ReadPackage, key: KeyObject, keyName: string): void {
  const r = checkSignature(pkg.seal, key);
  if (r !== true) throw new PackageError(pkg.file, `refused: a signature by ${keyName} is required, and ${r}`);
}

/** Reads a PEM key file for verification (an ed25519 public key, or a private key's public half). */
export function readVerifyingKey(path: string): KeyObject {
  return verifyingKey(readKeyFile(path), path);
}

/** Reads a PEM ed25519 private key file for signing. */
export function readSigningKey(path: string): KeyObject {
  return signingKey(readKeyFile(path), path);
}

function readKeyFile(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new PackageError(path, `cannot read the key: ${(e as Error).message}`);
  }
}

/**
 * Signs an existing package: it is decoded (so only a valid, intact package is signed)
 * and its seal rewritten in place with the same content hash and a signature by `key`.
 */
export function signPackageBytes(core: Core, bytes: Uint8Array, file: string, key: KeyObject): Uint8Array {
  const pkg = decodePackage(core, bytes, file);
  const out = new Uint8Array(bytes);
  const elf = new ElfReader(core, out, file);
  try {
    const seal = elf.sections().find((s) => s.name === D.SEC_SEAL)!;
    out.set(encodeSeal(makeSeal(fromHex(pkg.hash), key)), Number(seal.offset));
  } finally {
    elf.close();
  }
  return out;
}
