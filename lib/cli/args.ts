/** Command-line option parsing shared by the subcommands: typed options, --help text, usage errors. */
import { parseArgs } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface OptionSpec {
  type: "string" | "boolean";
  /** How a number is read: "int", "float", or a string option left as is. */
  number?: "int" | "float";
  short?: string;
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
};

export type ParsedOptions = Record<string, string | number | boolean | undefined>;

export function parseCommand(spec: CommandSpec, argv: string[]): ParsedOptions {
  const parserOptions: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, o] of Object.entries(spec.options)) {
    parserOptions[name] = o.short ? { type: o.type, short: o.short } : { type: o.type };
  }
  let values: Record<string, string | boolean | undefined>;
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
  const out: ParsedOptions = { ...values };
  names.forEach((name, i) => (out[name] = positionals[i]));
  for (const [name, o] of Object.entries(spec.options)) {
    const raw = values[name];
    if (o.number && typeof raw === "string") {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n) || (o.number === "int" && !Number.isInteger(n))) {
        throw new UsageError(`--${name} must be ${o.number === "int" ? "an integer" : "a number"} (got "${raw}")`);
      }
      out[name] = n;
    }
  }
  return out;
}

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${name}${o.type === "string" ? ` ${o.placeholder ?? "VALUE"}` : ""}`;
    return `  ${flag.padEnd(30)} ${o.description}`;
  });
  rows.push(`  ${"-h, --help".padEnd(30)} Show this help`);
  return `${spec.summary}\n\nUsage: ${spec.usage}\n\nOptions:\n${rows.join("\n")}\n`;
}
