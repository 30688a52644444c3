/**
 * The sampler chain in TypeScript: the reference that the engine's sampler (native/engine/sampler.c, behind
 * sampler.ts) is tested against token for token. The library samples natively; this is the chain of sampler.ts's
 * comment written plainly, with the same seeded generator (rng.ts).
 *
 * It asks the engine for what the native sampler asks: with no hook, bias, penalty or logprobs, greedy needs
 * only the engine's best id, and a chain starting with top-k takes the engine's sorted top-k plus the logits.
 * Once the hook, the bias or the penalties change the logits the engine's ranking is stale, so it ranks the
 * logits itself (top-k.ts, radix-sort.ts). With `logprobs`, the chosen token's log-probability and the top
 * alternatives come from the distribution actually drawn from (for greedy: the softmax at temperature 1 of the
 * processed logits).
 */
import { InvalidArgumentError } from "../errors";
import { CandidateList, dropImpossible, rankVocabulary, takeRanked, wholeVocabulary } from "./candidates";
import { applyLogitBias, applyPenalties, penaltiesActive } from "./logit-adjustments";
import { topLogprobs, type SampledToken } from "./logprobs";
import type { ResolvedSampling, SamplerName } from "./options";
import { RadixSorter } from "./radix-sort";
import { Rng } from "./rng";
import { drawPosition, logSumExp } from "./softmax";
import { applyTemperature, keepMinP, keepTopK, keepTopP, keepTypical, planStages, truncates } from "./stages";
import { selectTopK } from "./top-k";

export class ReferenceSampler {
  private readonly rng: Rng;
  /** The active stages in application order. */
  private readonly stages: readonly SamplerName[];
  /** Whether the hook, the bias or the penalties can change the logits, which makes the engine's ranking unusable. */
  private readonly modifiesLogits: boolean;
  private readonly applyPenalties: boolean;
  /**
   * Where the candidate list comes from: the top-k (the engine's, or selected here), the whole vocabulary ranked
   * (a truncation needs every token), or the whole vocabulary unranked (no truncation at all).
   */
  private readonly source: "top_k" | "ranked_vocabulary" | "vocabulary";
  /** Scratch reused every step (allocated only for what this configuration uses). */
  private readonly list?: CandidateList;
  private readonly sorter?: RadixSorter;
  private readonly alternatives?: CandidateList;

  constructor(
    readonly options: ResolvedSampling,
    vocabSize: number,
  ) {
    this.rng = new Rng(options.seed);
    this.stages = planStages(options, vocabSize);
    this.applyPenalties = penaltiesActive(options);
    this.modifiesLogits = options.logitsProcessor !== undefined || options.logitBias.size > 0 || this.applyPenalties;
    this.source = this.stages[0] === "top_k" ? "top_k" : this.stages.some(truncates) ? "ranked_vocabulary" : "vocabulary";
    if (options.logprobs) this.alternatives = new CandidateList(options.logprobs);
    if (this.greedy) return;
    this.list = new CandidateList(this.source === "top_k" ? options.topK : vocabSize);
    if (this.source === "ranked_vocabulary" || this.stages.includes("typical_p")) this.sorter = new RadixSorter(this.list.ids.length);
  }

  get greedy(): boolean {
    return this.options.temperature === 0;
  }

  /** Sorted top ids the engine must return (0 = none). */
  get candidatesNeeded(): number {
    if (this.modifiesLogits) return 0;
    if (this.greedy) return Math.max(1, this.options.logprobs ?? 0);
    return this.source === "top_k" ? this.options.topK : 0;
  }

  /** Whether the engine must return the full last-position logits. */
  get needsLogits(): boolean {
    return !this.greedy || this.modifiesLogits || this.options.logprobs !== undefined;
  }

  /** `tokens`: prompt + generated ids so far (for penalties and the hook). `logits` may be mutated. */
  sample(logits: Float32Array | undefined, candidates: Int32Array | undefined, tokens: readonly number[]): SampledToken {
    if (this.modifiesLogits) {
      this.adjustLogits(required(logits), tokens);
      candidates = undefined;
    }
    return this.greedy ? this.pickGreedy(logits, candidates) : this.draw(required(logits), candidates);
  }

  private adjustLogits(logits: Float32Array, tokens: readonly number[]): void {
    const o = this.options;
    o.logitsProcessor?.(logits, tokens);
    applyLogitBias(logits, o.logitBias);
    if (this.applyPenalties) applyPenalties(logits, tokens, o);
  }

  private pickGreedy(logits: Float32Array | undefined, candidates: Int32Array | undefined): SampledToken {
    const id = candidates?.length ? candidates[0] : argmax(required(logits));
    const n = this.options.logprobs;
    if (n === undefined) return { id };
    const all = required(logits);
    const logNormalizer = logSumExp(all, all.length);
    const alternatives = this.alternatives;
    if (!alternatives) return { id, logprob: all[id] - logNormalizer, topLogprobs: [] };
    if (candidates) takeRanked(alternatives, all, candidates, n);
    else selectTopK(all, n, alternatives);
    return { id, logprob: all[id] - logNormalizer, topLogprobs: topLogprobs(alternatives, n, logNormalizer) };
  }

  private draw(logits: Float32Array, candidates: Int32Array | undefined): SampledToken {
    const list = this.list!;
    this.fillCandidates(list, logits, candidates);
    if (list.size === 0) throw noTokenLeft();
    for (const stage of this.stages) this.applyStage(stage, list);
    const { position, logNormalizer } = drawPosition(list, this.rng.nextFloat());
    const id = list.ids[position];
    const n = this.options.logprobs;
    if (n === undefined) return { id };
    const logprob = list.logits[position] - logNormalizer;
    const alternatives = this.alternatives;
    if (!alternatives) return { id, logprob, topLogprobs: [] };
    // An id-order list holds the whole vocabulary, so a position found by selection is the token id.
    if (!list.ranked) selectTopK(list.logits.subarray(0, list.size), n, alternatives);
    return { id, logprob, topLogprobs: topLogprobs(list.ranked ? list : alternatives, n, logNormalizer) };
  }

  private fillCandidates(list: CandidateList, logits: Float32Array, candidates: Int32Array | undefined): void {
    switch (this.source) {
      case "top_k":
        if (candidates) return takeRanked(list, logits, candidates, this.options.topK);
        selectTopK(logits, this.options.topK, list);
        return dropImpossible(list);
      case "ranked_vocabulary":
        return rankVocabulary(list, logits, this.sorter!);
      case "vocabulary":
        return wholeVocabulary(list, logits);
    }
  }

  private applyStage(stage: SamplerName, list: CandidateList): void {
    const o = this.options;
    switch (stage) {
      case "top_k":
        return keepTopK(list, o.topK);
      case "typical_p":
        return keepTypical(list, o.typicalP, this.sorter!);
      case "top_p":
        return keepTopP(list, o.topP);
      case "min_p":
        return keepMinP(list, o.minP);
      case "temperature":
        return applyTemperature(list, o.temperature);
    }
  }
}

/** The first id with the largest logit; NaN never wins. */
function argmax(logits: Float32Array): number {
  let best = -1;
  let bestLogit = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] > bestLogit) {
      bestLogit = logits[i];
      best = i;
    }
  }
  if (best < 0) throw noTokenLeft();
  return best;
}

function required(logits: Float32Array | undefined): Float32Array {
  if (!logits) throw new InvalidArgumentError("Sampler.sample: this configuration needs the logits (see needsLogits)");
  return logits;
}

function noTokenLeft(): InvalidArgumentError {
  return new InvalidArgumentError("no token can be sampled: every logit is -Infinity or NaN (check logitBias and logitsProcessor)");
}
