/** `llama-napi ls`: the models in the download cache, with their sizes and local paths. */
import { cacheRoot } from "../hub/cache";
import { listCachedModels } from "../hub";
import { type CommandSpec, parseCommand } from "./args";
import { formatBytes } from "./model-download";

export const lsCommand: CommandSpec = {
  name: "ls",
  summary: "List the models in the download cache ($LLAMA_NAPI_CACHE, default ~/.cache/llama-napi).",
  usage: "llama-napi ls [--json]",
  options: {
    json: { type: "boolean", description: "Print one JSON object per model" },
  },
};

/** Rows of cells, each column padded to its widest cell. */
function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  return rows.map((row) => row.map((cell, col) => (col < row.length - 1 ? cell.padEnd(widths[col]) : cell)).join("  ")).join("\n");
}

export async function ls(argv: string[]): Promise<number> {
  const o = parseCommand(lsCommand, argv);
  const models = listCachedModels();
  if (o.json) {
    for (const m of models) process.stdout.write(`${JSON.stringify(m)}\n`);
  } else if (models.length === 0) {
    process.stdout.write(`no models in the cache (${cacheRoot()})\n`);
  } else {
    const rows = models.map((m) => [
      m.spec,
      `${formatBytes(m.bytes)}${m.complete ? "" : " (partial)"}`,
      String(m.files),
      m.path,
    ]);
    process.stdout.write(`${formatTable([["MODEL", "SIZE", "FILES", "PATH"], ...rows])}\n`);
  }
  return 0;
}
