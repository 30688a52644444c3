/**
 * The HTTP application: routes, authentication, error mapping. Fastify parses and size-limits the bodies and
 * checks them against the schemas; everything that goes wrong ends in one error handler that answers in OpenAI's
 * shape.
 */
import bearerAuth from "@fastify/bearer-auth";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Socket } from "node:net";
import type { LlamaModel } from "../model";
import { completionHandler, type ServerContext } from "./completion-route";
import { ApiError, checkModelName, clientErrorResponse, SHUTTING_DOWN, toApiError } from "./errors";
import { ServerMetrics } from "./metrics";
import { CHAT_FORMAT, TEXT_FORMAT } from "./responses";
import { embeddingsHandler } from "./embeddings-route";
import { ResponseStore } from "./response-store";
import { responsesHandler } from "./responses-route";
import { chatCompletionSchema, completionSchema, embeddingsSchema, responsesSchema } from "./schemas";
import { SlotScheduler } from "./slot-scheduler";
import { planChatCompletion, planCompletion } from "./translate";
import type { ResolvedServerOptions } from "./index";

export interface App {
  fastify: FastifyInstance;
  context: ServerContext;
}

export function buildApp(model: LlamaModel, options: ResolvedServerOptions): App {
  const slots = new SlotScheduler(options.parallel, options.queueSize);
  const metrics = new ServerMetrics(slots);
  const limits = { maxN: options.maxN, maxTokensCap: options.maxTokensCap };
  const context: ServerContext = {
    model, modelAlias: options.modelAlias, strictModelName: options.strictModelName, slots, limits, metrics, inFlight: new Set(), closing: false,
  };
  const created = Math.floor(Date.now() / 1000);

  const app = Fastify({
    // Server errors (a 500 is a bug) are always logged; every request only when asked.
    logger: { level: options.logger ? "info" : "error" },
    bodyLimit: options.bodyLimit,
    // A type mismatch is the client's error to hear about, not something to coerce away; the error names the
    // value, which the validator keeps only when verbose.
    // allowUnionTypes: OpenAI's bodies take several types in one field (a schema, a function_call, a conversation).
    ajv: { customOptions: { coerceTypes: false, verbose: true, allowUnionTypes: true } },
    // Slow clients (slowloris) hold a connection only this long: headers, then the whole request, within their
    // timeouts (checked a few times per headers timeout), and an idle keep-alive connection until idleTimeoutMs.
    // Generating the response is not bounded: a long non-streamed answer sends nothing for a while.
    requestTimeout: options.requestTimeoutMs,
    keepAliveTimeout: options.idleTimeoutMs,
    http: {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(1, Math.min(1000, Math.floor(options.headersTimeoutMs / 4))),
    },
    // The framework's own answers (a bad URL; a connection that is not HTTP, sends headers too large or too slowly)
    // come in OpenAI's shape like every other error; so does the 503 while closing (the onRequest hook below).
    frameworkErrors: (err, _request, reply) => sendError(reply, toApiError(err)),
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      if (err.code === "ECONNRESET" || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(err.code));
      socket.destroy(err);
    },
    return503OnClosing: false,
  });
  // Past this many open connections, new ones are closed as they arrive.
  app.server.maxConnections = options.maxConnections;

  app.setErrorHandler((err, request, reply) => {
    const error = toApiError(err);
    if (error.status === 500) request.log.error({ err }, "request failed");
    return sendError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError(404, `No route for ${request.method} ${request.url}.`, { code: "not_found" })),
  );
  // Before everything else (the API key included): errors, 503s and 401s carry the CORS headers too, or a browser
  // app could not read them.
  if (options.cors.length > 0) app.addHook("onRequest", corsHook(options.cors));
  app.addHook("onRequest", async () => {
    // Requests that still arrive on open connections while close() waits for the generations in flight.
    if (context.closing) throw SHUTTING_DOWN;
  });
  app.addHook("onResponse", async (request, reply) => {
    metrics.recordRequest(request.routeOptions.url ?? "unmatched", reply.statusCode);
  });

  app.get("/health", async () => ({
    status: "ok",
    slots: { active: slots.activeSlots, total: slots.slots },
    queue: { depth: slots.queueDepth, limit: slots.queueLimit },
  }));
  const metricsRoute = (scope: FastifyInstance) =>
    scope.get("/metrics", async (_request, reply) => reply.header("content-type", metrics.contentType).send(await metrics.render()));
  if (options.metricsPublic) metricsRoute(app);

  // What the API key guards: /v1/*, and /metrics unless it was made public.
  app.register(async (guarded) => {
    if (options.apiKey !== undefined) {
      // The plugin's own hook would answer 401s itself, in its shape: route its errors to the error handler instead.
      await guarded.register(bearerAuth, { keys: [options.apiKey], addHook: false, verifyErrorLogLevel: "debug" });
      guarded.addHook("onRequest", guarded.verifyBearerAuth!);
    }
    if (!options.metricsPublic) metricsRoute(guarded);
    await guarded.register(async (v1) => v1Routes(v1, context, options.modelAlias, created), { prefix: "/v1" });
  });

  return { fastify: app, context };
}

function v1Routes(v1: FastifyInstance, context: ServerContext, modelAlias: string, created: number): void {
  const modelObject = { id: modelAlias, object: "model", created, owned_by: "llama-napi" };
  v1.get("/models", async () => ({ object: "list", data: [modelObject] }));
  v1.get<{ Params: { model: string } }>("/models/:model", async (request) => {
    checkModelName(context, request.params.model);
    return modelObject;
  });
  v1.post("/chat/completions", { schema: { body: chatCompletionSchema } }, completionHandler(context, CHAT_FORMAT, planChatCompletion));
  v1.post("/completions", { schema: { body: completionSchema } }, completionHandler(context, TEXT_FORMAT, planCompletion));
  v1.post("/embeddings", { schema: { body: embeddingsSchema } }, embeddingsHandler(context));
  v1.post("/responses", { schema: { body: responsesSchema } }, responsesHandler(context, new ResponseStore()));
}

/** How long a browser may cache a preflight's answer, in seconds. */
const CORS_MAX_AGE_SECONDS = 86_400;

/**
 * CORS for the allowed origins ("*": any): the allow-origin header on every response to an allowed origin, and the
 * answer to a preflight (OPTIONS with Access-Control-Request-Method) before authentication, as browsers send
 * preflights without the Authorization header. Requests from other origins get no CORS headers (the browser then
 * keeps the response from the page).
 */
function corsHook(origins: readonly string[]) {
  const any = origins[0] === "*";
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const origin = request.headers.origin;
    if (origin === undefined || !(any || origins.includes(origin.toLowerCase()))) return;
    reply.header("access-control-allow-origin", any ? "*" : origin);
    if (!any) reply.header("vary", "Origin");
    reply.header("access-control-expose-headers", "retry-after");
    if (request.method !== "OPTIONS" || request.headers["access-control-request-method"] === undefined) return;
    reply
      .code(204)
      .header("access-control-allow-methods", "GET, POST, OPTIONS")
      .header("access-control-allow-headers", request.headers["access-control-request-headers"] ?? "authorization, content-type")
      .header("access-control-max-age", String(CORS_MAX_AGE_SECONDS))
      .send();
    return reply;
  };
}

function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply.code(error.status).headers(error.fields.headers ?? {}).send(error.body);
}
