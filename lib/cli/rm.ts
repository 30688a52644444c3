/** `llama-napi rm MODEL`: deletes a model (finished or partial download) from the cache. */
import { removeCachedModel } from "../hub";
import { type CommandSpec, parseCommand } from "./args";
import { formatBytes } from "./model-download";

export const rmCommand: CommandSpec = {
  name: "rm",
  summary: "Remove a model from the download cache.",
  usage: "llama-napi rm MODEL (a spec as llama-napi ls prints it)",
  positionals: ["model"],
  options: {},
};

export async function rm(argv: string[]): Promise<number> {
  const o = parseCommand(rmCommand, argv);
  const model = removeCachedModel(o.model as string);
  process.stdout.write(`removed ${model.spec} (${formatBytes(model.bytes)})\n`);
  return 0;
}
