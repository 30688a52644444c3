/**
 * `llama-napi perplexity --model M --file TEXT`: perplexity on a text file, as llama-perplexity measures it, with
 * an optional KL divergence from a base model.
 */
import { InvalidArgumentError } from "../errors";
import { checkPerplexityOptions, perplexity, type PerplexityResult } from "../eval/perplexity";
import { windowLength } from "../eval/windows";
import type { LlamaModel } from "../model";
import { type CommandSpec, parseCommand, readTextOption, UsageError, MODEL_OPTION, TOKENIZER_OPTION, THREADS_OPTION, CUSTOM_OPS_OPTIONS, customOpsOptions } from "./args";
import { loadModelWithProgress, OFFLINE_OPTION } from "./model-download";
import { ProgressBar } from "./progress-bar";

export const perplexityCommand: CommandSpec = {
  name: "perplexity",
  summary: "Measure perplexity on a text file (and KL divergence from a base model).",
  usage: "llama-napi perplexity --model PATH --file TEXT [--ctx 512] [--llama-cpp-windows] [--doc-separator STR] [--kl-base PATH] [--threads N] [--json]",
  options: {
    model: MODEL_OPTION,
    offline: OFFLINE_OPTION,
    file: { type: "string", short: "f", placeholder: "TEXT", description: "UTF-8 text to score" },
    ctx: {
      type: "string", number: "int", short: "c", placeholder: "N", description: "Window size in predicted tokens (default 512)",
      check: (contextSize) => checkPerplexityOptions({ contextSize: contextSize as number }),
    },
    "llama-cpp-windows": { type: "boolean", description: "Score only the second half of each whole window, as llama-perplexity does" },
    "doc-separator": { type: "string", placeholder: "STR", description: 'Split into documents at STR ("\\n" for newline), each BOS text EOS' },
    "kl-base": { type: "string", placeholder: "PATH", description: "Base model: also report KL(base || model) and top-1 agreement" },
    chunks: {
      type: "string", number: "int", placeholder: "N", description: "Evaluate only the first N windows",
      check: (maxWindows) => checkPerplexityOptions({ maxWindows: maxWindows as number }),
    },
    threads: THREADS_OPTION,
    tokenizer: TOKENIZER_OPTION,
    json: { type: "boolean", description: "Print the result as one JSON object" },
    ...CUSTOM_OPS_OPTIONS,
  },
};

function report(r: PerplexityResult): string {
  const how = r.mode === "llama-cpp" ? "second half of each window (llama.cpp)" : "every predicted token";
  const lines = [
    `${r.tokens} tokens, ${r.windows} windows of ${r.contextSize}, ${r.scored} scored (${how}), ${r.seconds.toFixed(1)} s`,
    `Final estimate: PPL = ${r.ppl.toFixed(4)} +/- ${r.pplError.toFixed(5)}`,
  ];
  if (r.kl) {
    lines.push(
      `Base model PPL on the same tokens: ${r.kl.basePpl.toFixed(4)}`,
      `Mean KLD: ${r.kl.mean.toFixed(6)} ± ${r.kl.error.toFixed(6)}`,
      `Same top token: ${(100 * r.kl.top1Agreement).toFixed(3)} %`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export async function perplexityMain(argv: string[]): Promise<number> {
  const o = parseCommand(perplexityCommand, argv);
  if (typeof o.model !== "string") throw new UsageError("--model is required (see llama-napi perplexity --help)");
  if (typeof o.file !== "string") throw new UsageError("--file is required (see llama-napi perplexity --help)");
  const contextSize = (o.ctx as number | undefined) ?? 512;
  const text = await readTextOption("file", o.file);
  const llamaCppWindows = o["llama-cpp-windows"] === true;
  const windowTokens = windowLength(contextSize, llamaCppWindows ? "llama-cpp" : "all");
  const customOps = customOpsOptions(o);
  const load = (path: string) =>
    loadModelWithProgress(path, {
      offline: o.offline as boolean | undefined,
      threads: o.threads as number | undefined,
      contextSize: windowTokens,
      tokenizer: o.tokenizer as string | undefined,
      ...customOps,
    }).catch((err: unknown) => {
      // The default windows score ctx tokens after a BOS: a model trained at exactly ctx positions has one too few.
      if (err instanceof InvalidArgumentError && err.option === "contextSize" && windowTokens > contextSize) {
        throw new InvalidArgumentError(
          `--ctx ${contextSize}: each window is BOS + ${contextSize} tokens, ${windowTokens} positions, and ${err.message}; ` +
            `pass a smaller --ctx, or --llama-cpp-windows (windows of exactly --ctx tokens)`,
          { option: "contextSize" },
        );
      }
      throw err;
    });
  const models: LlamaModel[] = [];
  const bar = new ProgressBar();
  try {
    const model = await load(o.model);
    models.push(model);
    const base = typeof o["kl-base"] === "string" ? await load(o["kl-base"]) : undefined;
    if (base) models.push(base);
    const result = await perplexity(model, text, {
      contextSize,
      llamaCppWindows,
      base,
      maxWindows: o.chunks as number | undefined,
      documentSeparator: typeof o["doc-separator"] === "string" ? o["doc-separator"].replaceAll("\\n", "\n") : undefined,
      onProgress: (p) => bar.update(p.windowsDone, p.windows, `PPL ${p.ppl.toFixed(4)}`),
    });
    bar.finish();
    process.stdout.write(o.json ? `${JSON.stringify(result)}\n` : report(result));
    return 0;
  } finally {
    bar.finish();
    await Promise.all(models.map((m) => m.dispose()));
  }
}
