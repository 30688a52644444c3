/**
 * The generation loop: prefill the prompt in one batch, then decode one token at a time, sampling in TypeScript
 * from the candidates the engine returns, streaming text through the detokenizer, until a stop condition.
 */
import { performance } from "node:perf_hooks";
import type { EngineContext } from "../native/engine";
import { Sampler } from "../sampling/sampler";
import { StreamingDetokenizer } from "../tokenizer/stream";
import type { Tokenizer } from "../tokenizer/types";
import type { Completion, FinishReason, GeneratedToken, GenerateOptions } from "./types";

export interface GenerationRequest {
  context: EngineContext;
  tokenizer: Tokenizer;
  promptIds: number[];
  sampler: Sampler;
  maxTokens: number;
  stopIds: ReadonlySet<number>;
  signal?: AbortSignal;
  /** Checked before each step: throws when the model was disposed. */
  assertUsable: () => void;
}

export async function* runGeneration(req: GenerationRequest): AsyncGenerator<GeneratedToken, Completion> {
  const { context, sampler, promptIds } = req;
  const detok = new StreamingDetokenizer(req.tokenizer, promptIds);
  const decodeOptions = {
    logits: sampler.needsLogits ? ("last" as const) : ("none" as const),
    topK: sampler.candidatesNeeded,
  };
  const tokens: number[] = [];
  let text = "";
  let finishReason: FinishReason = "length";

  const prefillStart = performance.now();
  req.assertUsable();
  let out = await context.decode(promptIds, 0, decodeOptions);
  const prefillMs = performance.now() - prefillStart;
  let decodeMs = 0;
  let decodes = 0;

  let pos = promptIds.length;
  for (;;) {
    if (req.signal?.aborted) {
      finishReason = "abort";
      break;
    }
    const id = sampler.sample(out.logits, out.top);
    if (req.stopIds.has(id)) {
      finishReason = "stop";
      break;
    }
    tokens.push(id);
    const last = tokens.length >= req.maxTokens || pos >= context.contextSize;
    const delta = detok.push(id) + (last ? detok.flush() : "");
    text += delta;
    yield { id, text: delta };
    if (last) break;
    req.assertUsable();
    const stepStart = performance.now();
    out = await context.decode([id], pos++, decodeOptions);
    decodeMs += performance.now() - stepStart;
    decodes++;
  }
  text += detok.flush();
  return {
    text,
    tokens,
    finishReason,
    stats: {
      promptTokens: promptIds.length,
      genTokens: tokens.length,
      prefillTps: promptIds.length / (prefillMs / 1000),
      decodeTps: decodes > 0 ? decodes / (decodeMs / 1000) : 0,
    },
  };
}

export type { GenerateOptions };
