/**
 * The engine's sampler (native/engine/sampler.h) for one sequence, in the library's terms: built from the resolved
 * options, its failures as typed errors, its logprob report as a SampledToken.
 */
import type { CandidateLogprob, SampledToken } from "../sampling/logprobs";
import type { ResolvedSampling } from "../sampling/options";
import { loadBinding, type NativeSampler } from "./binding";
import { toTypedError } from "./engine";

export class EngineSampler {
  /** @internal The binding's sampler: the decode loop borrows it for a request. */
  readonly native: NativeSampler;
  /** Where each step's logprobs arrive (see NativeSampler.sample); null without the logprobs option. */
  private readonly report: Float64Array | null;
  /** What the sampler asks of the forward pass (NativeSampler's, read once: they never change). */
  readonly candidatesNeeded: number;
  readonly needsLogits: boolean;
  readonly historyWindow: number;

  constructor(options: ResolvedSampling, vocabSize: number) {
    try {
      this.native = new (loadBinding().Sampler)(
        {
          temperature: options.temperature,
          topK: options.topK,
          topP: options.topP,
          minP: options.minP,
          typicalP: options.typicalP,
          repeatPenalty: options.repeatPenalty,
          repeatLastN: options.repeatLastN,
          frequencyPenalty: options.frequencyPenalty,
          presencePenalty: options.presencePenalty,
          biasIds: Int32Array.from(options.logitBias.keys()),
          biasValues: Float64Array.from(options.logitBias.values()),
          seed: options.seed,
          samplers: options.samplers,
          logprobs: options.logprobs ?? -1,
        },
        vocabSize,
      );
    } catch (err) {
      throw toTypedError(err);
    }
    this.report = options.logprobs === undefined ? null : new Float64Array(2 + 2 * options.logprobs);
    this.candidatesNeeded = this.native.candidatesNeeded;
    this.needsLogits = this.native.needsLogits;
    this.historyWindow = this.native.historyWindow;
  }

  /** Appends tokens[from..] to the penalty history. */
  accept(tokens: readonly number[], from: number): void {
    const ids = new Int32Array(tokens.length - from);
    for (let i = 0; i < ids.length; i++) ids[i] = tokens[from + i];
    try {
      this.native.accept(ids);
    } catch (err) {
      throw toTypedError(err);
    }
  }

  resetHistory(): void {
    this.native.resetHistory();
  }

  /** One step (the logits are changed in place by the bias and the penalties). */
  sample(logits: Float32Array | undefined, ranked: Int32Array | undefined): SampledToken {
    let id: number;
    try {
      id = this.native.sample(logits ?? null, ranked ?? null, this.report);
    } catch (err) {
      throw toTypedError(err);
    }
    const report = this.report;
    if (!report) return { id };
    const topLogprobs: CandidateLogprob[] = [];
    for (let i = 0; i < report[1]; i++) topLogprobs.push({ id: report[2 + 2 * i], logprob: report[3 + 2 * i] });
    return { id, logprob: report[0], topLogprobs };
  }
}
