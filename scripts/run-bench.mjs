// `npm run bench [name...]`: bundles each bench/<name>/main.ts with esbuild and runs it.
// With no names, runs every bench that has a main.ts.
import { build } from "esbuild";
import { readdirSync, existsSync, mkdirSync } from "node:fs";
import { spawnSync } from "node:child_process";

const names = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync("bench").filter((d) => existsSync(`bench/${d}/main.ts`));
mkdirSync("build/bench", { recursive: true });
let failed = 0;
for (const name of names) {
  const outfile = `build/bench/${name}.mjs`;
  await build({
    entryPoints: [`bench/${name}/main.ts`],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    external: ["*.node"],
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    logLevel: "warning",
  });
  console.log(`== bench/${name}`);
  const r = spawnSync(process.execPath, [outfile], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
