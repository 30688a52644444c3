/** `llama-napi run`: stream a completion to stdout, speed figures to stderr. */
import { loadModel } from "../model";
import { SAMPLING_DEFAULTS } from "../sampling/sampler";
import { type CommandSpec, parseCommand, UsageError, MODEL_OPTION, TOKENIZER_OPTION, THREADS_OPTION } from "./args";

export const runCommand: CommandSpec = {
  name: "run",
  summary: "Generate text from a prompt, streaming it to stdout; prefill and decode speed go to stderr.",
  usage: "llama-napi run --model PATH --prompt TEXT [options]",
  options: {
    model: MODEL_OPTION,
    prompt: { type: "string", short: "p", placeholder: "TEXT", description: "The prompt (default: empty, start from BOS)" },
    tokenizer: TOKENIZER_OPTION,
    "max-tokens": { type: "string", number: "int", short: "n", placeholder: "N", description: "Tokens to generate (default 256)" },
    temperature: { type: "string", number: "float", short: "t", placeholder: "T", description: `Sampling temperature, 0 = greedy (default ${SAMPLING_DEFAULTS.temperature})` },
    "top-k": { type: "string", number: "int", placeholder: "K", description: `Keep the K most likely tokens, 0 = off (default ${SAMPLING_DEFAULTS.topK})` },
    "top-p": { type: "string", number: "float", placeholder: "P", description: `Nucleus sampling mass, 1 = off (default ${SAMPLING_DEFAULTS.topP})` },
    "min-p": { type: "string", number: "float", placeholder: "M", description: `Drop tokens below M x the top probability (default ${SAMPLING_DEFAULTS.minP})` },
    seed: { type: "string", number: "int", short: "s", placeholder: "S", description: "Random seed (default: random)" },
    threads: { ...THREADS_OPTION, short: undefined }, // -t is --temperature here
    "ctx-size": { type: "string", number: "int", short: "c", placeholder: "N", description: "Context size (default: the model's, at most 4096)" },
    "ignore-eos": { type: "boolean", description: "Keep generating past end-of-sequence tokens" },
  },
};

export async function run(argv: string[]): Promise<number> {
  const o = parseCommand(runCommand, argv);
  if (typeof o.model !== "string") throw new UsageError("--model is required (see llama-napi run --help)");
  const model = await loadModel(o.model, {
    threads: o.threads as number | undefined,
    contextSize: o["ctx-size"] as number | undefined,
    tokenizer: o.tokenizer as string | undefined,
  });
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  try {
    const prompt = (o.prompt as string | undefined) ?? "";
    process.stdout.write(prompt);
    const it = model.generate(prompt, {
      maxTokens: (o["max-tokens"] as number | undefined) ?? 256,
      temperature: o.temperature as number | undefined,
      topK: o["top-k"] as number | undefined,
      topP: o["top-p"] as number | undefined,
      minP: o["min-p"] as number | undefined,
      seed: o.seed as number | undefined,
      ignoreEos: o["ignore-eos"] as boolean | undefined,
      signal: abort.signal,
    });
    for (;;) {
      const step = await it.next();
      if (step.done) {
        const { stats, finishReason } = step.value;
        process.stdout.write("\n");
        process.stderr.write(
          `\nprefill: ${stats.promptTokens} tokens, ${stats.prefillTps.toFixed(1)} tok/s | ` +
            `decode: ${stats.genTokens} tokens, ${stats.decodeTps.toFixed(1)} tok/s | finish: ${finishReason}\n`,
        );
        break;
      }
      process.stdout.write(step.value.text);
    }
  } finally {
    process.off("SIGINT", onSigint);
    await model.dispose();
  }
  return 0;
}
