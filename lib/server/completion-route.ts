/**
 * The handler both generation endpoints share: admit the request (or 429), run each choice in a slot, answer as
 * one JSON response or as an SSE stream. A request owns an AbortController: the client going away or the server
 * closing aborts its generations, which then leave the batch at the next step and give their slots back.
 */
import { randomUUID } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Completion, GeneratedToken, GenerateOptions } from "../generation/types";
import type { LlamaModel } from "../model";
import { ApiError, checkModelName, invalidParameter, toApiError } from "./errors";
import type { ServerMetrics } from "./metrics";
import { ChoiceText, HeldReply, type ResponseFormat, toolCallsOf } from "./responses";
import type { GenerationBody } from "./schemas";
import { SseStream } from "./sse";
import type { SlotScheduler } from "./slot-scheduler";
import { choiceOptions, type GenerationPlan, type RequestLimits } from "./translate";

/** A generation request being served, for close(): how to abort it, and when its response is out. */
export interface InFlightRequest {
  controller: AbortController;
  /** Resolves when the response has ended (or the connection dropped). */
  finished: Promise<void>;
}

export interface ServerContext {
  model: LlamaModel;
  /** The model id clients name in requests. */
  modelAlias: string;
  /** Whether other model names are refused (404) rather than served by this model. */
  strictModelName: boolean;
  slots: SlotScheduler;
  /** Caps on `n` and on the tokens of a choice. */
  limits: RequestLimits;
  metrics: ServerMetrics;
  inFlight: Set<InFlightRequest>;
  /** Set by close(): requests that still arrive get a 503. */
  closing: boolean;
}

/** How long a client told "queue full" should wait: about one short generation on a busy server. */
const RETRY_AFTER_SECONDS = 1;

/** The abort reason of a request whose client disconnected: there is nobody to tell. */
const CLIENT_GONE = new ApiError(499, "the client closed the connection", { code: "client_closed_request" });

export function completionHandler<Body extends GenerationBody>(
  ctx: ServerContext,
  format: ResponseFormat,
  planOf: (body: Body, model: LlamaModel, limits: RequestLimits) => GenerationPlan,
) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const body = request.body as Body;
    checkModelName(ctx, body.model);
    const plan = planOf(body, ctx.model, ctx.limits);
    admit(ctx, plan.prompts.length * plan.n);
    const abort = trackRequest(ctx, reply);
    const run = new Run(ctx, format, plan, abort.signal);
    try {
      return plan.stream ? await run.stream(reply) : await run.respond();
    } catch (err) {
      abort.abort(err); // the other choices of a failed request stop too
      throw err;
    }
  };
}

/**
 * Registers a generation request for close() and returns its AbortController: aborted when the client goes away
 * before its response is out, or by close().
 */
export function trackRequest(ctx: ServerContext, reply: FastifyReply): AbortController {
  const abort = new AbortController();
  const inFlight: InFlightRequest = {
    controller: abort,
    finished: new Promise((resolve) =>
      reply.raw.once("close", () => {
        if (!reply.raw.writableFinished) abort.abort(CLIENT_GONE);
        ctx.inFlight.delete(inFlight);
        resolve();
      }),
    ),
  };
  ctx.inFlight.add(inFlight);
  return abort;
}

/** Refuses a request whose generations would overflow the slots and queue (400) or do not fit now (429). */
export function admit(ctx: ServerContext, generations: number): void {
  const { slots } = ctx;
  if (generations > slots.slots + slots.queueLimit) {
    throw invalidParameter(
      `Invalid 'n': the request asks for ${generations} generations but this server takes at most ${slots.slots + slots.queueLimit} at once.`,
      "n",
    );
  }
  if (!slots.canAdmit(generations)) {
    throw new ApiError(429, `The server is busy: ${slots.activeSlots} generations running and ${slots.queueDepth} waiting. Retry later.`, {
      code: "queue_full",
      headers: { "retry-after": String(RETRY_AFTER_SECONDS) },
    });
  }
}

/** One request being served: its choices (prompt × n), their texts, and the response they make. */
class Run {
  private readonly id: string;
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly texts: ChoiceText[];

  constructor(
    private readonly ctx: ServerContext,
    private readonly format: ResponseFormat,
    private readonly plan: GenerationPlan,
    private readonly signal: AbortSignal,
  ) {
    this.id = format.idPrefix + randomUUID().replace(/-/g, "");
    const scored = plan.options.logprobs !== undefined;
    this.texts = Array.from({ length: plan.prompts.length * plan.n }, (_, i) => new ChoiceText(scored, plan.promptTextLengths[Math.floor(i / plan.n)]));
  }

  async respond(): Promise<object> {
    const completions = await this.runChoices(() => {}, () => {});
    return {
      ...this.header(this.format.object),
      choices: completions.map((c, i) => {
        const calls = toolCallsOf(c.text, this.plan.tools);
        return this.format.choice(i, c.text, this.texts[i].takeScores(), calls ? "tool_calls" : c.finishReason, calls);
      }),
      usage: this.usage(completions),
    };
  }

  async stream(reply: FastifyReply): Promise<FastifyReply> {
    const sse = new SseStream(reply);
    const chunk = (choice: object) => ({ ...this.header(this.format.chunkObject), choices: [choice], ...(this.plan.includeUsage && { usage: null }) });
    const opened = new Set<number>();
    const open = (index: number) => {
      if (opened.has(index)) return;
      opened.add(index);
      const opening = this.format.openingChoice(index);
      if (opening) sse.send(chunk(opening));
    };
    const sendText = (index: number, text: string) => {
      open(index);
      sse.send(chunk(this.format.deltaChoice(index, text, this.texts[index].takeScores())));
    };
    // A reply held to its end (tools offered) goes out as calls, or as text when it does not parse as calls.
    const replies = this.texts.map((_, index) => new HeldReply(this.plan.tools, (text) => sendText(index, text)));
    try {
      const completions = await this.runChoices(
        (index, token) => replies[index].add(token.text),
        (index, completion) => {
          const calls = replies[index].holding ? toolCallsOf(completion.text, this.plan.tools) : undefined;
          if (calls) {
            open(index);
            calls.forEach((call, position) => this.format.toolCallChoices!(index, position, call).forEach((choice) => sse.send(chunk(choice))));
          } else replies[index].flush();
          if (this.texts[index].hasUnreported) sendText(index, "");
          open(index);
          sse.send(chunk(this.format.finishChoice(index, calls ? "tool_calls" : completion.finishReason)));
        },
      );
      if (this.plan.includeUsage) sse.send({ ...this.header(this.format.chunkObject), choices: [], usage: this.usage(completions) });
      sse.done();
    } catch (err) {
      if (!sse.opened) throw err;
      sse.fail(toApiError(err).body);
    }
    return reply;
  }

  /**
   * Runs every choice, each in a slot of its own, and resolves with their completions in choice order. `onToken`
   * sees each token after it is added to the choice's text; `onFinish` each completion as it ends. A request that
   * was aborted (client gone, server closing) rejects with the abort reason.
   */
  private async runChoices(
    onToken: (index: number, token: GeneratedToken) => void,
    onFinish: (index: number, completion: Completion) => void,
  ): Promise<Completion[]> {
    const { plan } = this;
    const choices = plan.prompts.flatMap((prompt) =>
      Array.from({ length: plan.n }, (_, i) => {
        const controller = new AbortController();
        return { prompt, controller, options: choiceOptions(plan, i, controller.signal) };
      }),
    );
    // One listener on the request's signal aborts every choice: a listener per choice would pass the signal's
    // limit of 10 (and print MaxListenersExceededWarning) for n above 10.
    const abortChoices = () => choices.forEach(({ controller }) => controller.abort(this.signal.reason));
    this.signal.addEventListener("abort", abortChoices, { once: true });
    const completions = await Promise.all(
      choices.map(async ({ prompt, controller, options }, index) => {
        const completion = await generateInSlot(this.ctx, prompt, options, controller.signal, (token) => {
          this.texts[index].add(token);
          onToken(index, token);
        });
        if (!this.signal.aborted) onFinish(index, completion);
        return completion;
      }),
    ).finally(() => this.signal.removeEventListener("abort", abortChoices));
    if (this.signal.aborted) throw this.signal.reason;
    return completions;
  }

  private header(object: string) {
    return { id: this.id, object, created: this.created, model: this.ctx.modelAlias };
  }

  /** Prompt tokens once per prompt (its n choices share it), completion tokens of every choice. */
  private usage(completions: Completion[]) {
    let promptTokens = 0;
    let completionTokens = 0;
    completions.forEach((c, i) => {
      if (i % this.plan.n === 0) promptTokens += c.stats.promptTokens;
      completionTokens += c.stats.genTokens;
    });
    return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
  }
}

/** One generation in a slot of its own (waiting for one first), its stats recorded; `onToken` sees each token. */
export async function generateInSlot(
  ctx: ServerContext,
  prompt: number[],
  options: GenerateOptions,
  signal: AbortSignal,
  onToken: (token: GeneratedToken) => void,
): Promise<Completion> {
  const { model, slots, metrics } = ctx;
  const release = await slots.acquire(signal);
  try {
    const generation = model.generate({ tokens: prompt }, options);
    for (;;) {
      const step = await generation.next();
      if (step.done) {
        metrics.recordGeneration(step.value.stats);
        return step.value;
      }
      onToken(step.value);
    }
  } finally {
    release();
  }
}
