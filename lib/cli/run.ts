/** `llama-napi run`: stream a completion to stdout, speed figures to stderr; or, with --json, one JSON object. */
import { DownloadError } from "../hub";
import { type CommandSpec, parseCommand, MODEL_OPTION, TOKENIZER_OPTION, THREADS_OPTION } from "./args";
import { loadModelWithProgress, OFFLINE_OPTION, resolveModel } from "./model-download";
import { generateOptions, SAMPLING_OPTIONS } from "./sampling-options";

/**
 * The model run uses without --model: llama2.c's 260K-parameter TinyStories model as GGUF (1.2 MB), from ggml-org's
 * test-model repository (renamed from ggml-org/models), pinned to a commit so that it never changes under us.
 */
export const DEFAULT_MODEL = "hf:ggml-org/models-moved@499bc8821c6b12b4e53c5bffcb21ec206f212d81/tinyllamas/stories260K.gguf";

export const runCommand: CommandSpec = {
  name: "run",
  summary: "Generate text from a prompt, streaming it to stdout; prefill and decode speed go to stderr.",
  usage: "llama-napi run [--model PATH|hf:OWNER/REPO/FILE|URL] --prompt TEXT [options]",
  options: {
    model: { ...MODEL_OPTION, description: `${MODEL_OPTION.description} (default: a 1.2 MB TinyStories model, ${DEFAULT_MODEL})` },
    offline: OFFLINE_OPTION,
    prompt: { type: "string", short: "p", placeholder: "TEXT", description: "The prompt (default: empty, start from BOS)" },
    tokenizer: TOKENIZER_OPTION,
    ...SAMPLING_OPTIONS,
    temperature: { ...SAMPLING_OPTIONS.temperature, short: "t" },
    threads: { ...THREADS_OPTION, short: undefined }, // -t is --temperature here
    "ctx-size": { type: "string", number: "int", short: "c", placeholder: "N", description: "Context size (default: the model's, at most 4096)" },
    json: { type: "boolean", description: "Print one JSON object at the end (text, tokens, finishReason, stats) instead of streaming" },
  },
};

export async function run(argv: string[]): Promise<number> {
  const o = parseCommand(runCommand, argv);
  const path = await resolveModel((o.model as string | undefined) ?? DEFAULT_MODEL, o.offline as boolean | undefined).catch((err: unknown) => {
    if (o.model !== undefined || !(err instanceof DownloadError)) throw err;
    throw new DownloadError(
      `no --model given, and the default model could not be fetched: ${err.message}\n` +
        `pass --model PATH, or run "llama-napi pull ${DEFAULT_MODEL}" once online`,
      { status: err.status, cause: err },
    );
  });
  const model = await loadModelWithProgress(path, {
    threads: o.threads as number | undefined,
    contextSize: o["ctx-size"] as number | undefined,
    tokenizer: o.tokenizer as string | undefined,
  });
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  try {
    const prompt = (o.prompt as string | undefined) ?? "";
    if (o.json) {
      const completion = await model.complete(prompt, { ...generateOptions(o), signal: abort.signal });
      process.stdout.write(`${JSON.stringify(completion)}\n`);
      return 0;
    }
    process.stdout.write(prompt);
    const it = model.generate(prompt, { ...generateOptions(o), signal: abort.signal });
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
