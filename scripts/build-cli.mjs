// Bundles the CLI (src/cli/main.ts) into dist/patchc.cjs with esbuild.
import { build } from "esbuild";
import { readFileSync, chmodSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
await build({
  entryPoints: ["src/cli/main.ts"],
  outfile: "dist/patchc.cjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  banner: { js: "#!/usr/bin/env node\nvar __import_meta_url = require(\"node:url\").pathToFileURL(__filename).href;" },
  define: { "import.meta.url": "__import_meta_url", __PATCHC_VERSION__: JSON.stringify(pkg.version) },
  external: ["*.node"],
  logLevel: "warning",
});
chmodSync("dist/patchc.cjs", 0o755);
