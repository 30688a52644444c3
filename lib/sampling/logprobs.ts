/** What sample() returns, and the log-probability report built from a ranked list. */
import type { CandidateList } from "./candidates";

export interface CandidateLogprob {
  id: number;
  /** Natural log of the token's probability in the distribution it was drawn from. */
  logprob: number;
}

export interface SampledToken {
  id: number;
  /** Only with the `logprobs` option. */
  logprob?: number;
  /** Only with the `logprobs` option: up to that many most likely tokens, by logprob descending, ties by id. */
  topLogprobs?: CandidateLogprob[];
}

/**
 * The first n entries of a ranked list as logprobs, given ln Σ exp(logit) of the distribution. Tokens of
 * probability zero (banned) are not alternatives; in a ranked list they can only come last.
 */
export function topLogprobs(list: CandidateList, n: number, logNormalizer: number): CandidateLogprob[] {
  const out: CandidateLogprob[] = [];
  for (let i = 0; i < Math.min(n, list.size); i++) {
    const logprob = list.logits[i] - logNormalizer;
    if (logprob === -Infinity) break;
    out.push({ id: list.ids[i], logprob });
  }
  return out;
}
