/** `llama-napi run`: stream a completion to stdout, speed figures to stderr; or, with --json, one JSON object. */
import type { Completion, GenerateOptions, Prompt } from "../generation/types";
import type { LlamaModel, LoadModelOptions } from "../model";
import { DEFAULT_MODEL_PATH } from "../default-model";
import { QUANTIZE_TYPES, type QuantizeType } from "../quantize/tensor-types";
import {
  type CommandSpec, CTX_SIZE_OPTION, DEVICE_OPTION, parseCommand, readTextOption, readStdin, SAVE_SERIALIZED_OPTION, THREADS_OPTION, TOKENIZER_OPTION,
  UsageError, KV_TOKENS_OPTION, KV_TYPE_OPTION, CUSTOM_OPS_OPTIONS, customOpsOptions,
} from "./args";
import type { KvCacheType } from "../native/binding";
import { defaultModelIn, loadModelWithProgress, MODEL_OR_DEFAULT_OPTION, OFFLINE_OPTION, saveSerializedIfAsked } from "./model-download";
import { generateOptions, SAMPLING_OPTIONS, STOP_OPTION } from "./sampling-options";

export const runCommand: CommandSpec = {
  name: "run",
  summary: "Generate text from a prompt, streaming it to stdout; prefill and decode speed go to stderr.",
  usage: "llama-napi run [--model PATH|hf:OWNER/REPO/FILE|URL] [--prompt TEXT | --file PATH | < PROMPT] [options]",
  options: {
    model: MODEL_OR_DEFAULT_OPTION,
    offline: OFFLINE_OPTION,
    prompt: { type: "string", short: "p", placeholder: "TEXT", description: "The prompt (default: standard input when it is not a terminal, else empty: start from BOS)" },
    file: { type: "string", short: "f", placeholder: "PATH", description: "Read the prompt from a UTF-8 file" },
    system: { type: "string", placeholder: "TEXT", description: "System prompt: the prompt becomes a user message in the model's chat template" },
    stop: STOP_OPTION,
    tokenizer: TOKENIZER_OPTION,
    ...SAMPLING_OPTIONS,
    threads: THREADS_OPTION,
    "ctx-size": CTX_SIZE_OPTION,
    "kv-type": KV_TYPE_OPTION,
    "kv-tokens": KV_TOKENS_OPTION,
    device: DEVICE_OPTION,
    encoding: {
      type: "string", placeholder: "TYPE",
      description: `Without --model: the default model in this weight type (${QUANTIZE_TYPES.filter((t) => t !== t.toUpperCase()).join(", ")}), quantized once into the cache`,
    },
    "batch-file": {
      type: "string", placeholder: "PATH",
      description: "Complete a batch of prompts from a UTF-8 file (a JSON array of strings, or one prompt per line), decoded together; each is printed after its prompt",
    },
    parallel: { type: "string", number: "int", placeholder: "N", description: "With --batch-file: at most N prompts decode together (default: all)" },
    "save-to-serialized-model-path": SAVE_SERIALIZED_OPTION,
    ...CUSTOM_OPS_OPTIONS,
    json: { type: "boolean", description: "Print one JSON object at the end (text, tokens, finishReason, stats) instead of streaming; one per prompt of a batch" },
  },
};

/** The prompts of --batch-file: a JSON array of strings (prompts may then span lines), else each non-empty line. */
async function batchPrompts(path: string): Promise<string[]> {
  const text = await readTextOption("batch-file", path);
  if (text.trimStart().startsWith("[")) {
    let prompts: unknown;
    try {
      prompts = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`--batch-file ${path}: starts with "[" but is not JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(prompts) || !prompts.every((p) => typeof p === "string")) throw new UsageError(`--batch-file ${path}: the JSON is not an array of strings`);
    return prompts;
  }
  return text.split(/\r?\n/).filter((line) => line.trim() !== "");
}

/** Completes `prompts` in groups of at most `parallel` decoded together (generateBatch), prompt i with seed + i. */
async function completeBatch(model: LlamaModel, prompts: Prompt[], options: GenerateOptions, parallel: number): Promise<Completion[]> {
  const results: Completion[] = [];
  for (let first = 0; first < prompts.length; first += parallel) {
    const group = prompts.slice(first, first + parallel);
    results.push(...(await model.generateBatch(group, options.seed === undefined ? options : { ...options, seed: options.seed + first })));
  }
  return results;
}

/** The model to load: --model, or the default model (in --encoding's weight type when given). */
async function modelSpec(o: Record<string, unknown>): Promise<string> {
  if (o.encoding === undefined) return (o.model as string | undefined) ?? DEFAULT_MODEL_PATH;
  if (o.model !== undefined) throw new UsageError("--encoding (--quantization-encoding) picks the default model's weight type; with --model, quantize the model with `llama-napi quantize`");
  if (!(QUANTIZE_TYPES as readonly string[]).includes(o.encoding as string)) {
    throw new UsageError(`--encoding must be one of ${QUANTIZE_TYPES.join(", ")} (got "${String(o.encoding)}")`);
  }
  return defaultModelIn(o.encoding as QuantizeType);
}

/** The prompt text: --prompt, --file, or standard input when it is piped; empty otherwise. */
async function promptText(o: Record<string, unknown>): Promise<string> {
  if (o.prompt !== undefined && o.file !== undefined) throw new UsageError("give --prompt or --file, not both");
  if (typeof o.prompt === "string") return o.prompt;
  if (typeof o.file === "string") return readTextOption("file", o.file);
  if (process.stdin.isTTY) return "";
  // `echo TEXT | llama-napi run`: the newline echo adds is not part of the prompt.
  return (await readStdin()).replace(/\r?\n$/, "");
}

export async function run(argv: string[]): Promise<number> {
  const o = parseCommand(runCommand, argv);
  const batchFile = o["batch-file"] as string | undefined;
  if (batchFile !== undefined && (o.prompt !== undefined || o.file !== undefined)) throw new UsageError("give --batch-file or --prompt / --file, not both");
  if (o.parallel !== undefined && batchFile === undefined) throw new UsageError("--parallel applies to the prompts of --batch-file");
  const parallel = o.parallel as number | undefined;
  if (parallel !== undefined && parallel < 1) throw new UsageError(`--parallel must be at least 1 (got ${parallel})`);
  const texts = batchFile === undefined ? [await promptText(o)] : await batchPrompts(batchFile);
  const options = { ...generateOptions(o), stop: o.stop as string[] | undefined };
  const model = await loadModelWithProgress(await modelSpec(o), {
    offline: o.offline as boolean | undefined,
    threads: o.threads as number | undefined,
    contextSize: o["ctx-size"] as number | undefined,
    kvCacheType: o["kv-type"] as KvCacheType | undefined,
    kvCacheTokens: o["kv-tokens"] as number | undefined,
    device: o.device as LoadModelOptions["device"],
    tokenizer: o.tokenizer as string | undefined,
    ...customOpsOptions(o),
  });
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  try {
    await saveSerializedIfAsked(model, o["save-to-serialized-model-path"] as string | undefined);
    // With a system prompt the text is a user turn of the chat template, as in `chat`; only the answer is printed.
    const asPrompt = (text: string): Prompt => typeof o.system === "string"
      ? model.applyChatTemplate([{ role: "system", content: o.system }, { role: "user", content: text }])
      : text;
    if (batchFile !== undefined) {
      const completions = await completeBatch(model, texts.map(asPrompt), { ...options, signal: abort.signal }, parallel ?? Math.max(1, texts.length));
      completions.forEach((completion, i) => {
        // As the PyTorch example prints its batch: the prompt, "> " and the completion, a rule.
        if (o.json) process.stdout.write(`${JSON.stringify({ prompt: texts[i], ...completion })}\n`);
        else process.stdout.write(`${texts[i]}\n> ${completion.text}\n\n==================================\n\n`);
      });
      return 0;
    }
    const [text] = texts;
    const prompt = asPrompt(text);
    if (o.json) {
      const completion = await model.complete(prompt, { ...options, signal: abort.signal });
      process.stdout.write(`${JSON.stringify(completion)}\n`);
      return 0;
    }
    await stream(model, prompt, typeof o.system === "string" ? "" : text, { ...options, signal: abort.signal });
  } finally {
    process.off("SIGINT", onSigint);
    await model.dispose();
  }
  return 0;
}

/** Writes the echo and then each token's text to stdout, and the speed to stderr. */
async function stream(model: LlamaModel, prompt: Prompt, echo: string, options: GenerateOptions): Promise<void> {
  process.stdout.write(echo);
  let lineOpen = echo !== "";
  try {
    const it = model.generate(prompt, options);
    for (;;) {
      const step = await it.next();
      if (step.done) {
        const { stats, finishReason } = step.value;
        process.stdout.write("\n");
        lineOpen = false;
        process.stderr.write(
          `\nprefill: ${stats.promptTokens} tokens, ${stats.prefillTps.toFixed(1)} tok/s | ` +
            `decode: ${stats.genTokens} tokens, ${stats.decodeTps.toFixed(1)} tok/s | finish: ${finishReason}\n`,
        );
        return;
      }
      process.stdout.write(step.value.text);
      lineOpen ||= step.value.text !== "";
    }
  } finally {
    // A failure mid-text ends the text's line, so that the error message starts on a line of its own.
    if (lineOpen) process.stdout.write("\n");
  }
}
