/**
 * Perplexity of a model on a text over fixed windows (HF's or llama-perplexity's, see ./windows), optionally with the KL divergence
 * from a base model's predictions and how often both pick the same top token.
 */
import { performance } from "node:perf_hooks";
import { InvalidArgumentError } from "../errors";
import type { LlamaModel } from "../model";
import { argmax, klDivergence, MeanAccumulator, negativeLogLikelihood } from "./token-scores";
import { evalWindows, type EvalWindow, windowLength, type WindowMode } from "./windows";

export interface PerplexityOptions {
  /** Predictions per window (default 512). The model's context must hold a window (512 + 1 tokens by default). */
  contextSize?: number;
  /** Score like llama-perplexity: whole windows, second half of each only (default: every predicted token). */
  llamaCppWindows?: boolean;
  /** A model to compare against: reports mean KL(base ‖ model) and top-1 agreement on the same windows. */
  base?: LlamaModel;
  /**
   * Split the text at this string into documents, each tokenized as BOS text EOS and concatenated (how the trained
   * reference models were trained and their val_nll measured). Default: the whole text, BOS first.
   */
  documentSeparator?: string;
  /** Evaluate only the first N windows. */
  maxWindows?: number;
  onProgress?: (progress: { windowsDone: number; windows: number; ppl: number }) => void;
}

export interface KlStats {
  /** Mean KL(base ‖ model) per scored position, in nats, and its standard error. */
  mean: number;
  error: number;
  /** Fraction of scored positions where both models' most likely token is the same. */
  top1Agreement: number;
  /** The base model's perplexity on the same positions. */
  basePpl: number;
}

export interface PerplexityResult {
  ppl: number;
  /** Standard error of ppl (llama-perplexity's "±"). */
  pplError: number;
  /** Mean negative log-likelihood per scored token, in nats. */
  nll: number;
  /** Tokens of the text (BOS and EOS included), windows evaluated, positions scored. */
  tokens: number;
  windows: number;
  scored: number;
  contextSize: number;
  mode: WindowMode;
  seconds: number;
  kl?: KlStats;
}

const DEFAULT_CONTEXT = 512;
/** Logits per native call are capped at this many floats (64 MiB), splitting a window into batches if needed. */
const MAX_LOGITS_FLOATS = 1 << 24;

function checkModel(model: LlamaModel, windowTokens: number, what: string): void {
  if (model.info.contextSize < windowTokens) {
    throw new InvalidArgumentError(`${what} was loaded with a context of ${model.info.contextSize}, less than the window's ${windowTokens} tokens`);
  }
}

/** What the scored positions add up to. */
class Scores {
  readonly nll = new MeanAccumulator();
  readonly baseNll = new MeanAccumulator();
  readonly kl = new MeanAccumulator();
  sameTop = 0;

  add(row: Float32Array, baseRow: Float32Array | undefined, target: number): void {
    this.nll.add(negativeLogLikelihood(row, target));
    if (!baseRow) return;
    this.baseNll.add(negativeLogLikelihood(baseRow, target));
    this.kl.add(klDivergence(baseRow, row));
    if (argmax(baseRow) === argmax(row)) this.sameTop++;
  }
}

/** Runs one window through the model (and the base model, batch for batch) and scores its scored positions. */
async function scoreWindow(win: EvalWindow, model: LlamaModel, base: LlamaModel | undefined, batchSize: number, scores: Scores): Promise<void> {
  const vocab = model.info.vocabSize;
  const baseBatches = base?.logitBatches(win.ids, batchSize);
  try {
    for await (const { first, count, logits } of model.logitBatches(win.ids, batchSize)) {
      const baseLogits = baseBatches ? (await baseBatches.next()).value?.logits : undefined;
      for (let i = Math.max(first, win.firstScored); i < first + count && i <= win.lastScored; i++) {
        const at = (i - first) * vocab;
        scores.add(logits.subarray(at, at + vocab), baseLogits?.subarray(at, at + vocab), win.ids[i + 1]);
      }
    }
  } finally {
    await baseBatches?.return(undefined); // releases the base model's context
  }
}

function tokenStream(model: LlamaModel, text: string, separator: string | undefined): number[] {
  if (separator === undefined) return model.tokenize(text, { addBos: true });
  if (separator === "") throw new InvalidArgumentError("perplexity: documentSeparator must not be empty");
  const eos = model.info.eosIds[0];
  if (eos === undefined) throw new InvalidArgumentError("perplexity: documentSeparator needs a model with an EOS token");
  return text.split(separator).flatMap((doc) => [...model.tokenize(doc, { addBos: true }), eos]);
}

/** The numeric options' rules, on their own so that a caller (the CLI) can check them before loading a model. */
export function checkPerplexityOptions(options: Pick<PerplexityOptions, "contextSize" | "maxWindows">): void {
  const { contextSize, maxWindows } = options;
  if (contextSize !== undefined && (!Number.isInteger(contextSize) || contextSize < 2 || contextSize % 2 !== 0)) {
    throw new InvalidArgumentError(`perplexity: contextSize must be an even integer ≥ 2 (got ${String(contextSize)})`);
  }
  // 0 or a negative count would score nothing, or silently drop the last windows (slice's negative end).
  if (maxWindows !== undefined && (!Number.isInteger(maxWindows) || maxWindows < 1)) {
    throw new InvalidArgumentError(`perplexity: maxWindows must be a positive integer (got ${String(maxWindows)})`);
  }
}

export async function perplexity(model: LlamaModel, text: string, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  checkPerplexityOptions(options);
  const contextSize = options.contextSize ?? DEFAULT_CONTEXT;
  if (typeof text !== "string") throw new InvalidArgumentError("perplexity: text must be a string");
  const { base } = options;
  const mode: WindowMode = options.llamaCppWindows ? "llama-cpp" : "all";
  checkModel(model, windowLength(contextSize, mode), "the model");
  if (base) {
    checkModel(base, windowLength(contextSize, mode), "the base model");
    if (base.info.vocabSize !== model.info.vocabSize) {
      throw new InvalidArgumentError(`the base model has ${base.info.vocabSize} tokens in its vocabulary, the model ${model.info.vocabSize}`);
    }
  }
  const bosId = model.info.bosId;
  if (bosId === undefined) throw new InvalidArgumentError("perplexity needs a model with a BOS token");

  const start = performance.now();
  const tokens = tokenStream(model, text, options.documentSeparator);
  const windows = evalWindows(tokens, contextSize, bosId, mode).slice(0, options.maxWindows ?? Infinity);
  const batchSize = Math.max(1, Math.min(contextSize + 1, Math.floor(MAX_LOGITS_FLOATS / model.info.vocabSize)));

  const scores = new Scores();
  for (const [w, win] of windows.entries()) {
    await scoreWindow(win, model, base, batchSize, scores);
    options.onProgress?.({ windowsDone: w + 1, windows: windows.length, ppl: Math.exp(scores.nll.mean) });
  }

  const { nll, baseNll, kl } = scores;
  const ppl = Math.exp(nll.mean);
  return {
    ppl,
    pplError: nll.standardError * ppl,
    nll: nll.mean,
    tokens: tokens.length,
    windows: windows.length,
    scored: nll.count,
    contextSize,
    mode,
    seconds: (performance.now() - start) / 1000,
    kl: base ? { mean: kl.mean, error: kl.standardError, top1Agreement: scores.sameTop / kl.count, basePpl: Math.exp(baseNll.mean) } : undefined,
  };
}
