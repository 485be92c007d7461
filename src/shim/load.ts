// Finds and loads the addon and the tracer executable that node-gyp builds into
// shim/build/Release (`npm run build:addon`), from the sources (src/shim/) and from
// the CLI bundle (dist/) alike.
import { existsSync } from "node:fs";
import * as nodeModule from "node:module"; // not `createRequire` by name: bundles may declare it in a banner
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NativeShim } from "./native.js";

function here(): string {
  return dirname(fileURLToPath(import.meta.url));
}

/** shim/build/Release of this checkout or package. */
export function shimBuildDir(): string {
  const candidates = [join(here(), "../../shim/build/Release"), join(here(), "../shim/build/Release")];
  for (const c of candidates) if (existsSync(join(c, "patchc_shim.node"))) return c;
  throw new Error(`the native shim is not built (looked in ${candidates.join(", ")}); run \`npm run build:addon\``);
}

export function tracerPath(): string {
  return join(shimBuildDir(), "patchc-tracer");
}

let cached: NativeShim | undefined;

export function loadNative(): NativeShim {
  if (!cached) {
    const load = nodeModule.createRequire(import.meta.url);
    cached = load(join(shimBuildDir(), "patchc_shim.node")) as NativeShim;
  }
  return cached;
}
