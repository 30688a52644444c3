/** `llama-napi run`: stream a completion to stdout, speed figures to stderr; or, with --json, one JSON object. */
import type { GenerateOptions, Prompt } from "../generation/types";
import type { LlamaModel } from "../model";
import { DEFAULT_MODEL_PATH } from "../default-model";
import { type CommandSpec, CTX_SIZE_OPTION, parseCommand, readTextOption, readStdin, THREADS_OPTION, TOKENIZER_OPTION, UsageError, KV_TOKENS_OPTION, KV_TYPE_OPTION, CUSTOM_OPS_OPTIONS, customOpsOptions } from "./args";
import type { KvCacheType } from "../native/binding";
import { loadModelWithProgress, MODEL_OR_DEFAULT_OPTION, OFFLINE_OPTION } from "./model-download";
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
    ...CUSTOM_OPS_OPTIONS,
    json: { type: "boolean", description: "Print one JSON object at the end (text, tokens, finishReason, stats) instead of streaming" },
  },
};

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
  const text = await promptText(o);
  const options = { ...generateOptions(o), stop: o.stop as string[] | undefined };
  const model = await loadModelWithProgress((o.model as string | undefined) ?? DEFAULT_MODEL_PATH, {
    offline: o.offline as boolean | undefined,
    threads: o.threads as number | undefined,
    contextSize: o["ctx-size"] as number | undefined,
    kvCacheType: o["kv-type"] as KvCacheType | undefined,
    kvCacheTokens: o["kv-tokens"] as number | undefined,
    tokenizer: o.tokenizer as string | undefined,
    ...customOpsOptions(o),
  });
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  try {
    // With a system prompt the text is a user turn of the chat template, as in `chat`; only the answer is printed.
    const prompt: Prompt = typeof o.system === "string"
      ? model.applyChatTemplate([{ role: "system", content: o.system }, { role: "user", content: text }])
      : text;
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
