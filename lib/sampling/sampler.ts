/**
 * The sampler chain, run by the engine's sampler (native/engine/sampler.c), one per sequence. Per token:
 *   1. logitsProcessor(logits, tokens): the user's hook on the full logits (tokens = prompt + generated so far),
 *      the one step in JavaScript; then natively
 *   2. logitBias: added to the listed tokens' logits (-Infinity bans);
 *   3. penalties over the last repeatLastN tokens: repeat (÷ positive logits, × negative ones), frequency
 *      (count × f subtracted), presence (p subtracted once per present token);
 *   4. temperature 0: greedy argmax, lowest id among ties; otherwise
 *   5. the `samplers` stages in their order (top_k, typical_p, top_p, min_p, temperature) on a candidate list
 *      ranked by logit, each seeing the softmax of what the earlier ones left;
 *   6. one draw from the softmax of the survivors with the seeded xoshiro128** generator.
 * The rules are those of the TypeScript reference (reference.ts), which the tests hold the engine to, token for
 * token: the same seed gives the same tokens as that code did when it was the library's sampler.
 *
 * What the engine's forward pass is asked for: with no hook, bias, penalty or logprobs, greedy needs only its
 * best id, and a chain starting with top-k takes its sorted top-k plus the logits. Once steps 1–3 change the
 * logits that ranking is stale, and the sampler ranks the logits itself.
 */
import { InvalidArgumentError } from "../errors";
import { EngineSampler } from "../native/sampler";
import type { SampledToken } from "./logprobs";
import type { LogitsProcessor, ResolvedSampling } from "./options";

export { MAX_LOGPROBS, SAMPLER_NAMES, SAMPLING_DEFAULTS, SAMPLING_OPTION_NAMES, resolveSampling } from "./options";
export type { LogitsProcessor, ResolvedSampling, SamplerName, SamplingOptions } from "./options";
export type { SampledToken, CandidateLogprob } from "./logprobs";

export class Sampler {
  private readonly engine: EngineSampler;
  private readonly hook: LogitsProcessor | undefined;
  /** The array of the last call, whose first historyLength tokens (the last one lastToken) the engine has seen. */
  private history: readonly number[] | undefined;
  private historyLength = 0;
  private lastToken: number | undefined;

  constructor(
    readonly options: ResolvedSampling,
    vocabSize: number,
  ) {
    this.engine = new EngineSampler(options, vocabSize);
    this.hook = options.logitsProcessor;
  }

  get greedy(): boolean {
    return this.options.temperature === 0;
  }

  /** Sorted top ids the engine must return (0 = none). */
  get candidatesNeeded(): number {
    return this.hook ? 0 : this.engine.candidatesNeeded;
  }

  /** Whether the engine must return the full last-position logits. */
  get needsLogits(): boolean {
    return this.hook !== undefined || this.engine.needsLogits;
  }

  /**
   * `tokens`: prompt + generated ids so far (for penalties and the hook). `logits` may be mutated. The engine keeps
   * the penalty window itself: when `tokens` is the array of the previous call grown at its end (as the generation
   * loop's history is), only the new tokens are passed on; any other array replaces the window.
   */
  sample(logits: Float32Array | undefined, candidates: Int32Array | undefined, tokens: readonly number[]): SampledToken {
    if (this.hook) {
      if (!logits) throw new InvalidArgumentError("Sampler.sample: this configuration needs the logits (see needsLogits)");
      this.hook(logits, tokens);
      candidates = undefined;
    }
    this.syncHistory(tokens);
    return this.engine.sample(logits, candidates);
  }

  /** Whether a logitsProcessor runs in JavaScript at every step (a decode loop request then pauses for it). */
  get hasLogitsProcessor(): boolean {
    return this.hook !== undefined;
  }

  /**
   * @internal Hands the sampler to the engine's decode loop for a generation whose tokens so far are `tokens`:
   * the penalty history is brought to them, and from then on the loop appends each token it samples or is given.
   */
  forDecodeLoop(tokens: readonly number[]): EngineSampler {
    this.syncHistory(tokens);
    // The loop grows the history natively: a later sample() must not take this array's tracking for it.
    this.history = undefined;
    return this.engine;
  }

  /**
   * @internal A decode loop step paused for the logitsProcessor: the hook on the logits (`tokens`: prompt and
   * generated so far), then the native chain. The loop appends the pick to the history when it is resumed with it.
   */
  sampleInLoop(logits: Float32Array, tokens: readonly number[]): SampledToken {
    this.hook?.(logits, tokens);
    return this.engine.sample(logits, undefined);
  }

  private syncHistory(tokens: readonly number[]): void {
    const window = this.engine.historyWindow;
    if (window === 0) return;
    let from = this.historyLength;
    const grown = tokens === this.history && tokens.length >= from && (from === 0 || tokens[from - 1] === this.lastToken);
    if (!grown) {
      this.engine.resetHistory();
      from = 0;
    }
    // Tokens older than the window never count.
    if (window > 0) from = Math.max(from, tokens.length - window);
    if (from < tokens.length) this.engine.accept(tokens, from);
    this.history = tokens;
    this.historyLength = tokens.length;
    this.lastToken = tokens[tokens.length - 1];
  }
}
