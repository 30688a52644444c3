/** `llama-napi pull MODEL`: downloads a model from the Hub (or a URL) into the cache, or brings it up to date. */
import { pullModel } from "../hub";
import { type CommandSpec, parseCommand } from "./args";
import { downloadProgressBar, formatBytes } from "./model-download";

export const pullCommand: CommandSpec = {
  name: "pull",
  summary: "Download a model from the Hugging Face Hub or a URL into the cache, or bring a cached one up to date.",
  usage: "llama-napi pull hf:OWNER/REPO[@REVISION][/PATH] | URL",
  positionals: ["model"],
  options: {
    json: { type: "boolean", description: "Print one JSON object: spec, path, files, bytes, complete" },
  },
};

export async function pull(argv: string[]): Promise<number> {
  const o = parseCommand(pullCommand, argv);
  const progress = downloadProgressBar();
  const model = await pullModel(o.model as string, { onProgress: progress.onProgress }).finally(progress.finish);
  if (o.json) {
    process.stdout.write(`${JSON.stringify(model)}\n`);
    return 0;
  }
  const files = model.files > 1 ? ` in ${model.files} files` : "";
  process.stdout.write(`${model.spec}: ${formatBytes(model.bytes)}${files} at ${model.path}\n`);
  return 0;
}
