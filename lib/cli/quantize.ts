/** `llama-napi quantize IN OUT --type T [--mix q4_K_M]`: converts a model to a GGUF file of the given weight type. */
import { LLAMA_FILE_TYPES } from "../formats/llama-file-types";
import { quantize } from "../quantize/quantize";
import { QUANTIZE_MIXES, QUANTIZE_TYPES, type QuantizeMix, type QuantizeType } from "../quantize/tensor-types";
import { type CommandSpec, parseCommand, UsageError, TOKENIZER_OPTION, THREADS_OPTION } from "./args";
import { ProgressBar } from "./progress-bar";

export const quantizeCommand: CommandSpec = {
  name: "quantize",
  summary: "Write a model (any format loadModel reads) as a GGUF file with quantized or converted weights.",
  usage: `llama-napi quantize IN OUT --type ${QUANTIZE_TYPES.join("|")} [--mix ${QUANTIZE_MIXES.join("|")}] [--threads N]`,
  positionals: ["input", "output"],
  options: {
    type: {
      type: "string",
      placeholder: "TYPE",
      description: `Weight type (q3_K, q4_K, q5_K write the _S mix) or llama.cpp file type: ${QUANTIZE_TYPES.join(", ")}`,
    },
    mix: { type: "string", placeholder: "MIX", description: `A llama.cpp mix: ${QUANTIZE_MIXES.join(", ")} (with --type its base: q3_K, q4_K or q5_K)` },
    threads: THREADS_OPTION,
    tokenizer: TOKENIZER_OPTION,
    json: { type: "boolean", description: "Print a summary as one JSON object (path, type, tensor types, bytes, notices)" },
  },
};

/** What quantize and convert print with --json. */
export interface QuantizeSummary {
  path: string;
  type: QuantizeType;
  mix?: QuantizeMix;
  /** llama.cpp's general.file_type, and its name as llama-quantize takes it ("Q4_K_M"). */
  fileType: number;
  fileTypeName: string;
  tensors: number;
  /** How many tensors have each type. */
  tensorTypes: Record<string, number>;
  bytesWritten: number;
  notices: string[];
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value !== undefined && !(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${flag} must be one of ${allowed.join(", ")} (got "${value}")`);
  }
  return value as T | undefined;
}

export async function quantizeMain(argv: string[]): Promise<number> {
  const o = parseCommand(quantizeCommand, argv);
  const type = oneOf("type", o.type as string | undefined, QUANTIZE_TYPES);
  if (type === undefined) throw new UsageError(`--type is required: one of ${QUANTIZE_TYPES.join(", ")}`);
  const mix = oneOf("mix", o.mix as string | undefined, QUANTIZE_MIXES);

  const bar = new ProgressBar();
  const result = await quantize(o.input as string, o.output as string, {
    type,
    mix,
    threads: o.threads as number | undefined,
    tokenizer: o.tokenizer as string | undefined,
    onProgress: (p) => bar.update(p.tensorsDone, p.tensorsTotal, p.tensor, p.bytesRead),
  }).finally(() => bar.finish());
  const tensorTypes: Record<string, number> = {};
  for (const t of result.tensors) tensorTypes[t.type] = (tensorTypes[t.type] ?? 0) + 1;
  const fileTypeName = LLAMA_FILE_TYPES.get(result.fileType)!.name;
  if (o.json) {
    const { path, fileType, bytesWritten, notices } = result;
    const summary: QuantizeSummary = { path, type, mix, fileType, fileTypeName, tensors: result.tensors.length, tensorTypes, bytesWritten, notices };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return 0;
  }
  for (const notice of result.notices) process.stderr.write(`notice: ${notice}\n`);
  const types = Object.entries(tensorTypes).map(([t, n]) => `${t} × ${n}`).join(", ");
  process.stdout.write(`wrote ${result.path} (${fileTypeName}): ${result.tensors.length} tensors (${types}), ${(result.bytesWritten / 1e6).toFixed(1)} MB of weights\n`);
  return 0;
}
