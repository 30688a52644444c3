/**
 * `llama-napi chat`: an interactive conversation in a chat session (the KV cache is kept between turns).
 * Multi-line input: end a line with "\" to continue it, or wrap a block in lines of """. Ctrl-C stops the
 * answer being written; a second Ctrl-C at the prompt exits. With --json (for scripts feeding stdin), each answer
 * is one JSON line on stdout and nothing else is written there.
 */
import readline from "node:readline";
import type { ChatSession } from "../generation/session";
import { DEFAULT_MODEL_PATH } from "../default-model";
import type { LoadModelOptions } from "../model";
import {
  type CommandSpec, CTX_SIZE_OPTION, DEVICE_OPTION, parseCommand, SAVE_SERIALIZED_OPTION, THREADS_OPTION, TOKENIZER_OPTION, KV_TOKENS_OPTION, KV_TYPE_OPTION,
  CUSTOM_OPS_OPTIONS, customOpsOptions,
} from "./args";
import type { KvCacheType } from "../native/binding";
import { loadModelWithProgress, MODEL_OR_DEFAULT_OPTION, OFFLINE_OPTION, saveSerializedIfAsked } from "./model-download";
import { generateOptions, SAMPLING_OPTIONS } from "./sampling-options";

export const chatCommand: CommandSpec = {
  name: "chat",
  summary: "Chat with a model interactively; the conversation's KV cache is kept between turns.",
  usage: "llama-napi chat [--model PATH] [--system TEXT] [options]",
  options: {
    model: MODEL_OR_DEFAULT_OPTION,
    offline: OFFLINE_OPTION,
    tokenizer: TOKENIZER_OPTION,
    system: { type: "string", placeholder: "TEXT", description: "System prompt" },
    restore: { type: "string", placeholder: "FILE", description: "Continue a conversation saved with /save" },
    ...SAMPLING_OPTIONS,
    threads: THREADS_OPTION,
    "ctx-size": CTX_SIZE_OPTION,
    "kv-type": KV_TYPE_OPTION,
    "kv-tokens": KV_TOKENS_OPTION,
    device: DEVICE_OPTION,
    "save-to-serialized-model-path": SAVE_SERIALIZED_OPTION,
    ...CUSTOM_OPS_OPTIONS,
    json: { type: "boolean", description: "One JSON line per answer (text, tokens, finishReason, stats); no prompts, messages to stderr" },
  },
};

const HELP = `Commands: /reset (forget the conversation), /save FILE, /help, /exit. End a line with \\ to continue it,
or put """ on a line to start and end a multi-line message. Ctrl-C stops an answer; twice at the prompt exits.
`;

/** Reads one message: a line, lines joined by a trailing backslash, or a """ block. Null at end of input. */
class MessageReader {
  private readonly lines: string[] = [];
  private waiting: ((line: string | null) => void) | undefined;
  private closed = false;

  constructor(private readonly rl: readline.Interface) {
    rl.on("line", (line) => this.deliver(line));
    rl.on("close", () => {
      this.closed = true;
      this.deliver(null);
    });
  }

  private deliver(line: string | null): void {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve(line);
    } else if (line !== null) this.lines.push(line);
  }

  private nextLine(prompt: string): Promise<string | null> {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift()!);
    if (this.closed) return Promise.resolve(null);
    this.rl.setPrompt(prompt);
    this.rl.prompt();
    return new Promise((resolve) => (this.waiting = resolve));
  }

  async read(): Promise<string | null> {
    const first = await this.nextLine("> ");
    if (first === null) return null;
    if (first.trim() === '"""') {
      const block: string[] = [];
      for (;;) {
        const line = await this.nextLine(". ");
        if (line === null || line.trim() === '"""') return block.join("\n");
        block.push(line);
      }
    }
    let message = first;
    while (message.endsWith("\\")) {
      const line = await this.nextLine(". ");
      message = message.slice(0, -1) + "\n" + (line ?? "");
      if (line === null) break;
    }
    return message;
  }
}

export async function chat(argv: string[]): Promise<number> {
  const o = parseCommand(chatCommand, argv);
  const options = generateOptions(o);
  const json = o.json === true;
  // What is meant for a person: in JSON mode stdout carries the answers alone.
  const say = (text: string) => (json ? process.stderr : process.stdout).write(text);
  const model = await loadModelWithProgress((o.model as string | undefined) ?? DEFAULT_MODEL_PATH, {
    offline: o.offline as boolean | undefined,
    threads: o.threads as number | undefined,
    contextSize: o["ctx-size"] as number | undefined,
    kvCacheType: o["kv-type"] as KvCacheType | undefined,
    kvCacheTokens: o["kv-tokens"] as number | undefined,
    device: o.device as LoadModelOptions["device"],
    tokenizer: o.tokenizer as string | undefined,
    ...customOpsOptions(o),
  });
  let session: ChatSession | undefined;
  const rl = json
    ? readline.createInterface({ input: process.stdin, terminal: false })
    : readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  let answering: AbortController | undefined;
  let exitArmed = false;
  // Ctrl-C: stop the answer being written; at the prompt, arm exit, and exit on the second press.
  const onInterrupt = () => {
    if (answering) {
      answering.abort();
    } else if (exitArmed) {
      rl.close();
    } else {
      exitArmed = true;
      say("\n(press Ctrl-C again to exit)\n");
      rl.prompt();
    }
  };
  rl.on("SIGINT", onInterrupt);
  process.on("SIGINT", onInterrupt);
  try {
    await saveSerializedIfAsked(model, o["save-to-serialized-model-path"] as string | undefined);
    session = await model.createSession({
      systemPrompt: o.system as string | undefined,
      restore: o.restore as string | undefined,
      contextOverflow: "truncate-middle", // a long chat drops its middle rather than ending
    });
    if (process.stdin.isTTY && !json) process.stdout.write(HELP);
    const reader = new MessageReader(rl);
    for (;;) {
      const message = await reader.read();
      if (message === null) break;
      exitArmed = false;
      const command = message.trim();
      if (command === "/exit" || command === "/quit") break;
      if (command === "/help") {
        say(HELP);
        continue;
      }
      if (command === "/reset") {
        session.reset();
        say("(conversation reset)\n");
        continue;
      }
      if (command === "/save" || /^\/save\s/.test(command)) {
        const file = command.slice("/save".length).trim();
        if (!file) say("usage: /save FILE\n");
        else {
          await session.save(file);
          say(`(saved to ${file})\n`);
        }
        continue;
      }
      if (command === "") continue;
      if (command.startsWith("/")) {
        // A mistyped command is not sent to the model as a message.
        say(`unknown command ${command.split(/\s/, 1)[0]}\n${HELP}`);
        continue;
      }
      answering = new AbortController();
      try {
        // --max-tokens -1: an answer of at most a context (the session drops its middle when full, so it would not end).
        const stream = session.prompt(message, { ...options, maxTokens: options.maxTokens ?? model.info.contextSize, signal: answering.signal });
        if (json) {
          process.stdout.write(`${JSON.stringify(await stream)}\n`);
          continue;
        }
        const it = stream[Symbol.asyncIterator]();
        for (;;) {
          const step = await it.next();
          if (step.done) {
            process.stdout.write(step.value.finishReason === "abort" ? " [stopped]\n" : "\n");
            break;
          }
          process.stdout.write(step.value.text);
        }
      } finally {
        answering = undefined;
      }
    }
  } finally {
    process.off("SIGINT", onInterrupt);
    rl.close();
    session?.dispose();
    await model.dispose();
  }
  return 0;
}
