// applyPatch / readStatus / revertPatch / apply --all on a process in another root (issue 6:
// "Finds the module by build-id read from the target ... never by path: an upgraded library
// shows as "(deleted)", and a process in a container sees its own files (/proc/PID/root)").
//
// The target (simple.c, linked -static-pie, and -static: it needs no library inside the root) runs as
// in a container: `unshare --mount [--pid] --fork --kill-child sh -c SCRIPT`, SCRIPT mounting
// a tmpfs on ROOT in the new mount namespace (the host's ROOT stays an empty directory),
// copying the binary to ROOT/srv/app, and making ROOT the namespace's root mount
// (pivot_root, as container runtimes do) before exec'ing /srv/app. A plain chroot would not
// do: /proc/PID/maps prints paths relative to the reader's root, so from the host a chroot's
// file shows under its host path; a file on the namespace's own root mount shows as the
// container sees it, "/srv/app", which does not exist here. The package is built against
// the host copy and must be matched by build-id. Its perf map goes to the target's
// /tmp/perf-NSPID.map (on the tmpfs, seen from here as /proc/PID/root/tmp), NSPID being its
// pid as it sees it (1 in its own pid namespace). Then the file is unlinked in the target's
// root (the maps show "/srv/app (deleted)") and the apply still finds it.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { applyPatch, readStatus, revertPatch } from "../src/apply/index.js";
import { binaryIdentity, findProcesses } from "../src/apply/all.js";
import { readPackageFile, type ReadPackage } from "../src/format/reader.js";
import { nodeCore } from "../src/node/core-file.js";
import { Scratch } from "./helpers/gcc.js";
import { LiveTarget, buildModule, buildPatch, patchc, stopAll, until, type BuiltModule } from "./helpers/apply.js";

const core = nodeCore();
const scratch = new Scratch();
/** by link: the module, its package file and the package read */
const built: Record<string, { simple: BuiltModule; pkgFile: string; pkg: ReadPackage }> = {};
const LINKS: Record<string, { cflags: string[]; ldflags: string[] }> = {
  "-static-pie": { cflags: ["-fPIE"], ldflags: ["-static-pie"] },
  "-static": { cflags: ["-fno-pie"], ldflags: ["-static"] },
};

beforeAll(async () => {
  for (const [link, f] of Object.entries(LINKS)) {
    const simple = buildModule(scratch, { name: "simple", dir: `simple${link}`, sources: ["simple.c"], ...f });
    const pkgFile = await buildPatch(simple, "simple-1");
    built[link] = { simple, pkgFile, pkg: readPackageFile(core, pkgFile) };
  }
});
afterEach(stopAll);
afterAll(async () => {
  await stopAll();
  scratch.remove();
});

/** The pid (as the host sees it) of the only child of `pid`. */
function childOf(pid: number): number | undefined {
  const kids = readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
  return kids.length === 1 ? kids[0] : undefined;
}

/** The process running /srv/app: the child of unshare (sh exec'd it). */
async function containerTarget(root: string, binary: string, unshareFlags: string[]): Promise<{ t: LiveTarget; pid: number; nspid: number; ready: Record<string, string> }> {
  const { t, ready } = await LiveTarget.start("unshare", [...unshareFlags, "--fork", "--kill-child", ...script(root, binary)]);
  let pid = 0;
  await until(() => (pid = childOf(t.pid) ?? 0) > 0, 5000, "unshare's child");
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const ns = /^NStgid:\s*(.*)$/m.exec(status)![1].trim().split(/\s+/).map(Number);
  return { t, pid, nspid: ns[ns.length - 1], ready };
}

/** Kills the target itself (--kill-child should have, with unshare). */
function kill(pid: number | undefined): void {
  try {
    if (pid) process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

/** An empty directory: the target's root mount (a tmpfs in its own namespace) goes there. */
function makeRoot(name: string): string {
  const root = scratch.path(name);
  mkdirSync(root, { recursive: true });
  return root;
}

/** The target's script: a tmpfs on ROOT holding srv/app and tmp/, made the root mount by pivot_root; then exec /srv/app. */
function script(root: string, binary: string): string[] {
  const q = (x: string) => `'${x.replace(/'/g, "'\\''")}'`;
  return [
    "sh",
    "-c",
    `set -e; mount --make-rprivate /; mount -t tmpfs tmpfs ${q(root)}; cd ${q(root)}; mkdir srv tmp old; cp ${q(binary)} srv/app; pivot_root . old; exec /srv/app`,
  ];
}

async function call(t: LiveTarget): Promise<string> {
  return (await t.ask("call", "call")).r;
}

describe.each([
  ["-static-pie", "a mount namespace and root", ["--mount"]],
  ["-static-pie", "a mount and pid namespace and root", ["--mount", "--pid"]],
  ["-static", "a mount namespace and root", ["--mount"]],
  ["-static", "a mount and pid namespace and root", ["--mount", "--pid"]],
])("%s: a process in %s", (link, _what, flags) => {
  it("is patched by build-id (its maps name /srv/app, absent here); status, perf map in its root under its own pid, revert, --all by the host binary", async () => {
    const { simple, pkgFile, pkg } = built[link];
    const root = makeRoot(`root${link}-${flags.length}`);
    let target: LiveTarget | undefined;
    let hostPid: number | undefined;
    try {
      const { t, pid, nspid, ready } = await containerTarget(root, simple.path, flags);
      target = t;
      hostPid = pid;
      expect(Number(ready.pid), "the fixture prints its own pid").toBe(nspid);
      if (flags.includes("--pid")) expect(nspid).toBe(1);
      else expect(nspid).toBe(pid);
      expect(existsSync("/srv/app")).toBe(false);
      expect(readdirSync(root), "the host's ROOT stays empty").toEqual([]);
      expect(readlinkSync(`/proc/${pid}/exe`)).toBe("/srv/app");
      const maps = readFileSync(`/proc/${pid}/maps`, "utf8");
      expect(maps).toMatch(/ \/srv\/app\n/);
      expect(maps).not.toContain(simple.path);
      expect(await call(t)).toBe("1");

      const r = await applyPatch(pid, pkg, { core, timeoutMs: 20000 });
      expect(r.patchId).toBe("simple-1");
      expect(r.module.path).toBe("/srv/app");
      expect(r.module.buildId).toBe(pkg.model.target.buildId);
      expect(r.functions.map((f) => f.name)).toEqual(["answer"]);
      expect(await call(t)).toBe("2");

      const perfMap = `/proc/${pid}/root/tmp/perf-${nspid}.map`;
      const lines = readFileSync(perfMap, "utf8").split("\n");
      for (const f of r.functions) expect(lines.some((l) => l.startsWith(`${f.newAddr.toString(16)} `) && l.endsWith(`patchc:simple-1:${f.name}`)), `${perfMap}: ${f.name}`).toBe(true);
      expect(readdirSync(`/proc/${pid}/root/tmp`), "one map, under the pid the target has").toEqual([`perf-${nspid}.map`]);
      expect(existsSync(`/tmp/perf-${pid}.map`), "no map in the host's /tmp").toBe(false);

      const st = await readStatus(pid, { core });
      expect(st.patches.map((p) => [p.patchId, p.state, p.hash])).toEqual([["simple-1", "active", r.hash]]);

      const rv = await revertPatch(pid, "simple-1", { core, timeoutMs: 20000 });
      expect(rv.reverted.map((x) => x.patchId)).toEqual(["simple-1"]);
      expect(await call(t)).toBe("1");
      expect((await readStatus(pid, { core })).patches).toEqual([]);

      // --all with the host's copy: another inode, the same build-id.
      const id = binaryIdentity(core, simple.path);
      expect(id.executable).toBe(true);
      const scan = findProcesses(core, id);
      expect(scan.matches.filter((m) => m.pid === pid)).toEqual([{ pid, path: "/srv/app", deleted: false, by: "build-id" }]);
      expect(scan.matches.some((m) => m.pid === t.pid), "unshare itself is not a match").toBe(false);

      const a = await patchc("apply", "--all", simple.path, pkgFile, "--json");
      expect(a.code, a.err + a.out).toBe(0);
      const outcomes = JSON.parse(a.out) as Array<{ pid: number; ok: boolean; report?: { patchId: string } }>;
      const mine = outcomes.filter((o) => o.pid === pid);
      expect(mine.map((o) => [o.ok, o.report?.patchId]), JSON.stringify(outcomes)).toEqual([[true, "simple-1"]]);
      expect(await call(t)).toBe("2");
      const rv2 = await patchc("revert", String(pid), "simple-1", "--json");
      expect(rv2.code, rv2.err + rv2.out).toBe(0);
      expect(await call(t)).toBe("1");
      expect(t.alive).toBe(true);
      expect(t.stderr).toBe("");
    } finally {
      kill(hostPid);
      await target?.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("is patched after its file was unlinked in its root (maps: \"/srv/app (deleted)\"); --all still finds it", async () => {
    const { simple, pkg } = built[link];
    const root = makeRoot(`root-del${link}-${flags.length}`);
    let target: LiveTarget | undefined;
    let hostPid: number | undefined;
    try {
      const { t, pid, nspid } = await containerTarget(root, simple.path, flags);
      target = t;
      hostPid = pid;
      unlinkSync(`/proc/${pid}/root/srv/app`);
      expect(readFileSync(`/proc/${pid}/maps`, "utf8")).toContain(" /srv/app (deleted)\n");

      const scan = findProcesses(core, binaryIdentity(core, simple.path));
      expect(scan.matches.filter((m) => m.pid === pid)).toEqual([{ pid, path: "/srv/app", deleted: true, by: "build-id" }]);

      const r = await applyPatch(pid, pkg, { core, timeoutMs: 20000 });
      expect(r.module.path).toBe("/srv/app");
      expect(r.module.buildId).toBe(pkg.model.target.buildId);
      expect(await call(t)).toBe("2");
      expect((await readStatus(pid, { core })).patches.map((p) => [p.patchId, p.state])).toEqual([["simple-1", "active"]]);
      await revertPatch(pid, "simple-1", { core, timeoutMs: 20000 });
      expect(await call(t)).toBe("1");
      expect(t.stderr).toBe("");
    } finally {
      kill(hostPid);
      await target?.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
