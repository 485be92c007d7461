// From objects to a patch package: the step after the object diff (assembly/diff,
// src/core/diff.ts). Both forms of `patchc build` that start from objects, and the
// source-tree form once it has built them, end here.
import type { Core } from "../core/instance.js";
import type { PatchPackage } from "../format/model.js";
import type { ObjectPair } from "./objects.js";

/** `--replace OLD=NEW`: the target's function OLD becomes NEW of the given object. */
export interface Replacement {
  old: string;
  new: string;
}

export interface PackageRequest {
  /** The binary the running process was started from (or a copy). */
  target: string;
  /** The path recorded in the package for people (default: `target`); apply matches by build-id. */
  targetHint?: string;
  patchId: string;
  description?: string;
  producer?: string;
  /** Diff mode: the objects of both builds. */
  pairs?: ObjectPair[];
  /** Replacement mode: one object and the functions it replaces. */
  replace?: { object: string; functions: Replacement[] };
}

export interface PackageResult {
  package: PatchPackage;
  /** What the user should know and decide on: functions changed only in __LINE__ numbers, etc. */
  notes: string[];
}

/**
 * Diffs the objects, proves the original objects are the target's code, and assembles the
 * package. Not there yet: the object diff is being written (assembly/diff); this throws
 * until it lands and this step is wired to it.
 */
export function makePackage(core: Core, request: PackageRequest): PackageResult {
  void core;
  void request;
  throw new Error("not yet implemented: object diff");
}
