// From objects to a patch package: the step after the object diff (assembly/diff,
// src/core/diff.ts). Both forms of `patchc build` that start from objects, and the
// source-tree form once it has built them, end here.
import type { Core } from "../core/instance.js";
import type { PatchPackage } from "../format/model.js";
import type { BuildDiff } from "./build-diff.js";
import { BuildError } from "./errors.js";
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
  /** Diff mode: the objects of both builds, and their diff (diffBuilds). */
  pairs?: ObjectPair[];
  diff?: BuildDiff;
  /** Replacement mode: one object and the functions it replaces. */
  replace?: { object: string; functions: Replacement[] };
}

export interface PackageResult {
  package: PatchPackage;
  /** What the user should know and decide on: functions changed only in __LINE__ numbers, etc. */
  notes: string[];
}

/**
 * From the diff to the package: binds every reference of the new code to the target,
 * proves the original objects are the target's code, and assembles the model. Not
 * written yet (the diff itself runs before: diffBuilds); until it is, this refuses with
 * the step named.
 */
export function makePackage(core: Core, request: PackageRequest): PackageResult {
  void core;
  throw new BuildError(
    "package",
    `not yet implemented: object diff -> package (binding ${request.replace ? "the replacement functions" : "the changed functions"} to the target ${request.target} and the proof of identity are not written yet)`,
  );
}
