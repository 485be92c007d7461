// Node's way to find and load build/core.wasm, from the sources (tests, tsx) and
// from the CLI bundle in dist/ alike.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Core, loadCoreSync } from "../core/instance.js";

/** src/node/ from the sources; dist/ in the CLI bundle (scripts/build-cli.mjs defines import.meta.url there). */
function here(): string {
  return dirname(fileURLToPath(import.meta.url));
}

export function coreWasmPath(): string {
  const candidates = [join(here(), "../build/core.wasm"), join(here(), "../../build/core.wasm")];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`core.wasm not found (looked in ${candidates.join(", ")}); run \`npm install\` to build it`);
}

let cached: WebAssembly.Module | undefined;

/** A fresh instance of the core (instances are cheap once the module is compiled). */
export function nodeCore(): Core {
  cached ??= new WebAssembly.Module(readFileSync(coreWasmPath()));
  return loadCoreSync(cached);
}
