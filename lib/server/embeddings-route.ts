/**
 * POST /v1/embeddings: one vector per input (a string, strings, token ids or arrays of them), mean-pooled and
 * normalized as OpenAI's embeddings are, as float arrays or base64 of little-endian float32 (the official client
 * asks for base64 by default). A request takes one slot while its forward pass runs.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { checkModelName, invalidParameter, unsupportedParameter } from "./errors";
import { admit, type ServerContext, trackRequest } from "./completion-route";
import type { EmbeddingsBody } from "./schemas";
import { checkPromptLength, checkTokenIds } from "./translate";

export function embeddingsHandler(ctx: ServerContext) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<object> => {
    const body = request.body as EmbeddingsBody;
    checkModelName(ctx, body.model);
    const { model } = ctx;
    if (body.dimensions != null && body.dimensions !== model.info.dim) {
      throw unsupportedParameter(`'dimensions' must be this model's ${model.info.dim} (got ${body.dimensions}).`, "dimensions");
    }
    const prompts = embeddingInputs(body.input).map((input) => {
      const tokens = typeof input === "string" ? model.tokenize(input, { addBos: true }) : input;
      checkTokenIds(tokens, model, "input");
      checkPromptLength(tokens, model, "input");
      return tokens;
    });
    admit(ctx, 1);
    // Waiting for a slot ends when the client leaves or the server closes; the forward pass itself is short.
    const abort = trackRequest(ctx, reply);
    const release = await ctx.slots.acquire(abort.signal);
    let vectors: Float32Array[];
    try {
      vectors = await model.embed(prompts.map((tokens) => ({ tokens })));
    } finally {
      release();
    }
    const base64 = body.encoding_format === "base64";
    const promptTokens = prompts.reduce((n, tokens) => n + tokens.length, 0);
    return {
      object: "list",
      data: vectors.map((vector, index) => ({
        object: "embedding",
        index,
        embedding: base64 ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString("base64") : Array.from(vector),
      })),
      model: ctx.modelAlias,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    };
  };
}

function embeddingInputs(input: EmbeddingsBody["input"]): (string | number[])[] {
  if (typeof input === "string") return [input];
  if (input.length === 0) throw invalidParameter("Invalid 'input': an empty array.", "input");
  if (typeof input[0] === "number") return [input as number[]];
  return input as string[] | number[][];
}
