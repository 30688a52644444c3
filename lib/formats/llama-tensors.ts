/**
 * The checks every parser applies to what it built: the config is self-consistent, and the tensors are exactly the
 * Llama set, each with the shape the config implies. Also the dominant weight type.
 */
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { TENSOR_TYPE_LAYOUT } from "./ggml-types";
import type { ModelConfig, TensorInfo, TensorType } from "./types";

/** Names of one source format: a pattern capturing (layer, suffix) of per-layer names, and two renaming tables. */
export interface TensorNaming {
  layer: RegExp;
  layerNames: Readonly<Record<string, string>>;
  modelNames: Readonly<Record<string, string>>;
}

/** The canonical name of a source tensor name; undefined for names the format's tables do not know. */
export function canonicalName(name: string, naming: TensorNaming): string | undefined {
  const layer = naming.layer.exec(name);
  if (!layer) return naming.modelNames[name];
  const suffix = naming.layerNames[layer[2]];
  return suffix === undefined ? undefined : `blk.${Number(layer[1])}.${suffix}`;
}

/** Tensors per layer: two norms, four attention and three feed-forward matrices. */
const TENSORS_PER_LAYER = 9;

/** The native engine holds every size in a C int. */
const MAX_NATIVE_INT = 2 ** 31 - 1;

/**
 * The longest context a config may claim. Nothing is allocated from it (the default KV cache is at most 4096
 * tokens) but it is shown and used as a default, so a corrupt value is refused rather than carried along.
 */
export const MAX_CONTEXT_LENGTH = 1 << 24;

/** The fewest bytes any engine weight type spends on one element (4.5 bits for Q4_0 / Q4_K). */
const MIN_BYTES_PER_WEIGHT = Math.min(...Object.values(TENSOR_TYPE_LAYOUT).map((t) => t.blockBytes / t.blockSize));

/** How many weights `config` implies (as a float: a corrupt config may imply more than 2^53). */
function expectedWeightCount(config: ModelConfig): number {
  const { dim, hiddenDim, heads, kvHeads, headDim, vocabSize, layers } = config;
  const perLayer = 2 * dim + 2 * heads * headDim * dim + 2 * kvHeads * headDim * dim + 3 * hiddenDim * dim;
  return vocabSize * dim * (config.tiedEmbeddings ? 1 : 2) + dim + layers * perLayer;
}

/**
 * Throws unless the config's sizes fit the tensors the file actually holds: no more layers than its tensor count
 * allows, no more weights than its bytes can store at the most compact type. Runs before anything is built from
 * the config, so a corrupt block_count of 1e9 fails here at once instead of building a billion-layer shape map.
 */
function checkConfigFitsTensors(path: string, config: ModelConfig, tensors: TensorInfo[]): void {
  // A bound, not the exact count: a tensor or two missing is left to checkTensors, which names them.
  if (config.layers * TENSORS_PER_LAYER > tensors.length) {
    throw new ModelFormatError(
      `${path}: the config's ${config.layers} layers need at least ${config.layers * TENSORS_PER_LAYER} tensors, but the file holds ${tensors.length}`,
    );
  }
  const bytes = tensors.reduce((n, t) => n + t.byteLength, 0);
  const weights = expectedWeightCount(config);
  if (weights * MIN_BYTES_PER_WEIGHT > bytes) {
    throw new ModelFormatError(`${path}: the config implies ${weights} weights, more than the file's ${bytes} bytes of tensors can hold`);
  }
}

/** Canonical tensor name → shape (outermost first) that `config` implies. */
export function expectedTensorShapes(config: ModelConfig): Map<string, number[]> {
  const { dim, hiddenDim, heads, kvHeads, headDim, vocabSize } = config;
  const shapes = new Map<string, number[]>([
    ["token_embd.weight", [vocabSize, dim]],
    ["output_norm.weight", [dim]],
  ]);
  if (!config.tiedEmbeddings) shapes.set("output.weight", [vocabSize, dim]);
  for (let i = 0; i < config.layers; i++) {
    shapes.set(`blk.${i}.attn_norm.weight`, [dim]);
    shapes.set(`blk.${i}.attn_q.weight`, [heads * headDim, dim]);
    shapes.set(`blk.${i}.attn_k.weight`, [kvHeads * headDim, dim]);
    shapes.set(`blk.${i}.attn_v.weight`, [kvHeads * headDim, dim]);
    shapes.set(`blk.${i}.attn_output.weight`, [dim, heads * headDim]);
    shapes.set(`blk.${i}.ffn_norm.weight`, [dim]);
    shapes.set(`blk.${i}.ffn_gate.weight`, [hiddenDim, dim]);
    shapes.set(`blk.${i}.ffn_up.weight`, [hiddenDim, dim]);
    shapes.set(`blk.${i}.ffn_down.weight`, [dim, hiddenDim]);
  }
  return shapes;
}

/** Throws unless the config's numbers are positive integers that fit together. */
export function checkConfig(path: string, config: ModelConfig): void {
  const ints: (keyof ModelConfig)[] = ["dim", "hiddenDim", "layers", "heads", "kvHeads", "headDim", "vocabSize", "contextLength"];
  for (const key of ints) {
    const v = config[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      throw new ModelFormatError(`${path}: ${key} must be a positive integer, found ${String(v)}`);
    }
    if (v > MAX_NATIVE_INT) throw new ModelFormatError(`${path}: ${key} ${v} is out of range (at most ${MAX_NATIVE_INT})`);
  }
  if (config.contextLength > MAX_CONTEXT_LENGTH) {
    throw new ModelFormatError(`${path}: context length ${config.contextLength} is out of range (at most ${MAX_CONTEXT_LENGTH})`);
  }
  if (config.heads % config.kvHeads !== 0) {
    throw new ModelFormatError(`${path}: ${config.heads} attention heads are not a multiple of ${config.kvHeads} key/value heads`);
  }
  if (config.headDim % 2 !== 0) throw new ModelFormatError(`${path}: head dimension ${config.headDim} is odd; RoPE needs pairs`);
  if (!(config.normEps > 0 && config.normEps < 1)) throw new ModelFormatError(`${path}: RMS norm epsilon ${config.normEps} is out of range`);
  if (!(config.ropeTheta > 0 && Number.isFinite(config.ropeTheta))) {
    throw new ModelFormatError(`${path}: RoPE theta ${config.ropeTheta} is out of range`);
  }
  const s = config.ropeScaling;
  if (s && !(s.factor > 0 && Number.isFinite(s.factor))) {
    throw new ModelFormatError(`${path}: RoPE scaling factor ${s.factor} is out of range`);
  }
}

const showShape = (shape: number[]): string => `[${shape.join(", ")}]`;

/** Throws unless `tensors` are exactly the Llama tensors of `config`, each once, with the implied shape. */
export function checkTensors(path: string, config: ModelConfig, tensors: TensorInfo[]): void {
  checkConfigFitsTensors(path, config, tensors);
  const expected = expectedTensorShapes(config);
  const seen = new Set<string>();
  for (const t of tensors) {
    const shape = expected.get(t.name);
    if (!shape) {
      const why = t.name === "output.weight" ? " (the config says the embeddings are tied)" : "";
      throw new UnsupportedModelError(`${path}: tensor ${t.name} is not part of a Llama model with this config${why}`);
    }
    if (seen.has(t.name)) throw new ModelFormatError(`${path}: tensor ${t.name} appears twice`);
    seen.add(t.name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        `${path}: tensor ${t.name} has shape ${showShape(t.shape)}, but the config implies ${showShape(shape)}`,
      );
    }
  }
  for (const name of expected.keys()) {
    if (!seen.has(name)) throw new ModelFormatError(`${path}: tensor ${name} is missing`);
  }
}

/** The type holding the most weight bytes. */
export function dominantType(tensors: TensorInfo[]): TensorType {
  const bytes = new Map<TensorType, number>();
  for (const t of tensors) bytes.set(t.type, (bytes.get(t.type) ?? 0) + t.byteLength);
  let best: TensorType = "f32";
  let most = -1;
  for (const [type, n] of bytes) {
    if (n > most) [best, most] = [type, n];
  }
  return best;
}
