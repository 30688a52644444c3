/**
 * Batching of single decodes (model.evaluate): the requests waiting at that moment run as one forward pass (one
 * matrix product per weight for every sequence); one that asks while a pass is running joins the next one.
 * Generations do not come here: they run in the engine's decode loop (lib/native/decode-loop.ts), which composes
 * its passes by the same rule natively.
 *
 * Prefill is interleaved with decoding: a pass (at most the engine's pass size, Engine.limits.passTokens) holds every
 * queued request that fits whole (the decoding sequences' next tokens, short prompts) and a slice of at most one
 * longer prompt in the room left, so a long prompt never stalls the other requests.
 */
import type { BatchEntry, Engine, EngineContext } from "../native/engine";
import type { NativeDecodeOptions, NativeDecodeResult } from "../native/binding";

/**
 * Room kept for the prompt being sliced once it is the oldest request: however many sequences decode, it moves on
 * (rows that do not fit then go first in the next pass).
 */
const MIN_SLICE_TOKENS = 32;

interface Request {
  context: EngineContext;
  tokens: Int32Array;
  pos: number;
  options: NativeDecodeOptions;
  resolve: (result: NativeDecodeResult) => void;
  reject: (err: unknown) => void;
}

export class DecodeScheduler {
  private queue: Request[] = [];
  private running = false;
  private dispatchPending = false;
  private drainWaiters: (() => void)[] = [];
  /** Tokens per forward pass: the engine's own, for this model on its device. */
  private readonly passTokens: number;

  constructor(private readonly engine: Engine) {
    this.passTokens = engine.limits.passTokens;
  }

  /** Runs tokens at pos.. on context in the next forward pass that has room; resolves with its results. */
  decode(context: EngineContext, tokens: readonly number[] | Int32Array, pos: number, options: NativeDecodeOptions = {}): Promise<NativeDecodeResult> {
    const ids = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    return new Promise((resolve, reject) => {
      this.queue.push({ context, tokens: ids, pos, options, resolve, reject });
      this.scheduleDispatch();
    });
  }

  /** Resolves once every request queued so far has run (for dispose: work already accepted completes). */
  drained(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Dispatches after the current turn of the event loop, so that the requests made in it share the pass.
   */
  private scheduleDispatch(): void {
    if (!this.running && this.queue.length === 0) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
    if (this.running || this.dispatchPending || this.queue.length === 0) return;
    this.dispatchPending = true;
    setImmediate(() => {
      this.dispatchPending = false;
      void this.dispatch();
    });
  }

  private async dispatch(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const { pass, finishes } = this.takePass();
    try {
      await this.run(pass, finishes);
    } finally {
      this.running = false;
      this.scheduleDispatch();
    }
  }

  /**
   * The next pass: the queued requests that fit whole, in arrival order, then one slice of the oldest request left
   * over in the room that remains (logits are only needed for a prompt's last token, so a leading slice needs
   * none); the sliced request keeps its place in the queue, and when it is the oldest the others leave it at least
   * MIN_SLICE_TOKENS. A request that needs every position's logits cannot be sliced: too long for the room, it
   * runs in a pass of its own when it is the oldest. `finishes[i]`: whether entry i completes its request.
   */
  private takePass(): { pass: { entry: BatchEntry; request: Request }[]; finishes: boolean[] } {
    const pass: { entry: BatchEntry; request: Request }[] = [];
    const finishes: boolean[] = [];
    const waiting: Request[] = [];
    let sliced: Request | undefined;
    let reserved = 0;
    let room = this.passTokens;
    for (const [index, request] of this.queue.entries()) {
      const n = request.tokens.length;
      const splittable = request.options.logits !== "all";
      // The oldest request, when it cannot be sliced, goes in whatever its length (alone if longer than a pass).
      if (n <= room - reserved || (index === 0 && !splittable)) {
        pass.push({ entry: { context: request.context, tokens: request.tokens, pos: request.pos, ...request.options }, request });
        finishes.push(true);
        room -= n;
        if (room <= 0) {
          waiting.push(...this.queue.slice(index + 1));
          break;
        }
      } else {
        waiting.push(request);
        if (!sliced && splittable) {
          sliced = request;
          if (index === 0) reserved = MIN_SLICE_TOKENS;
        }
      }
    }
    this.queue = waiting;
    if (sliced && room > 0) {
      pass.push({ entry: { context: sliced.context, tokens: sliced.tokens.subarray(0, room), pos: sliced.pos, logits: "none" }, request: sliced });
      finishes.push(false);
      sliced.tokens = sliced.tokens.subarray(room);
      sliced.pos += room;
    }
    return { pass, finishes };
  }

  private async run(pass: { entry: BatchEntry; request: Request }[], finishes: boolean[]): Promise<void> {
    let results: NativeDecodeResult[];
    try {
      results = await this.engine.decodeBatch(pass.map((p) => p.entry));
    } catch (err) {
      if (pass.length === 1) return this.fail(pass[0].request, err);
      // Which sequence failed is not known: run each alone so only the faulty one sees the error.
      for (let i = 0; i < pass.length; i++) await this.run([pass[i]], [finishes[i]]);
      return;
    }
    for (let i = 0; i < pass.length; i++) if (finishes[i]) pass[i].request.resolve(results[i]);
  }

  private fail(request: Request, err: unknown): void {
    // A sliced request may still be queued for its remaining tokens.
    this.queue = this.queue.filter((r) => r !== request);
    request.reject(err);
  }
}
