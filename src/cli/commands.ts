// The table of commands. Each lives in its own module; this is the only list.
import type { Command } from "./command.js";
import { buildCommand } from "./build-command.js";
import { inspectCommand } from "./inspect-command.js";
import { applyCommand } from "./apply-command.js";
import { revertCommand } from "./revert-command.js";
import { statusCommand } from "./status-command.js";

export const commands: Command[] = [buildCommand, inspectCommand, applyCommand, revertCommand, statusCommand];
