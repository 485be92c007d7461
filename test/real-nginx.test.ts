// The real program (docs/real-program.md): nginx 1.22.1 from Debian 12, built twice by
// the source-tree path of `patchc build` — the original (debian/patches up to, excluding,
// CVE-2026-42945.patch) and the original with that fix — with dpkg-buildflags plus
// function and data sections. The fix adds one line to ngx_http_script_regex_end_code:
// exactly one object may change, and in it only that function's code; every other
// object must come out byte for byte the same. Both binaries serve the reproducer, and
// the two answers tell the versions apart.
//
// Slow: two full nginx builds (minutes on 2 cores); the original build is cached
// (PATCHC_TEST_CACHE, /var/cache/patchc-test by default), so later runs build once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSourceTree, type SourceBuildResult } from "../src/build/source-tree.js";
import { ElfReader } from "../src/core/elf.js";
import { diffBuilds } from "../src/build/build-diff.js";
import { pairObjects } from "../src/build/objects.js";
import { makePackage } from "../src/build/make-package.js";
import { proveIdentity } from "../src/build/identity.js";
import { ObjectFile } from "../src/build/object-file.js";
import { BuildError } from "../src/build/errors.js";
import { STT_FUNC, TargetImage } from "../src/build/target.js";
import { listObjects } from "../src/build/source-tree.js";
import { decodePackage } from "../src/format/reader.js";
import { writePackageFile } from "../src/format/writer.js";
import { execFileSync as exec } from "node:child_process";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { connects, freePort, httpGet } from "./fixtures/server/harness.js";
import { NGINX_BUILD_COMMAND, NGINX_BINARY, realNginx, reproducerConfig } from "./helpers/nginx.js";

const core = nodeCore();
const scratch = new Scratch();
let r: SourceBuildResult;

beforeAll(async () => {
  const { tree, fix, cache } = realNginx();
  r = await buildSourceTree({
    source: tree,
    diff: fix,
    buildCommand: NGINX_BUILD_COMMAND,
    debian: true,
    binary: NGINX_BINARY,
    output: scratch.path("out"),
    cache: path.join(cache, "builds"),
    log: (l) => process.stderr.write(`real-nginx: ${l}\n`),
  });
  process.stderr.write(`real-nginx: original build ${r.cached ? "cached" : `${(r.millis.original / 1000).toFixed(1)} s`}, patched build ${(r.millis.patched / 1000).toFixed(1)} s\n`);
}, 30 * 60_000);
afterAll(() => scratch.remove());

/** Sections of an object with their contents (nobits: empty). */
function sections(file: string): Map<string, Buffer> {
  const data = fs.readFileSync(file);
  const e = new ElfReader(core, data, file);
  try {
    const m = new Map<string, Buffer>();
    for (const s of e.sections()) {
      const bytes = s.type === 8 ? Buffer.alloc(0) : data.subarray(Number(s.offset), Number(s.offset) + Number(s.size));
      m.set(s.name, bytes);
    }
    return m;
  } finally {
    e.close();
  }
}

describe("nginx from Debian, built twice with its fix CVE-2026-42945", () => {
  it("changes exactly ngx_http_script.o, every other object byte for byte the same", () => {
    expect(r.objects.length).toBeGreaterThanOrEqual(100);
    expect(r.added).toEqual([]);
    expect(r.removed).toEqual([]);
    const differ = r.objects.filter((o) => !fs.readFileSync(path.join(r.original, o)).equals(fs.readFileSync(path.join(r.patched, o))));
    expect(differ).toEqual(["objs/src/http/ngx_http_script.o"]);
  });

  it("changes in ngx_http_script.o only the code of ngx_http_script_regex_end_code (and its debug info)", () => {
    const rel = "objs/src/http/ngx_http_script.o";
    const a = sections(path.join(r.original, rel));
    const b = sections(path.join(r.patched, rel));
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    const changed = [...a.keys()].filter((n) => !a.get(n)!.equals(b.get(n)!));
    const code = changed.filter((n) => !n.startsWith(".debug_") && !n.startsWith(".rela.debug_"));
    // .eh_frame holds the function's FDE (its length and CFA rules can change with it).
    expect(code.filter((n) => n !== ".eh_frame" && n !== ".rela.eh_frame")).toEqual([".text.ngx_http_script_regex_end_code"]);
    expect(r.flags.CFLAGS).toMatch(/-ffile-prefix-map=\S+=\. .*-ffunction-sections -fdata-sections$/);
  });

  it("diffs to exactly the fixed function: nothing else to replace or add, no refusal", () => {
    // ngx_http_script_regex_end_code is called only through the script engine's code
    // pointers, never directly: no caller inlines it, so the fix touches no other function.
    const d = diffBuilds(core, pairObjects(r.original, r.patched).pairs);
    expect(d.pairs).toBe(r.objects.length);
    expect(d.replace.map((c) => `${c.object}: ${c.name} (${c.reason})`)).toEqual(["objs/src/http/ngx_http_script.o: ngx_http_script_regex_end_code (bytes)"]);
    expect(d.add).toEqual([]);
    expect(d.lineOnly).toEqual([]);
  });

  it("proves every function of the original objects against the original binary, and only the fixed one fails against the fixed binary", () => {
    const failures = (binary: string) => {
      const t = new TargetImage(core, binary);
      const failed: string[] = [];
      let proven = 0;
      try {
        for (const rel of listObjects(r.original)) {
          const o = new ObjectFile(core, path.join(r.original, rel), rel);
          try {
            for (const s of o.symbols) {
              if (s.type !== STT_FUNC || s.shndx === 0) continue;
              const found = t.find(s.name, s.bind === 0, o.sourceFile);
              if (!found) {
                failed.push(`${rel}: ${s.name}: not in the binary`);
                continue;
              }
              try {
                proveIdentity(t, o, s, found.sym.value, found.sym.size);
                proven++;
              } catch (e) {
                if (!(e instanceof BuildError)) throw e;
                failed.push(`${rel}: ${s.name}`);
              }
            }
          } finally {
            o.close();
          }
        }
      } finally {
        t.close();
      }
      return { proven, failed };
    };
    const same = failures(r.target!);
    expect(same.failed).toEqual([]);
    expect(same.proven).toBeGreaterThan(1000);
    // The fixed binary has other addresses for everything: the proof follows them, and
    // refuses only the code that really differs.
    const other = failures(r.patchedBinary!);
    expect(other.failed).toEqual(["objs/src/http/ngx_http_script.o: ngx_http_script_regex_end_code"]);
  });

  it("makes the package: ngx_http_script_regex_end_code replaced, its strings with it, every reference bound", () => {
    const pairs = pairObjects(r.original, r.patched).pairs;
    const made = makePackage(core, { target: r.target!, patchId: "cve-2026-42945", pairs, diff: diffBuilds(core, pairs) });
    const file = scratch.path("cve-2026-42945.patch");
    const pkg = decodePackage(core, writePackageFile(file, made.package), file).model;
    expect(pkg.functions.map((f) => `${f.kind} ${f.name}`)).toEqual(["replace ngx_http_script_regex_end_code"]);
    const f = pkg.functions[0];
    const nm = exec("nm", [r.target!], { encoding: "utf8" });
    expect(`${f.original!.addr.toString(16).padStart(16, "0")} T ngx_http_script_regex_end_code`).toBe(nm.split("\n").find((l) => l.endsWith(" ngx_http_script_regex_end_code")));
    expect(pkg.sections.map((s) => s.name).filter((n) => n.startsWith(".rodata.ngx_http_script_regex_end_code")).sort()).toEqual([
      ".rodata.ngx_http_script_regex_end_code.str1.1",
      ".rodata.ngx_http_script_regex_end_code.str1.8",
    ]);
    // Functions and data of nginx by their address in the binary; libc through nginx's own PLT.
    const plt = new Map<string, bigint>();
    for (const line of exec("objdump", ["-d", "-j", ".plt", "-j", ".plt.sec", r.target!], { encoding: "utf8" }).split("\n")) {
      const m = /^([0-9a-f]+) <(\w+)@plt>:$/.exec(line);
      if (m) plt.set(m[2], BigInt(`0x${m[1]}`));
    }
    for (const ref of pkg.references) {
      if (ref.scope === "module") {
        const line = nm.split("\n").find((l) => l.endsWith(` ${ref.name}`));
        expect(line, ref.name).toBeDefined();
        expect(BigInt(`0x${line!.split(" ")[0]}`), ref.name).toBe(ref.addr);
      } else {
        expect(ref.bind, ref.name).toBe("plt");
        expect(ref.pltEntry, ref.name).toBe(plt.get(ref.name));
      }
    }
    expect(pkg.references.map((x) => x.name).sort()).toEqual([
      "__stack_chk_fail",
      "memcpy",
      "memmove",
      "ngx_http_script_exit_code",
      "ngx_http_set_exten",
      "ngx_list_push",
      "ngx_log_error_core",
      "ngx_unescape_uri",
    ]);
  });

  it("serves the reproducer: the original escapes $1 after a rewrite with arguments, the fixed one does not", async () => {
    const original = await serve(r.target!, "original");
    const fixed = await serve(r.patchedBinary!, "patched");
    try {
      // /x&y: after `rewrite ^(.*) /new?c=1`, the old code keeps is_args set and escapes the
      // capture as an argument ("&" -> "%26") into a buffer sized for the unescaped value.
      const before = await httpGet(original.port, "/x%26y");
      const after = await httpGet(fixed.port, "/x%26y");
      expect(after).toEqual({ status: 200, body: "/x&y" });
      // Escaped ("/x%26y") and cut to the length of the unescaped value, 4 bytes.
      expect(before).toEqual({ status: 200, body: "/x%2" });
      // Without anything to escape, both agree.
      expect(await httpGet(original.port, "/plain")).toEqual({ status: 200, body: "/plain" });
      expect(await httpGet(fixed.port, "/plain")).toEqual({ status: 200, body: "/plain" });
    } finally {
      original.stop();
      fixed.stop();
    }
  });
});

interface Server {
  port: number;
  stop(): void;
}

/** Runs `binary` in the foreground with the reproducer's configuration on a free port. */
async function serve(binary: string, name: string): Promise<Server> {
  const port = await freePort();
  const prefix = scratch.path(`prefix-${name}`);
  fs.mkdirSync(path.join(prefix, "logs"), { recursive: true });
  fs.mkdirSync(path.join(prefix, "tmp"), { recursive: true });
  fs.writeFileSync(path.join(prefix, "nginx.conf"), reproducerConfig(port, prefix));
  execFileSync(binary, ["-t", "-p", prefix, "-c", path.join(prefix, "nginx.conf")], { stdio: "pipe" });
  const child: ChildProcess = spawn(binary, ["-p", prefix, "-c", path.join(prefix, "nginx.conf")], { stdio: "ignore" });
  const stop = () => void child.kill("SIGKILL");
  for (let i = 0; i < 200; i++) {
    if (await connects(port)) return { port, stop };
    if (child.exitCode !== null) break;
    await new Promise((res) => setTimeout(res, 25));
  }
  stop();
  throw new Error(`${name} nginx did not listen on ${port}: ${fs.readFileSync(path.join(prefix, "logs", "error.log"), "utf8")}`);
}
