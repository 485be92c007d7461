// The inputs of the object diff: pairs of objects, one of the original build and one of
// the patched build, matched by their path relative to the directory given (or two
// object files, one pair). An object only the patched build has is new (all its
// functions are added); one only the original has is dropped, and said so: there is no
// new version of its code to load.
import * as fs from "node:fs";
import * as path from "node:path";
import { BuildError } from "./errors.js";
import { isObjectFile, listObjects } from "./source-tree.js";

export interface ObjectPair {
  /** Relative path (the file's name for a pair of files): how messages name it. */
  name: string;
  /** The original build's object; absent for an object new in the patched build. */
  original?: string;
  patched: string;
}

export interface Pairing {
  pairs: ObjectPair[];
  /** Relative paths only the original has. */
  removed: string[];
}

/** Pairs `original` and `patched`: two directories of objects, or two object files. */
export function pairObjects(original: string, patched: string): Pairing {
  const a = kind(original, "--orig");
  const b = kind(patched, "--patched");
  if (a !== b) throw new BuildError("objects", `--orig ${original} is a ${a} and --patched ${patched} a ${b}: give two directories or two object files`);
  if (a === "file") {
    for (const f of [original, patched]) if (!isObjectFile(f)) throw new BuildError("objects", `${f} is not an ELF relocatable object (.o)`);
    return { pairs: [{ name: path.basename(patched), original, patched }], removed: [] };
  }
  const inOriginal = new Set(listObjects(original));
  const inPatched = listObjects(patched);
  if (inPatched.length === 0) throw new BuildError("objects", `--patched ${patched} holds no ELF relocatable object (.o)`);
  const seen = new Set(inPatched);
  return {
    pairs: inPatched.map((rel) => ({ name: rel, original: inOriginal.has(rel) ? path.join(original, rel) : undefined, patched: path.join(patched, rel) })),
    removed: [...inOriginal].filter((rel) => !seen.has(rel)),
  };
}

function kind(p: string, option: string): "directory" | "file" {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new BuildError("objects", `${option} ${p}: no such file or directory`);
  }
  if (st.isDirectory()) return "directory";
  if (st.isFile()) return "file";
  throw new BuildError("objects", `${option} ${p}: not a file or a directory`);
}
