/** Command-line option parsing shared by the subcommands: typed options, --help text, usage errors. */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../errors";
import { checkLoadOptions, type CustomOpName, type LoadModelOptions } from "../model";
import type { KvCacheType } from "../native/binding";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface OptionSpec {
  type: "string" | "boolean";
  /** How a number is read: "int", "float", or a string option left as is. */
  number?: "int" | "float";
  short?: string;
  /** Other long names of the same option (--temp for --temperature). */
  aliases?: string[];
  /** May be given more than once; the value is then an array of every one given. */
  multiple?: boolean;
  /**
   * The library's rule for the value, applied before anything is loaded: throws its InvalidArgumentError, which
   * parseCommand turns into a usage error naming the flag.
   */
  check?: (value: number | string) => void;
  description: string;
  placeholder?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  /** Names of required positional arguments, in order; parseCommand stores each under its name. */
  positionals?: string[];
  options: Record<string, OptionSpec>;
}

/** Options several commands share, spelled once. */
export const MODEL_OPTION: OptionSpec = {
  type: "string", short: "m", placeholder: "PATH", description: "Model file or directory (GGUF, HF dir, Meta dir, llama2.c .bin), hf:OWNER/REPO[/FILE] or a URL",
};
export const TOKENIZER_OPTION: OptionSpec = {
  type: "string", placeholder: "PATH", description: "Tokenizer file when it is not beside the model",
};
export const THREADS_OPTION: OptionSpec = {
  type: "string", number: "int", short: "t", placeholder: "N", description: "Threads (default: physical cores)",
  check: (threads) => checkLoadOptions({ threads: threads as number }),
};
export const CTX_SIZE_OPTION: OptionSpec = {
  type: "string", number: "int", short: "c", placeholder: "N", description: "Context size (default: the model's, at most 4096)",
  check: (contextSize) => checkLoadOptions({ contextSize: contextSize as number }),
};

export const KV_TYPE_OPTION: OptionSpec = {
  type: "string", placeholder: "TYPE", description: "How the KV cache stores keys and values: f16 (default), f32 (exact) or q8_0",
  check: (kvCacheType) => checkLoadOptions({ kvCacheType: kvCacheType as KvCacheType }),
};
export const KV_TOKENS_OPTION: OptionSpec = {
  type: "string", number: "int", placeholder: "N", description: "Positions of the KV pool all sequences share (default: 8 x the context size)",
  check: (kvCacheTokens) => checkLoadOptions({ kvCacheTokens: kvCacheTokens as number }),
};

/** The custom op flags of the commands that load a model (see customOpsOptions). */
export const CUSTOM_OPS_OPTIONS: Record<string, OptionSpec> = {
  "custom-ops-path": { type: "string", placeholder: "FILE", description: "A custom op library (llama-napi build-op) for the ops enabled below" },
  "enable-custom-rope-kernel": { type: "boolean", description: "Take RoPE from --custom-ops-path (= --enable-custom-op rope)" },
  "enable-custom-op": {
    type: "string", multiple: true, placeholder: "NAME", description: "Take this op from --custom-ops-path: rope, rmsnorm or swiglu (repeatable)",
  },
};

/** loadModel's customOps and enableCustomOps from the CUSTOM_OPS_OPTIONS flags, checked before anything loads. */
export function customOpsOptions(o: ParsedOptions): Pick<LoadModelOptions, "customOps" | "enableCustomOps"> {
  const ops = [...((o["enable-custom-op"] as string[] | undefined) ?? []), ...(o["enable-custom-rope-kernel"] ? ["rope"] : [])];
  const library = o["custom-ops-path"] as string | undefined;
  if (library === undefined && ops.length > 0) {
    throw new UsageError("--enable-custom-op and --enable-custom-rope-kernel need --custom-ops-path FILE: the library the ops come from");
  }
  if (library !== undefined && ops.length === 0) {
    throw new UsageError("--custom-ops-path needs the ops to take from it: --enable-custom-op NAME or --enable-custom-rope-kernel");
  }
  return library === undefined ? {} : { customOps: library, enableCustomOps: [...new Set(ops)] as CustomOpName[] };
}

export type ParsedOptions = Record<string, string | number | boolean | (string | number | boolean)[] | undefined>;

export function parseCommand(spec: CommandSpec, argv: string[]): ParsedOptions {
  const parserOptions: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, o] of Object.entries(spec.options)) {
    const multiple = o.multiple === true;
    parserOptions[name] = o.short ? { type: o.type, short: o.short, multiple } : { type: o.type, multiple };
    for (const alias of o.aliases ?? []) parserOptions[alias] = { type: o.type, multiple };
  }
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  const names = spec.positionals ?? [];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: parserOptions, strict: true, allowPositionals: names.length > 0 }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${helpText(spec)}`);
  }
  if (positionals.length !== names.length) {
    throw new UsageError(`expected ${names.length} arguments (${names.join(" ")}), got ${positionals.length}\n\n${helpText(spec)}`);
  }
  const out: ParsedOptions = {};
  names.forEach((name, i) => (out[name] = positionals[i]));
  for (const [name, o] of Object.entries(spec.options)) {
    const given = [name, ...(o.aliases ?? [])].filter((flag) => values[flag] !== undefined);
    if (given.length > 1) throw new UsageError(`--${given.join(" and --")} are the same option; give one`);
    if (given.length === 0) continue;
    const raw = values[given[0]];
    out[name] = Array.isArray(raw)
      ? raw.map((value) => optionValue(name, o, value))
      : optionValue(name, o, raw!);
  }
  return out;
}

/** A value as the option's type (a number for numeric options), checked by the option's rule. */
function optionValue(name: string, o: OptionSpec, raw: string | boolean): string | number | boolean {
  if (typeof raw === "boolean") return raw;
  let value: string | number = raw;
  if (o.number) {
    value = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(value) || (o.number === "int" && !Number.isInteger(value))) {
      throw new UsageError(`--${name} must be ${o.number === "int" ? "an integer" : "a number"} (got "${raw}")`);
    }
  }
  try {
    o.check?.(value);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new UsageError(`--${name}: ${err.message}`);
    throw err;
  }
  return value;
}

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const longNames = [name, ...(o.aliases ?? [])].map((n) => `--${n}`).join(", ");
    const flag = `${o.short ? `-${o.short}, ` : "    "}${longNames}${o.type === "string" ? ` ${o.placeholder ?? "VALUE"}` : ""}`;
    return `  ${flag.padEnd(30)} ${o.description}`;
  });
  rows.push(`  ${"-h, --help".padEnd(30)} Show this help`);
  return `${spec.summary}\n\nUsage: ${spec.usage}\n\nOptions:\n${rows.join("\n")}\n`;
}

/** A UTF-8 file named by an option (--file); one that cannot be read is an InvalidArgumentError naming it. */
export async function readTextOption(flag: string, path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new InvalidArgumentError(`--${flag} ${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
}

/** Standard input to its end, as UTF-8. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
