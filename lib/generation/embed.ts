/**
 * Embeddings from a model's final-norm hidden states: the engine returns every token's state (n × dim, one forward
 * pass for many texts), and one vector per text is pooled from them here.
 */
import { InvalidArgumentError } from "../errors";
import { checkOptionNames, type OptionNames } from "../option-names";

export type EmbeddingPooling = "mean" | "last" | "cls";

export interface EmbedOptions {
  /**
   * How a text's token states make one vector: "mean" (default) averages them, "last" takes the last token's (which
   * has seen the whole text), "cls" the first token's (in a causal model it sees only itself: the BOS token's
   * state is the same for every text; for models trained to put a summary there).
   */
  pooling?: EmbeddingPooling;
  /** Scale each vector to unit length (cosine similarity is then a dot product). Default true. */
  normalize?: boolean;
}

const EMBED_OPTION_NAMES = { pooling: true, normalize: true } as const satisfies OptionNames<EmbedOptions>;
const POOLINGS: readonly EmbeddingPooling[] = ["mean", "last", "cls"];

export function resolveEmbedOptions(options: EmbedOptions): Required<EmbedOptions> {
  if (options === null || typeof options !== "object") throw new InvalidArgumentError("embed: options must be an object");
  checkOptionNames(options, EMBED_OPTION_NAMES, "embed");
  const { pooling = "mean", normalize = true } = options;
  if (!POOLINGS.includes(pooling)) {
    throw new InvalidArgumentError(`pooling must be "mean", "last" or "cls" (got ${String(pooling)})`, { option: "pooling" });
  }
  if (typeof normalize !== "boolean") throw new InvalidArgumentError(`normalize must be a boolean (got ${String(normalize)})`, { option: "normalize" });
  return { pooling, normalize };
}

/** One vector of `dim` from `tokens` hidden states (tokens × dim, row-major). */
export function poolHiddenStates(states: Float32Array, tokens: number, dim: number, { pooling, normalize }: Required<EmbedOptions>): Float32Array {
  let vector: Float32Array;
  if (pooling === "mean") {
    // Summed in double precision: the mean of a long text does not depend on float rounding order.
    const sum = new Float64Array(dim);
    for (let t = 0; t < tokens; t++) for (let i = 0; i < dim; i++) sum[i] += states[t * dim + i];
    vector = Float32Array.from(sum, (v) => v / tokens);
  } else {
    const row = pooling === "last" ? tokens - 1 : 0;
    vector = states.slice(row * dim, (row + 1) * dim);
  }
  if (normalize) {
    let squares = 0;
    for (const v of vector) squares += v * v;
    const norm = Math.sqrt(squares);
    if (norm > 0) for (let i = 0; i < dim; i++) vector[i] /= norm;
  }
  return vector;
}
