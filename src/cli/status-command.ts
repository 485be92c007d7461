// `patchc status PID [--json]`: what is applied to a process, read from the process itself
// (the header of each patch region), so it works from any later patchc.
//
//   process 1234: 2 patches
//   fix-1  3f2a9c0d81b4  active   /usr/sbin/nginx (build-id 0123456789abcdef)  region 0x7f12a4000000 (8 KiB)  applied 2026-11-27 08:01:02 UTC
//     parse   0x55d0c7a01230 -> 0x7f12a4001040  superseded by fix-2
//     check   0x55d0c7a01300 -> 0x7f12a40010a0  current
import type { Command } from "./command.js";
import { EXIT_OK } from "./exit-codes.js";
import { pidArg } from "./options.js";
import { nodeCore } from "../node/core-file.js";
import type { StatusReport } from "../apply/contract.js";
import { ApplyError } from "../apply/errors.js";
import { hex, reportFailure, requireProcess, size, toJson, type ApplyLibrary } from "./apply-command.js";
import * as engine from "../apply/index.js";

const when = (d: Date): string => (Number.isNaN(d.getTime()) ? "at an unknown time" : `applied ${d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC")}`);

/** A status report; `problems`: what the library could not read (a region whose header is damaged, ...). */
export function formatStatus(s: StatusReport & { problems?: string[] }): string {
  const problems = (s.problems ?? []).map((p) => `problem: ${p}\n`).join("");
  if (s.patches.length === 0) return `process ${s.pid}: no patches applied\n${problems}`;
  const lines = [`process ${s.pid}: ${s.patches.length} patch${s.patches.length === 1 ? "" : "es"}`];
  const idW = Math.max(...s.patches.map((p) => p.patchId.length));
  s.patches.forEach((p, i) => {
    lines.push(
      `${p.patchId.padEnd(idW)}  ${p.hash.slice(0, 12)}  ${p.state.padEnd(7)}  ${p.module.path} (build-id ${p.module.buildId.slice(0, 16)})  region ${hex(p.region.base)} (${size(p.region.size)})  ${when(p.appliedAt)}`,
    );
    const w = Math.max(0, ...p.functions.map((f) => f.name.length));
    for (const f of p.functions) {
      // Who superseded it: a later patch whose jump at the same site replaced this one's.
      const by = s.patches.slice(i + 1).find((q) => q.functions.some((g) => g.site === f.site && g.previous === p.patchId));
      const state = f.current ? "current" : by ? `superseded by ${by.patchId}` : "superseded";
      lines.push(`  ${f.name.padEnd(w)}  ${hex(f.site)} -> ${hex(f.newAddr)}  ${state}${f.previous ? ` (over ${f.previous})` : ""}`);
    }
  });
  return lines.join("\n") + "\n" + problems;
}

export function statusCommandWith(lib: Pick<ApplyLibrary, "readStatus">): Command {
  return {
    spec: {
      name: "status",
      summary: "show the patches applied to a running process (read from the process)",
      usage: "PID",
      minArgs: 1,
      maxArgs: 1,
      options: [],
    },
    async run(args, io) {
      const pid = pidArg(args.args[0], "status");
      const json = args.options.json === true;
      try {
        requireProcess(pid);
        const report = await lib.readStatus(pid, { core: nodeCore() });
        io.out(json ? toJson(report) : formatStatus(report));
        return EXIT_OK;
      } catch (e) {
        if (e instanceof ApplyError) return reportFailure(e, json, io);
        throw e;
      }
    },
  };
}

export const statusCommand: Command = statusCommandWith(engine);
