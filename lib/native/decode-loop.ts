/**
 * The engine's decode loop (native/engine/decode_loop.h) in the library's terms: one per model, created with its
 * first request. Each request gets its events (tokens, its end, logits for a logitsProcessor step) in order
 * through a LoopRequest; errors arrive as the library's typed errors.
 */
import { performance } from "node:perf_hooks";
import { DisposedError } from "../errors";
import { loadBinding, type NativeDecodeLoop, type NativeFinish, type NativeGrammar, type NativeLoopEvent, type NativeModel } from "./binding";
import type { EngineContext } from "./engine";
import { toInt32, toTypedError } from "./engine";
import type { EngineSampler } from "./sampler";

export type LoopFinish = NativeFinish;

export interface LoopEvent extends Omit<NativeLoopEvent, "error"> {
  /** kind "error": the typed error. */
  error?: unknown;
}

export interface LoopRequestOptions {
  maxTokens: number;
  endIds: Int32Array;
  logprobs: boolean;
  /** The request waits after each pass with a "logits" event until resume() (a logitsProcessor runs in JS). */
  pauseEachStep: boolean;
  /** Masks each step to the tokens that continue this grammar; the request ends (finish "grammar") once complete. */
  grammar?: NativeGrammar;
}

/** One generation in the loop: its events in order, and the calls that steer it. */
export class LoopRequest {
  private readonly queue: LoopEvent[] = [];
  private wake: (() => void) | undefined;
  private over = false;
  private resolveEnded!: () => void;
  /** Resolves once the request's done or error event has arrived (its cache is free again). */
  readonly ended = new Promise<void>((resolve) => (this.resolveEnded = resolve));
  /** performance.now() when it was submitted, and when its first event arrived (whenever it is taken). */
  readonly submittedAt = performance.now();
  firstEventAt: number | undefined;

  /** @internal */
  constructor(
    private readonly loop: NativeDecodeLoop,
    readonly id: number,
  ) {}

  /** The next event, once it has come. */
  async next(): Promise<LoopEvent> {
    while (this.queue.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.queue.shift()!;
  }

  /** The event after the ones taken so far, if it has come (a token's own done event arrives in the same pass). */
  peek(): LoopEvent | undefined {
    return this.queue[0];
  }

  /** Ends the request before the loop's next pass; its done event (finish "abort" unless it ended already) follows. */
  cancel(): void {
    if (!this.over) this.loop.cancel(this.id);
  }

  /** The token for the step a "logits" event paused. */
  resume(token: number): void {
    try {
      this.loop.resume(this.id, token);
    } catch (err) {
      throw toTypedError(err);
    }
  }

  /** @internal */
  push(event: LoopEvent): void {
    this.firstEventAt ??= performance.now();
    this.queue.push(event);
    if (event.kind === "done" || event.kind === "error") {
      this.over = true;
      this.resolveEnded();
    }
    this.wake?.();
    this.wake = undefined;
  }
}

export class EngineDecodeLoop {
  private native: NativeDecodeLoop | undefined;
  private readonly requests = new Map<number, LoopRequest>();
  private closed = false;

  /** @internal */
  constructor(
    private readonly model: NativeModel,
    private readonly modelPath: string,
  ) {}

  /**
   * Starts a generation on `context`: evaluates `tokens` at pos.., then samples with `sampler` (whose history must
   * already hold the prompt) until an end id, maxTokens, a full context or cancel().
   */
  submit(context: EngineContext, tokens: readonly number[], pos: number, sampler: EngineSampler, options: LoopRequestOptions): LoopRequest {
    const native = this.open();
    let id: number;
    try {
      id = native.submit(context.native, toInt32(tokens), pos, sampler.native, options);
    } catch (err) {
      throw toTypedError(err, this.modelPath);
    }
    const request = new LoopRequest(native, id);
    this.requests.set(id, request);
    context.track(request.ended);
    return request;
  }

  /** Forward passes the loop ran, and its calls into JavaScript (one per pass at most). */
  stats(): { passes: number; deliveries: number } {
    return this.native ? this.native.stats() : { passes: 0, deliveries: 0 };
  }

  /** Ends every request (each sees finish "abort") and stops the loop's thread; resolves once their ends arrived. */
  async close(): Promise<void> {
    this.closed = true;
    this.native?.close();
    await Promise.all([...this.requests.values()].map((r) => r.ended));
  }

  private open(): NativeDecodeLoop {
    if (this.closed) throw new DisposedError(`${this.modelPath}: the model was disposed`);
    this.native ??= new (loadBinding().DecodeLoop)(this.model, (events) => this.dispatch(events));
    return this.native;
  }

  private dispatch(events: NativeLoopEvent[]): void {
    for (const event of events) {
      const request = this.requests.get(event.id);
      if (!request) continue;
      if (event.kind === "done" || event.kind === "error") this.requests.delete(event.id);
      request.push(event.error ? { ...event, error: toTypedError(event.error, this.modelPath) } : event);
    }
  }
}
