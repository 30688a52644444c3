/**
 * The sampler chain: top-k → top-p → min-p → temperature → draw, as llama.cpp orders it. The engine hands us the
 * top candidates already sorted (native top-k over the vocabulary, off the JS thread); this file only does the
 * arithmetic on that short list. Temperature 0 is greedy.
 */
import { InvalidArgumentError } from "../errors";
import { Rng } from "./rng";

export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 disables. Default 40. */
  topK?: number;
  /** Keep the smallest set whose probability reaches p; 1 disables. Default 0.95. */
  topP?: number;
  /** Drop tokens whose probability is below minP × the top probability; 0 disables. Default 0.05. */
  minP?: number;
  /** Same seed + same input = same tokens. Default: random. */
  seed?: number;
}

export const SAMPLING_DEFAULTS = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 } as const;

export type ResolvedSampling = Required<Omit<SamplingOptions, "seed">> & { seed: number };

function checkNumber(name: string, value: unknown, ok: (v: number) => boolean, rule: string): void {
  if (typeof value !== "number" || Number.isNaN(value) || !ok(value)) {
    throw new InvalidArgumentError(`${name} must be ${rule} (got ${String(value)})`);
  }
}

export function resolveSampling(options: SamplingOptions, vocabSize: number): ResolvedSampling {
  const r = {
    temperature: options.temperature ?? SAMPLING_DEFAULTS.temperature,
    topK: options.topK ?? SAMPLING_DEFAULTS.topK,
    topP: options.topP ?? SAMPLING_DEFAULTS.topP,
    minP: options.minP ?? SAMPLING_DEFAULTS.minP,
    seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
  };
  checkNumber("temperature", r.temperature, (v) => v >= 0 && Number.isFinite(v), "a finite number >= 0");
  checkNumber("topK", r.topK, (v) => Number.isInteger(v) && v >= 0, "an integer >= 0");
  checkNumber("topP", r.topP, (v) => v > 0 && v <= 1, "in (0, 1]");
  checkNumber("minP", r.minP, (v) => v >= 0 && v <= 1, "in [0, 1]");
  checkNumber("seed", r.seed, Number.isSafeInteger, "a safe integer");
  r.topK = Math.min(r.topK, vocabSize);
  return r;
}

export class Sampler {
  private readonly rng: Rng;

  constructor(
    readonly options: ResolvedSampling,
    private readonly vocabSize: number,
  ) {
    this.rng = new Rng(options.seed);
  }

  get greedy(): boolean {
    return this.options.temperature === 0;
  }

  /**
   * How many sorted candidates the engine must return with the logits: 1 for greedy, top-k when set, the whole
   * (sorted) vocabulary when top-p / min-p must see every token, none for plain temperature sampling.
   */
  get candidatesNeeded(): number {
    const o = this.options;
    if (this.greedy) return 1;
    if (o.topK > 0) return o.topK;
    return o.topP < 1 || o.minP > 0 ? this.vocabSize : 0;
  }

  /** Whether the full logits are needed (everything but greedy). */
  get needsLogits(): boolean {
    return !this.greedy;
  }

  /** Picks the next token from the engine's output for one position. */
  sample(logits: Float32Array | undefined, candidates: Int32Array | undefined): number {
    if (this.greedy) return candidates![0];
    const o = this.options;
    const ids = candidates ?? allIds(logits!.length);
    // Probabilities at temperature 1 over the candidate list (sorted when truncation samplers apply).
    let n = ids.length;
    const maxLogit = candidates ? logits![ids[0]] : maxOf(logits!);
    const weights = new Float64Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[i] = Math.exp(logits![ids[i]] - maxLogit);
    // As in llama.cpp, top-p sees the distribution renormalised over what top-k kept.
    if (o.topP < 1) {
      let cum = 0;
      for (let i = 0; i < n; i++) {
        cum += weights[i] / total;
        if (cum >= o.topP) {
          n = i + 1;
          break;
        }
      }
    }
    if (o.minP > 0) {
      const floor = o.minP * weights[0];
      let keep = 1;
      while (keep < n && weights[keep] >= floor) keep++;
      n = keep;
    }
    // Temperature reshapes what is left; then one draw.
    let sum = 0;
    for (let i = 0; i < n; i++) {
      weights[i] = Math.exp((logits![ids[i]] - maxLogit) / o.temperature);
      sum += weights[i];
    }
    let u = this.rng.nextFloat() * sum;
    for (let i = 0; i < n; i++) {
      u -= weights[i];
      if (u < 0) return ids[i];
    }
    return ids[n - 1];
  }
}

function maxOf(a: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i];
  return m;
}

function allIds(n: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = i;
  return ids;
}
