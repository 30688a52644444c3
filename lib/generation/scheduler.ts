/**
 * Continuous batching: every decode request on a model goes through one scheduler, which runs all the requests
 * waiting at that moment as one forward pass (one matrix product per weight for every active sequence). A
 * sequence that asks while a pass is running joins the next one; one that stops asking simply drops out.
 *
 * Prefill is interleaved with decoding: a pass (at most the engine's pass size, Engine.limits.passTokens) holds every
 * queued request that fits whole (the decoding sequences' next tokens, short prompts) and a slice of at most one
 * longer prompt in the room left, so a long prompt never stalls the sequences already decoding; they get a token in
 * every pass while it is prefilled.
 *
 * A greedy sequence decodes with `speculate`: the engine then runs its argmax at the next position while
 * JavaScript is still sampling (NativeDecodeOptions.speculate), and its next request claims that step instead of
 * waiting for a pass. When another request arrives, the chains are stopped and the pass waits (briefly) for
 * their sequences to come back, so that everyone shares it rather than taking turns.
 */
import type { BatchEntry, Engine, EngineContext } from "../native/engine";
import type { NativeDecodeOptions, NativeDecodeResult } from "../native/binding";

/**
 * Room kept for the prompt being sliced once it is the oldest request: however many sequences decode, it moves on
 * (rows that do not fit then go first in the next pass).
 */
const MIN_SLICE_TOKENS = 32;
/** How long a pass waits for the sequences of stopped look-ahead chains, in passes (at least MIN_WAIT_MS). */
const CHAIN_WAIT_PASSES = 2;
const MIN_WAIT_MS = 5;

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
  /** Contexts whose last decode looked ahead and whose generation goes on: they come back within a step. */
  private lookingAhead = new Set<EngineContext>();
  private chainWait: { timer: NodeJS.Timeout; expired: boolean } | undefined;
  private lastPassMs = 0;
  /** Sequences in the last pass (for metrics and tests). */
  lastBatchSize = 0;
  /** Tokens per forward pass: the engine's own, for this model on its device. */
  private readonly passTokens: number;

  constructor(private readonly engine: Engine) {
    this.passTokens = engine.limits.passTokens;
  }

  /** Runs tokens at pos.. on context in the next forward pass that has room; resolves with its results. */
  decode(context: EngineContext, tokens: readonly number[] | Int32Array, pos: number, options: NativeDecodeOptions = {}): Promise<NativeDecodeResult> {
    const ids = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    if (options.speculate) this.lookingAhead.add(context);
    else this.lookingAhead.delete(context);
    const claimed = options.speculate ? context.claim(ids, pos, options) : undefined;
    if (claimed) return claimed;
    return new Promise((resolve, reject) => {
      this.queue.push({ context, tokens: ids, pos, options, resolve, reject });
      this.scheduleDispatch();
    });
  }

  /** A generation on `context` is over: no look-ahead runs on it once this resolves, and no pass waits for it. */
  async finish(context: EngineContext): Promise<void> {
    if (this.lookingAhead.delete(context)) this.scheduleDispatch();
    await context.settled();
  }

  /** Resolves once every request queued so far has run (for dispose: work already accepted completes). */
  drained(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Dispatches after the current turn of the event loop, so that every sequence woken by the previous pass has
   * sampled its next token and queued it.
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
    if (this.running || this.queue.length === 0 || this.awaitingChains()) return;
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
   * Whether the pass should wait for sequences of look-ahead chains that are not queued yet: their chains are
   * stopped, and they come back (a decode or finish() dispatches again) within a pass; a timer bounds the wait
   * so a slow consumer cannot hold the others up.
   */
  private awaitingChains(): boolean {
    const queued = new Set(this.queue.map((r) => r.context));
    const absent = [...this.lookingAhead].some((context) => !queued.has(context));
    if (!absent || this.chainWait?.expired) {
      if (this.chainWait) clearTimeout(this.chainWait.timer);
      this.chainWait = undefined;
      return false;
    }
    if (!this.chainWait) {
      this.engine.stopLookAhead();
      const wait = { expired: false, timer: setTimeout(() => {
        wait.expired = true;
        this.scheduleDispatch();
      }, Math.max(MIN_WAIT_MS, CHAIN_WAIT_PASSES * this.lastPassMs)) };
      this.chainWait = wait;
    }
    return true;
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
    this.lastBatchSize = pass.length;
    let results: NativeDecodeResult[];
    try {
      // A context may still be in a look-ahead chain (a step it did not claim): wait for that pass to end.
      await Promise.all(pass.map((p) => p.entry.context.settled()));
      const start = performance.now();
      results = await this.engine.decodeBatch(pass.map((p) => p.entry));
      this.lastPassMs = performance.now() - start;
    } catch (err) {
      if (pass.length === 1) return this.fail(pass[0].request, err);
      // Which sequence failed is not known: run each alone so only the faulty one sees the error.
      for (let i = 0; i < pass.length; i++) await this.run([pass[i]], [finishes[i]]);
      return;
    }
    for (let i = 0; i < pass.length; i++) if (finishes[i]) pass[i].request.resolve(results[i]);
  }

  private fail(request: Request, err: unknown): void {
    // A sliced request may still be queued for its remaining tokens. Its generation ends with the error, so no
    // pass waits for its look-ahead.
    this.queue = this.queue.filter((r) => r !== request);
    this.lookingAhead.delete(request.context);
    request.reject(err);
  }
}
