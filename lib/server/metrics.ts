/**
 * The server's Prometheus metrics: requests by route and status, tokens in and out, queue depth and active slots
 * (read from the scheduler at scrape time, so they are exact), prefill and decode speed per generation, and the
 * process's own figures (resident memory, event-loop lag). One registry per server: several servers in one
 * process do not mix their counts.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { GenerationStats } from "../generation/types";
import type { SlotScheduler } from "./slot-scheduler";

/** Tokens per second, from a slow CPU decode to a fast batched prefill. */
const SPEED_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"route" | "status">;
  private readonly promptTokens: Counter;
  private readonly generatedTokens: Counter;
  private readonly prefillSpeed: Histogram;
  private readonly decodeSpeed: Histogram;

  constructor(slots: SlotScheduler) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: "llama_napi_requests_total",
      help: "HTTP requests answered, by route and status code",
      labelNames: ["route", "status"],
      registers,
    });
    this.promptTokens = new Counter({ name: "llama_napi_prompt_tokens_total", help: "Prompt tokens of finished generations", registers });
    this.generatedTokens = new Counter({ name: "llama_napi_generated_tokens_total", help: "Tokens generated", registers });
    new Gauge({
      name: "llama_napi_queue_depth",
      help: "Generations waiting for a slot",
      registers,
      collect() {
        this.set(slots.queueDepth);
      },
    });
    new Gauge({
      name: "llama_napi_active_slots",
      help: "Generations in flight",
      registers,
      collect() {
        this.set(slots.activeSlots);
      },
    });
    new Gauge({ name: "llama_napi_slots", help: "Generations that may be in flight at once (--parallel)", registers }).set(slots.slots);
    this.prefillSpeed = new Histogram({
      name: "llama_napi_prefill_tokens_per_second",
      help: "Prompt tokens per second of each generation's prefill",
      buckets: SPEED_BUCKETS,
      registers,
    });
    this.decodeSpeed = new Histogram({
      name: "llama_napi_decode_tokens_per_second",
      help: "Generated tokens per second of each generation (after its first token)",
      buckets: SPEED_BUCKETS,
      registers,
    });
  }

  recordRequest(route: string, status: number): void {
    this.requests.inc({ route, status: String(status) });
  }

  recordGeneration(stats: GenerationStats): void {
    this.promptTokens.inc(stats.promptTokens);
    this.generatedTokens.inc(stats.genTokens);
    // A prefill that evaluated nothing (all cached) or a generation of one token has no speed to report.
    if (stats.prefillTokens > 0 && Number.isFinite(stats.prefillTps)) this.prefillSpeed.observe(stats.prefillTps);
    if (stats.genTokens > 1 && stats.decodeTps > 0) this.decodeSpeed.observe(stats.decodeTps);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
