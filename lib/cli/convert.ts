/**
 * `llama-napi convert IN OUT.gguf [--type T]`: an HF or Meta checkpoint directory (or any model loadModel reads) to
 * one GGUF file, through the same exporter as `quantize`; only the default type differs: the input's own float type,
 * so a plain convert loses nothing.
 */
import { parseModel } from "../formats/detect";
import type { TensorType } from "../formats/types";
import { QUANTIZE_TYPES } from "../quantize/tensor-types";
import { type CommandSpec, parseCommand, TOKENIZER_OPTION, THREADS_OPTION } from "./args";
import { quantizeMain } from "./quantize";

export const convertCommand: CommandSpec = {
  name: "convert",
  summary: "Convert an HF or Meta model directory to GGUF: llama.* metadata, tokenizer, chat template, weights.",
  usage: `llama-napi convert IN OUT.gguf [--type ${QUANTIZE_TYPES.join("|")}] [--threads N] [--tokenizer PATH]`,
  positionals: ["input", "output"],
  options: {
    type: { type: "string", placeholder: "TYPE", description: `Weight type: ${QUANTIZE_TYPES.join(", ")} (default: the input's, f16 for a quantized input)` },
    threads: THREADS_OPTION,
    tokenizer: TOKENIZER_OPTION,
    json: { type: "boolean", description: "Print a summary as one JSON object, as quantize --json does" },
  },
};

const FLOAT_TYPES: readonly TensorType[] = ["f32", "f16", "bf16"];

export async function convert(argv: string[]): Promise<number> {
  const o = parseCommand(convertCommand, argv);
  const input = o.input as string;
  const tokenizer = o.tokenizer as string | undefined;
  let type = o.type as string | undefined;
  if (type === undefined) {
    const { weightType } = await parseModel(input, { tokenizer });
    type = FLOAT_TYPES.includes(weightType) ? weightType : "f16";
  }
  const passOn = [
    ...(o.threads !== undefined ? ["--threads", String(o.threads)] : []),
    ...(tokenizer !== undefined ? ["--tokenizer", tokenizer] : []),
    ...(o.json ? ["--json"] : []),
  ];
  return quantizeMain([input, o.output as string, "--type", type, ...passOn]);
}
