// The real program of the tests, nginx from Debian 12 (docs/real-program.md): where its
// source and fix are, how it is built, and the configuration that tells the original
// from the fixed version over HTTP.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export const NGINX_VERSION = "1.22.1-9+deb12u9";
/** Relative to the build directory. */
export const NGINX_BINARY = "objs/nginx";
/** The fixed function and its object. */
export const NGINX_FIXED_FUNCTION = "ngx_http_script_regex_end_code";
export const NGINX_FIXED_OBJECT = "objs/src/http/ngx_http_script.o";

/**
 * Configures and builds nginx the way debian/rules does (--with-cc-opt carries CFLAGS
 * and CPPFLAGS, -fPIC), with the flags `patchc build --debian` puts in the environment,
 * and a small module set: the http core with rewrite (PCRE2) and the default modules,
 * without gzip (zlib) and without SSL.
 */
export const NGINX_BUILD_COMMAND =
  './configure --with-cc-opt="$CFLAGS -fPIC $CPPFLAGS" --with-ld-opt="$LDFLAGS -fPIC" --without-http_gzip_module >configure.log && make -j"$(nproc)" >make.log';

export interface RealNginx {
  tree: string; // the original source tree
  fix: string; // debian/patches/CVE-2026-42945.patch
  cache: string; // the cache directory (builds may be kept below it)
}

/** Downloads (once) and prepares the source (scripts/real-nginx.sh). */
export function realNginx(): RealNginx {
  const cache = process.env.PATCHC_TEST_CACHE ?? "/var/cache/patchc-test";
  const out = execFileSync("bash", [path.join(REPO, "scripts/real-nginx.sh"), cache], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const [tree, fix] = out.trim().split("\n");
  return { tree, fix, cache };
}

/**
 * The reproducer of CVE-2026-42945: after a rewrite whose replacement has arguments, the
 * old ngx_http_script_regex_end_code leaves is_args set, and `set $myvar $1` escapes the
 * capture as an argument ("&" becomes "%26") into a buffer sized for the unescaped value.
 * GET /x%26y answers "/x&y" when fixed and an escaped (and overrun) value when not.
 */
export function reproducerConfig(port: number, prefix: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
error_log ${prefix}/logs/error.log warn;
pid ${prefix}/logs/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    location / {
      rewrite ^(.*) /new?c=1;
      set $myvar $1;
      return 200 $myvar;
    }
  }
}
`;
}

/** The fixed build's package and the two binaries (nginxFixPackage). */
export interface NginxFix {
  /** the original build's binary: what runs, what the package is for */
  target: string;
  /** the fixed build's binary, for reference */
  patchedBinary: string;
  /** the package made by `patchc build` from the Debian fix */
  packageFile: string;
  /** both builds came from the cache (the package was still made by `patchc build`) */
  cached: boolean;
  /** what `patchc build` printed (stderr) */
  log: string;
}

const FIX_ID = "cve-2026-42945";

/**
 * The package of the Debian fix, made by the real `patchc build`. The first time, with
 * `--source` over the original tree and the fix, with the build of test/real-nginx.test.ts
 * (same command, flags and build directory, so the same cache entry of the original
 * build); both builds' objects and binaries are then kept in the cache, under a key of
 * everything the compiler's output depends on (the fix, the command, the compiler,
 * dpkg-buildflags, the build directory). Later times: `patchc build --orig --patched
 * --target` over the cached objects (the same diff and package, without the two
 * builds). The scratch build directory is one per machine: while another test builds
 * in it, this one waits.
 */
export async function nginxFixPackage(dir: string, log: (line: string) => void = () => {}): Promise<NginxFix> {
  const { main } = await import("../../src/cli/main.js");
  const { tree, fix, cache } = realNginx();
  const packageFile = path.join(dir, `${FIX_ID}.patch`);
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        v: 1,
        version: NGINX_VERSION,
        tree,
        fix: readFileSync(fix, "utf8"),
        command: NGINX_BUILD_COMMAND,
        cc: execFileSync("cc", ["--version"], { encoding: "utf8" }),
        flags: execFileSync("dpkg-buildflags", [], { encoding: "utf8", cwd: "/" }),
        scratch: os.tmpdir(),
      }),
    )
    .digest("hex")
    .slice(0, 32);
  const kept = path.join(cache, "builds", `fixed-${key}`);
  const patchc = async (args: string[]): Promise<{ code: number; err: string }> => {
    let err = "";
    const code = await main(args, { out: () => {}, err: (t) => void ((err += t), log(t.trimEnd())), isTTY: false });
    return { code, err };
  };
  if (existsSync(path.join(kept, "complete"))) {
    log(`both builds from the cache ${kept}`);
    mkdirSync(dir, { recursive: true });
    const target = path.join(dir, "nginx");
    copyFileSync(path.join(kept, "target", "nginx"), target);
    chmodSync(target, 0o755);
    const r = await patchc(["build", "--orig", path.join(kept, "original"), "--patched", path.join(kept, "patched"), "--target", target, "--id", FIX_ID, "-o", packageFile]);
    if (r.code !== 0) throw new Error(`patchc build --orig/--patched (nginx, cached builds) failed with exit code ${r.code}:\n${r.err}`);
    return { target, patchedBinary: path.join(kept, "patched-binary", "nginx"), packageFile, cached: true, log: r.err };
  }
  const keep = path.join(dir, "build");
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    const r = await patchc(["build", "--source", tree, "--diff", fix, "--build-cmd", NGINX_BUILD_COMMAND, "--debian", "--binary", NGINX_BINARY, "--cache", path.join(cache, "builds"), "--keep", keep, "--id", FIX_ID, "-o", packageFile]);
    if (r.code === 0) {
      // Kept whole or not at all: copied aside, then renamed.
      const tmp = `${kept}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      cpSync(keep, tmp, { recursive: true });
      writeFileSync(path.join(tmp, "complete"), `${new Date().toISOString()}\n`);
      rmSync(kept, { recursive: true, force: true });
      renameSync(tmp, kept);
      return { target: path.join(keep, "target", "nginx"), patchedBinary: path.join(keep, "patched-binary", "nginx"), packageFile, cached: false, log: r.err };
    }
    if (!/is in use by patchc process \d+/.test(r.err) || Date.now() > deadline) throw new Error(`patchc build --source (nginx) failed with exit code ${r.code}:\n${r.err}`);
    // The other build holds the scratch directory: wait for it, with an empty output.
    rmSync(keep, { recursive: true, force: true });
    await new Promise((res) => setTimeout(res, 5000));
  }
}

/**
 * The reproducer's server (reproducerConfig) as it runs in production: a master process
 * and `workers` worker processes, keep-alive connections kept for as many requests as a
 * load generator sends.
 */
export function masterWorkersConfig(port: number, prefix: string, workers: number): string {
  return reproducerConfig(port, prefix)
    .replace("master_process off;", "master_process on;")
    .replace("worker_processes 1;", `worker_processes ${workers};`)
    .replace("events { worker_connections 256; }", "events { worker_connections 1024; }")
    .replace("  access_log off;\n", "  access_log off;\n  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n");
}
