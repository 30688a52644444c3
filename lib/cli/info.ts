/**
 * `llama-napi info MODEL`: what a model is (architecture, size, weight types, tokenizer, chat template) and the
 * memory it needs: its weights plus the KV cache at the context size. `--check` also scans every tensor for NaN
 * and infinity: a bad one fails the command (exit status 1) with a NumericalError naming it.
 */
import { parseModel } from "../formats/detect";
import { readGguf } from "../formats/gguf";
import { LLAMA_FILE_TYPES } from "../formats/llama-file-types";
import type { TensorType } from "../formats/types";
import { type CustomOpsInfo, loadModel, type LoadModelOptions, type ModelInfo } from "../model";
import { type CommandSpec, CTX_SIZE_OPTION, parseCommand, TOKENIZER_OPTION, KV_TOKENS_OPTION, KV_TYPE_OPTION, CUSTOM_OPS_OPTIONS, customOpsOptions } from "./args";
import type { KvCacheType } from "../native/binding";
import { formatBytes, OFFLINE_OPTION, resolveModel } from "./model-download";

export const infoCommand: CommandSpec = {
  name: "info",
  summary: "Describe a model: architecture, parameters, weight types, tokenizer, chat template and memory needed.",
  usage: "llama-napi info MODEL [--tensors] [--check] [--json] [--ctx-size N]",
  positionals: ["model"],
  options: {
    tensors: { type: "boolean", description: "List every tensor with its type, shape and size" },
    check: { type: "boolean", description: "Scan every tensor for NaN and infinity (exit status 1 naming the first bad one)" },
    json: { type: "boolean", description: "Print one JSON object" },
    "ctx-size": { ...CTX_SIZE_OPTION, description: "Context size of the KV cache estimate (default: as run uses)" },
    "kv-type": KV_TYPE_OPTION,
    "kv-tokens": KV_TOKENS_OPTION,
    tokenizer: TOKENIZER_OPTION,
    offline: OFFLINE_OPTION,
    ...CUSTOM_OPS_OPTIONS,
  },
};

export interface ModelReport {
  path: string;
  format: ModelInfo["format"];
  architecture: string;
  parameters: number;
  shape: Pick<ModelInfo, "dim" | "layers" | "heads" | "kvHeads" | "headDim" | "hiddenDim" | "vocabSize" | "contextLength" | "ropeTheta" | "tiedEmbeddings">;
  weightType: TensorType;
  /**
   * A GGUF's general.file_type, named as llama.cpp names it: llama-quantize's name ("Q4_K_M") and llama.cpp's
   * description ("Q4_K - Medium"; "unknown" for a code llama.cpp does not define). Absent for other formats and
   * for GGUF files without the key.
   */
  fileType?: { code: number; name: string; description: string };
  /** How many tensors have each type. */
  tensorTypes: Partial<Record<TensorType, number>>;
  tokenizer: { kind: ModelInfo["tokenizer"]; bosId: number | undefined; eosIds: number[] };
  /** "model": the model's files carry one; "builtin": the Llama 2 / Llama 3 format is used. */
  chatTemplate: "model" | "builtin";
  /** The KV pool: kvCacheTokens positions of kvCacheType for all sequences together (reserved at load). */
  memory: {
    contextSize: number; weightBytes: number; repackedBytes: number; kvCacheType: string; kvCacheTokens: number; kvCacheBytes: number;
    totalBytes: number;
  };
  tensors?: { name: string; type: TensorType; shape: number[]; bytes: number }[];
  /** With --check: every tensor's values are finite (a bad one fails the command instead). */
  check?: "ok";
  /** With --custom-ops-path: the library and the ops it provides (as ModelInfo.customOps). */
  customOps?: CustomOpsInfo;
}

async function describe(
  path: string,
  options: { contextSize?: number; kvCacheType?: KvCacheType; kvCacheTokens?: number; tokenizer?: string; tensors: boolean; check: boolean } &
    Pick<LoadModelOptions, "customOps" | "enableCustomOps">,
): Promise<ModelReport> {
  const desc = await parseModel(path, { tokenizer: options.tokenizer });
  // On the CPU: the weights stay mapped, and unread unless checked (on a GPU they would be uploaded, for nothing).
  const model = await loadModel(path, {
    threads: options.check ? undefined : 1,
    device: "cpu",
    contextSize: options.contextSize,
    kvCacheType: options.kvCacheType,
    kvCacheTokens: options.kvCacheTokens,
    tokenizer: options.tokenizer,
    checkTensors: options.check,
    customOps: options.customOps,
    enableCustomOps: options.enableCustomOps,
  });
  try {
    const { info } = model;
    const tensorTypes: Partial<Record<TensorType, number>> = {};
    for (const t of desc.tensors) tensorTypes[t.type] = (tensorTypes[t.type] ?? 0) + 1;
    const weightBytes = desc.tensors.reduce((n, t) => n + t.byteLength, 0);
    const kvBytes = info.kvCache.capacityTokens * info.kvCache.bytesPerToken;
    const { dim, layers, heads, kvHeads, headDim, hiddenDim, vocabSize, contextLength, ropeTheta, tiedEmbeddings } = info;
    return {
      path,
      format: info.format,
      architecture: info.architecture,
      parameters: info.parameters,
      shape: { dim, layers, heads, kvHeads, headDim, hiddenDim, vocabSize, contextLength, ropeTheta, tiedEmbeddings },
      weightType: info.weightType,
      fileType: desc.format === "gguf" ? ggufFileType(desc.files[0]) : undefined,
      tensorTypes,
      tokenizer: { kind: info.tokenizer, bosId: info.bosId, eosIds: info.eosIds },
      chatTemplate: model.chatTemplate === undefined ? "builtin" : "model",
      memory: {
        contextSize: info.contextSize, weightBytes, repackedBytes: info.repackedBytes, kvCacheType: info.kvCache.type,
        kvCacheTokens: info.kvCache.capacityTokens, kvCacheBytes: kvBytes, totalBytes: weightBytes + info.repackedBytes + kvBytes,
      },
      tensors: options.tensors ? desc.tensors.map((t) => ({ name: t.name, type: t.type, shape: t.shape, bytes: t.byteLength })) : undefined,
      check: options.check ? "ok" : undefined,
      customOps: info.customOps,
    };
  } finally {
    await model.dispose();
  }
}

function ggufFileType(file: string): ModelReport["fileType"] {
  const code = readGguf(file).metadata.get("general.file_type");
  if (typeof code !== "number") return undefined;
  const known = LLAMA_FILE_TYPES.get(code);
  return { code, name: known?.name ?? "unknown", description: known?.description ?? "unknown" };
}

function formatCount(n: number): string {
  const [value, unit] = n >= 1e9 ? [n / 1e9, "B"] : n >= 1e6 ? [n / 1e6, "M"] : n >= 1e3 ? [n / 1e3, "K"] : [n, ""];
  return unit ? `${value.toFixed(1)}${unit}` : String(value);
}

function formatReport(r: ModelReport): string {
  const s = r.shape;
  const types = Object.entries(r.tensorTypes).map(([type, count]) => `${type} × ${count}`).join(", ");
  const lines = [
    ["model", `${r.path} (${r.format})`],
    ["architecture", `${r.architecture}, ${formatCount(r.parameters)} parameters (${r.parameters})`],
    ["shape", `dim ${s.dim}, ${s.layers} layers, ${s.heads} heads (${s.kvHeads} KV) of ${s.headDim}, FFN ${s.hiddenDim}, vocab ${s.vocabSize}`],
    ["context", `${s.contextLength} trained, rope theta ${s.ropeTheta}${s.tiedEmbeddings ? ", tied embeddings" : ""}`],
    ["weights", Object.keys(r.tensorTypes).length > 1 ? `${types} (mostly ${r.weightType})` : types],
    ...(r.fileType ? [["file type", `${r.fileType.name} (${r.fileType.description}; general.file_type ${r.fileType.code})`]] : []),
    ["tokenizer", `${r.tokenizer.kind}, BOS ${r.tokenizer.bosId ?? "none"}, EOS ${r.tokenizer.eosIds.join(" ") || "none"}`],
    ["chat template", r.chatTemplate === "model" ? "the model's own" : "built-in (the model carries none)"],
    ["memory", `${formatBytes(r.memory.weightBytes)} weights + ` +
      (r.memory.repackedBytes > 0 ? `${formatBytes(r.memory.repackedBytes)} repacked for the CPU kernels + ` : "") +
      `${formatBytes(r.memory.kvCacheBytes)} KV cache ` +
      `(${r.memory.kvCacheType}, ${r.memory.kvCacheTokens} positions for contexts of ${r.memory.contextSize}) = ${formatBytes(r.memory.totalBytes)}`],
    ...(r.check ? [["check", "OK: every tensor's values are finite"]] : []),
    ...(r.customOps ? [["custom ops", `${r.customOps.ops.join(", ")} from ${r.customOps.library}`]] : []),
  ].map(([label, value]) => `${label.padEnd(14)}${value}`);
  if (r.tensors) {
    const width = Math.max(...r.tensors.map((t) => t.name.length));
    lines.push("tensors");
    for (const t of r.tensors) lines.push(`  ${t.name.padEnd(width)}  ${t.type.padEnd(5)} ${t.shape.join(" × ").padEnd(14)} ${formatBytes(t.bytes)}`);
  }
  return `${lines.join("\n")}\n`;
}

export async function info(argv: string[]): Promise<number> {
  const o = parseCommand(infoCommand, argv);
  const path = await resolveModel(o.model as string, o.offline as boolean | undefined);
  const report = await describe(path, {
    contextSize: o["ctx-size"] as number | undefined,
    kvCacheType: o["kv-type"] as KvCacheType | undefined,
    kvCacheTokens: o["kv-tokens"] as number | undefined,
    tokenizer: o.tokenizer as string | undefined,
    tensors: o.tensors === true,
    check: o.check === true,
    ...customOpsOptions(o),
  });
  process.stdout.write(o.json ? `${JSON.stringify(report)}\n` : formatReport(report));
  return 0;
}
