/**
 * The truncation and temperature stages, each working in place on a ranked CandidateList (logit descending,
 * ties by id) and keeping at least one token, with llama.cpp's semantics: the probabilities a stage looks at are
 * the softmax of the list as the earlier stages left it — renormalised over what they kept, and tempered if
 * temperature came earlier — and temperature divides the logits where it stands in the order.
 */
import type { CandidateList } from "./candidates";
import type { ResolvedSampling, SamplerName } from "./options";
import type { RadixSorter } from "./radix-sort";

/**
 * The stages that change anything (top-k below the vocabulary size, top-p / typical-p below 1, min-p above 0,
 * temperature other than 1), in the order they apply. Top-k moves to the front when only temperature and min-p
 * precede it: neither changes the ranking, and min-p keeps the prefix {logit ≥ max + T·ln minP} whatever else
 * is in the list, so the result is the same — and the engine's native top-k can then supply the list.
 */
export function planStages(options: ResolvedSampling, vocabSize: number): readonly SamplerName[] {
  const active = options.samplers.filter((stage) => {
    switch (stage) {
      case "top_k":
        return options.topK > 0 && options.topK < vocabSize;
      case "typical_p":
        return options.typicalP < 1;
      case "top_p":
        return options.topP < 1;
      case "min_p":
        return options.minP > 0;
      case "temperature":
        return options.temperature !== 1;
    }
  });
  const topK = active.indexOf("top_k");
  if (topK > 0 && active.slice(0, topK).every((stage) => stage === "temperature" || stage === "min_p")) {
    active.splice(topK, 1);
    active.unshift("top_k");
  }
  return active;
}

/** Whether a stage cuts the list (all but temperature), which requires the list in rank order. */
export function truncates(stage: SamplerName): boolean {
  return stage !== "temperature";
}

export function keepTopK(list: CandidateList, k: number): void {
  list.size = Math.min(list.size, k);
}

/** Keeps the shortest prefix whose probability reaches p. */
export function keepTopP(list: CandidateList, p: number): void {
  const { logits, size } = list;
  const max = logits[0];
  let total = 0;
  for (let i = 0; i < size; i++) total += Math.exp(logits[i] - max);
  const target = p * total;
  let mass = 0;
  for (let i = 0; i < size; i++) {
    mass += Math.exp(logits[i] - max);
    if (mass >= target) {
      list.size = i + 1;
      return;
    }
  }
}

/** Keeps the tokens whose probability is at least minP × the top one's, i.e. logit ≥ max + ln minP. */
export function keepMinP(list: CandidateList, minP: number): void {
  const floor = list.logits[0] + Math.log(minP);
  let keep = 1;
  while (keep < list.size && list.logits[keep] >= floor) keep++;
  list.size = keep;
}

/**
 * Locally typical sampling (Meister et al. 2022, as llama.cpp implements it): rank the tokens by how far their
 * surprisal −ln p lies from the entropy H, and keep the closest ones until their probability reaches p. The kept
 * set need not be a prefix of the list, so it is put back in rank order afterwards. Distances are compared at
 * float32 precision (as llama.cpp stores them), equal ones in rank order.
 */
export function keepTypical(list: CandidateList, p: number, sorter: RadixSorter): void {
  const { ids, logits, size } = list;
  const max = logits[0];
  let total = 0;
  for (let i = 0; i < size; i++) total += Math.exp(logits[i] - max);
  const logTotal = max + Math.log(total);
  let entropy = 0;
  for (let i = 0; i < size; i++) {
    const logProb = logits[i] - logTotal;
    const prob = Math.exp(logProb);
    if (prob > 0) entropy -= prob * logProb;
  }
  const distance = sorter.floatKeys;
  for (let i = 0; i < size; i++) distance[i] = Math.abs(logTotal - logits[i] - entropy);
  const order = sorter.sort(size);
  let keep = size;
  let mass = 0;
  for (let j = 0; j < size; j++) {
    mass += Math.exp(logits[order[j]] - logTotal);
    if (mass >= p) {
      keep = j + 1;
      break;
    }
  }
  // Kept positions in ascending order = rank order; compacting in place is safe as each moves down or stays.
  const kept = order.subarray(0, keep).sort();
  for (let j = 0; j < keep; j++) {
    ids[j] = ids[kept[j]];
    logits[j] = logits[kept[j]];
  }
  list.size = keep;
}

/** Divides the logits by the temperature: the stages after it see the tempered distribution. */
export function applyTemperature(list: CandidateList, temperature: number): void {
  for (let i = 0; i < list.size; i++) list.logits[i] /= temperature;
}
