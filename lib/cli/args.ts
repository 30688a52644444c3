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

/**
 * Another name of one of our options: our own short spelling, or a seed's name for it, so that the seeds' README
 * commands run against a local model. The parser reads this table for every command that has `option`.
 */
export interface OptionAlias {
  /** The alias, without its dashes. */
  flag: string;
  /** Our option it stands for. */
  option: string;
  /** Whose spelling it is, for --help (undefined: ours, shown beside the option's name). */
  from?: "Llama 3.1 pipeline" | "PyTorch example";
  /** The alias takes no value and gives the option this one (--use-gpu: --device cuda). */
  value?: string;
  /** The option's value made from the alias's (--huggingface-repo-id REPO: --model hf:REPO). */
  convert?: (value: string) => string;
  /** The value's name in --help, when it is not the option's. */
  placeholder?: string;
  /** What --help says besides "= --option", when the alias does more than rename. */
  note?: string;
  /** Only these commands take it (the seed has it there alone); undefined: every command with `option`. */
  commands?: string[];
}

const MAX = "Llama 3.1 pipeline";
const PYTORCH = "PyTorch example";

export const OPTION_ALIASES: readonly OptionAlias[] = [
  { flag: "temp", option: "temperature" },
  { flag: "model-path", option: "model", from: MAX },
  { flag: "weight-path", option: "model", from: MAX },
  { flag: "serialized-model-path", option: "model", from: MAX, note: "a serialized model is told by its magic" },
  { flag: "huggingface-repo-id", option: "model", from: MAX, convert: (repo) => `hf:${repo}`, placeholder: "REPO", note: "as hf:REPO", commands: ["serve"] },
  { flag: "tokenizer-path", option: "tokenizer", from: MAX },
  { flag: "max-new-tokens", option: "max-tokens", from: MAX, note: "-1: until the context ends" },
  { flag: "max-length", option: "ctx-size", from: MAX },
  { flag: "quantization-encoding", option: "type", from: MAX },
  { flag: "quantization-encoding", option: "encoding", from: MAX },
  { flag: "max-cache-batch-size", option: "parallel", from: MAX },
  { flag: "use-gpu", option: "device", from: MAX, value: "cuda" },
  { flag: "ckpt_dir", option: "model", from: PYTORCH },
  { flag: "tokenizer_path", option: "tokenizer", from: PYTORCH },
  { flag: "max_seq_len", option: "ctx-size", from: PYTORCH },
  { flag: "max_gen_len", option: "max-tokens", from: PYTORCH },
  { flag: "top_p", option: "top-p", from: PYTORCH },
  { flag: "max_batch_size", option: "parallel", from: PYTORCH },
];

/** The aliases of the options `spec` has. */
function aliasesOf(spec: CommandSpec): OptionAlias[] {
  return OPTION_ALIASES.filter((a) => Object.hasOwn(spec.options, a.option) && (a.commands === undefined || a.commands.includes(spec.name)));
}

/** A value (`--name VALUE`) may start with a dash, as -1 does: joined to its flag, parseArgs takes it (`--name=-1`). */
function joinNegativeValues(argv: string[], stringFlags: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (argv[i].startsWith("--") && stringFlags.has(argv[i].slice(2)) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else out.push(argv[i]);
  }
  return out;
}

export const DEVICE_OPTION: OptionSpec = {
  type: "string", placeholder: "DEV", description: "Where the model runs: auto (default: the GPU when there is one and it runs the model), cpu or cuda",
  check: (device) => checkLoadOptions({ device: device as LoadModelOptions["device"] }),
};
export const SAVE_SERIALIZED_OPTION: OptionSpec = {
  type: "string", placeholder: "FILE",
  description: "Once loaded, write the prepared model to FILE, which --model (or loadModel) then loads without preparing it",
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
  }
  const aliases = aliasesOf(spec);
  for (const a of aliases) {
    parserOptions[a.flag] = { type: a.value === undefined ? spec.options[a.option].type : "boolean", multiple: spec.options[a.option].multiple === true };
  }
  const stringFlags = new Set(Object.entries(parserOptions).filter(([, o]) => o.type === "string").map(([flag]) => flag));
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  const names = spec.positionals ?? [];
  try {
    const args = joinNegativeValues(argv, stringFlags);
    ({ values, positionals } = parseArgs({ args, options: parserOptions, strict: true, allowPositionals: names.length > 0 }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${helpText(spec)}`);
  }
  if (positionals.length !== names.length) {
    throw new UsageError(`expected ${names.length} arguments (${names.join(" ")}), got ${positionals.length}\n\n${helpText(spec)}`);
  }
  const out: ParsedOptions = {};
  names.forEach((name, i) => (out[name] = positionals[i]));
  for (const [name, o] of Object.entries(spec.options)) {
    const own = aliases.filter((a) => a.option === name);
    const given = [name, ...own.map((a) => a.flag)].filter((flag) => values[flag] !== undefined);
    if (given.length > 1) throw new UsageError(`--${given.join(" and --")} are the same option; give one`);
    if (given.length === 0) continue;
    const alias = own.find((a) => a.flag === given[0]);
    // An alias's value becomes ours; a value-less alias (a boolean flag) gives its fixed value.
    const ours = (raw: string | boolean) => (alias?.value !== undefined ? alias.value : alias?.convert && typeof raw === "string" ? alias.convert(raw) : raw);
    const raw = values[given[0]];
    out[name] = Array.isArray(raw)
      ? raw.map((value) => optionValue(name, o, ours(value)))
      : optionValue(name, o, ours(raw!));
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
  const aliases = aliasesOf(spec);
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const longNames = [name, ...aliases.filter((a) => a.option === name && a.from === undefined).map((a) => a.flag)].map((n) => `--${n}`).join(", ");
    const flag = `${o.short ? `-${o.short}, ` : "    "}${longNames}${o.type === "string" ? ` ${o.placeholder ?? "VALUE"}` : ""}`;
    return `  ${flag.padEnd(30)} ${o.description}`;
  });
  rows.push(`  ${"-h, --help".padEnd(30)} Show this help`);
  const seedRows = aliases
    .filter((a) => a.from !== undefined)
    .map((a) => {
      const o = spec.options[a.option];
      const flag = `    --${a.flag}${a.value === undefined && o.type === "string" ? ` ${a.placeholder ?? o.placeholder ?? "VALUE"}` : ""}`;
      const meaning = `= --${a.option}${a.value !== undefined ? ` ${a.value}` : ""}${a.note ? ` (${a.note})` : ""}`;
      return `  ${flag.padEnd(30)} ${meaning}  [${a.from}]`;
    });
  const seedText = seedRows.length > 0 ? `\nAliases (the option names of the systems this CLI answers to):\n${seedRows.join("\n")}\n` : "";
  return `${spec.summary}\n\nUsage: ${spec.usage}\n\nOptions:\n${rows.join("\n")}\n${seedText}`;
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
