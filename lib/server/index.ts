/**
 * An OpenAI-compatible HTTP server over a loaded model: `createServer(model, options).listen({ port, host })`.
 * Layers: schemas.ts + translate.ts (OpenAI bodies → prompts and GenerateOptions, tools), slot-scheduler.ts (slots
 * and the bounded queue), completion-route.ts (running a request, JSON or SSE via sse.ts, shapes in responses.ts),
 * responses-route.ts (the Responses API, with response-store.ts for previous_response_id), embeddings-route.ts,
 * metrics.ts (Prometheus), errors.ts (OpenAI's error shape), app.ts (routes, auth and CORS).
 */
import type { AddressInfo } from "node:net";
import { InvalidArgumentError } from "../errors";
import type { LlamaModel } from "../model";
import { checkOptionNames, type OptionNames } from "../option-names";
import { SHUTTING_DOWN } from "./errors";

export interface ServerOptions {
  /** Generations in flight at once; they share each forward pass (continuous batching). Default 4. */
  parallel?: number;
  /** Generations that may wait for a slot; past that, requests get a 429. Default 64. */
  queueSize?: number;
  /** When set, /v1/* and /metrics require `Authorization: Bearer <apiKey>` (/health stays open). */
  apiKey?: string;
  /** Serve /metrics without the API key. Default false. */
  metricsPublic?: boolean;
  /** The model id clients name in requests and /v1/models lists. Default "default" (the CLI: the model's file name). */
  modelAlias?: string;
  /** Largest request body in bytes; larger ones get a 413. Default 1 MiB. */
  bodyLimit?: number;
  /** Log every request as JSON lines on stdout (fastify's logger). Default false: only server errors are logged. */
  logger?: boolean;
  /** Time a client has to send a request's headers, in ms, from connecting or from its previous request; then a 408 and the connection closes. Default 10 s. */
  headersTimeoutMs?: number;
  /** Time a client has to send a whole request, headers and body, in ms (at least headersTimeoutMs). Default 30 s. The response's generation is not bounded. */
  requestTimeoutMs?: number;
  /** Time a keep-alive connection may stay idle between requests, in ms. Default 5 s. */
  idleTimeoutMs?: number;
  /** Open connections at most; past that, new connections are closed as they arrive. Default 256. */
  maxConnections?: number;
  /** Choices a request may ask for per prompt (`n`); more is a 400 naming `n`. Default 8. */
  maxN?: number;
  /**
   * Tokens one choice may generate (`max_tokens`, `max_completion_tokens`); more is a 400 naming the parameter,
   * and a request that gives none gets this many at most. Default: no cap but the context.
   */
  maxTokensCap?: number;
  /**
   * Browser origins allowed to call the server (CORS): "*" for any, or a list such as ["https://app.example"].
   * Preflights are answered without the API key, as browsers send them without credentials. Default (or []): none,
   * no CORS headers.
   */
  cors?: string | readonly string[];
  /** Answer only requests that name modelAlias (others get a 404). Default false: any model name is served by this model. */
  strictModelName?: boolean;
}

export interface ListenOptions {
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
}

export interface ServerAddress {
  host: string;
  port: number;
  /** The base URL, e.g. http://127.0.0.1:8080 (clients add /v1). */
  url: string;
}

export interface LlamaServer {
  listen(options?: ListenOptions): Promise<ServerAddress>;
  /** Aborts the generations in flight (their clients get a 503 or an error event), then stops listening. Leaves the model loaded. */
  close(): Promise<void>;
}

/**
 * ServerOptions with every default filled in (apiKey and maxTokensCap stay optional: none means no key, no cap);
 * cors as the list of allowed origins (empty: CORS off; "*" any).
 */
export type ResolvedServerOptions = Required<Omit<ServerOptions, "apiKey" | "maxTokensCap" | "cors">> &
  Pick<ServerOptions, "apiKey" | "maxTokensCap"> & { cors: readonly string[] };

const SERVER_OPTION_NAMES = {
  parallel: true, queueSize: true, apiKey: true, metricsPublic: true, modelAlias: true, bodyLimit: true, logger: true,
  headersTimeoutMs: true, requestTimeoutMs: true, idleTimeoutMs: true, maxConnections: true, maxN: true, maxTokensCap: true,
  cors: true, strictModelName: true,
} as const satisfies OptionNames<ServerOptions>;

/**
 * The options with their defaults, checked (an InvalidArgumentError names the option): on their own so that a
 * caller (the CLI) can check its flags before loading a model.
 */
export function resolveServerOptions(options: ServerOptions = {}): ResolvedServerOptions {
  checkOptionNames(options, SERVER_OPTION_NAMES, "createServer");
  const headersTimeoutMs = checkInteger("headersTimeoutMs", options.headersTimeoutMs ?? 10_000, 1);
  if (options.metricsPublic !== undefined && typeof options.metricsPublic !== "boolean") {
    throw new InvalidArgumentError(`metricsPublic must be a boolean (got ${String(options.metricsPublic)})`);
  }
  for (const name of ["logger", "strictModelName"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "boolean") {
      throw new InvalidArgumentError(`${name} must be a boolean (got ${String(options[name])})`, { option: name });
    }
  }
  return {
    parallel: checkInteger("parallel", options.parallel ?? 4, 1),
    queueSize: checkInteger("queueSize", options.queueSize ?? 64, 0),
    bodyLimit: checkInteger("bodyLimit", options.bodyLimit ?? 1024 * 1024, 1),
    modelAlias: checkString("modelAlias", options.modelAlias ?? "default"),
    apiKey: options.apiKey === undefined ? undefined : checkString("apiKey", options.apiKey),
    headersTimeoutMs,
    requestTimeoutMs: checkInteger("requestTimeoutMs", options.requestTimeoutMs ?? Math.max(30_000, headersTimeoutMs), headersTimeoutMs),
    idleTimeoutMs: checkInteger("idleTimeoutMs", options.idleTimeoutMs ?? 5_000, 1),
    maxConnections: checkInteger("maxConnections", options.maxConnections ?? 256, 1),
    metricsPublic: options.metricsPublic ?? false,
    logger: options.logger ?? false,
    maxN: checkInteger("maxN", options.maxN ?? 8, 1),
    maxTokensCap: options.maxTokensCap === undefined ? undefined : checkInteger("maxTokensCap", options.maxTokensCap, 1),
    cors: corsOrigins(options.cors),
    strictModelName: options.strictModelName ?? false,
  };
}

export function createServer(model: LlamaModel, options: ServerOptions = {}): LlamaServer {
  const resolved = resolveServerOptions(options);
  // Fastify and prom-client take a few hundred milliseconds to load: only programs that serve pay for them, not
  // every `import "llama-napi"`.
  const { buildApp } = require("./app") as typeof import("./app");
  const { fastify, context } = buildApp(model, resolved);
  return {
    async listen({ port = 8080, host = "127.0.0.1" } = {}) {
      await fastify.listen({ port, host });
      const address = fastify.server.address() as AddressInfo;
      const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
      return { host: address.address, port: address.port, url: `http://${urlHost}:${address.port}` };
    },
    async close() {
      context.closing = true; // requests that still arrive on open connections get a 503
      const closed = fastify.close(); // stops accepting
      const requests = [...context.inFlight];
      for (const request of requests) request.controller.abort(SHUTTING_DOWN);
      await Promise.all(requests.map((request) => request.finished));
      // Their keep-alive connections are idle now; left open, closing would wait for the clients to drop them.
      fastify.server.closeIdleConnections();
      await closed;
    },
  };
}

function checkInteger(name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min} (got ${String(value)})`);
  }
  return value;
}

/** The allowed origins: "*", or origins as browsers send them (scheme://host[:port], no path). */
function corsOrigins(cors: ServerOptions["cors"]): readonly string[] {
  if (cors === undefined) return [];
  const origins = typeof cors === "string" ? [cors] : cors;
  if (!Array.isArray(origins)) {
    throw new InvalidArgumentError(`cors must be "*", an origin or an array of origins (got ${String(cors)})`, { option: "cors" });
  }
  for (const origin of origins) {
    if (origin === "*") continue;
    if (typeof origin !== "string" || !/^[a-z][a-z0-9+.-]*:\/\/[^/\s]+$/i.test(origin)) {
      throw new InvalidArgumentError(`cors: ${JSON.stringify(origin)} is not an origin such as https://app.example or http://localhost:3000`, { option: "cors" });
    }
  }
  return origins.includes("*") ? ["*"] : origins.map((o) => o.toLowerCase());
}

function checkString(name: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) throw new InvalidArgumentError(`${name} must be a non-empty string (got ${String(value)})`);
  return value;
}
