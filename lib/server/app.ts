/**
 * The HTTP application: routes, authentication, error mapping. Fastify parses and size-limits the bodies and
 * checks them against the schemas; everything that goes wrong ends in one error handler that answers in OpenAI's
 * shape.
 */
import bearerAuth from "@fastify/bearer-auth";
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import type { LlamaModel } from "../model";
import { completionHandler, type ServerContext } from "./completion-route";
import { ApiError, modelNotFound, toApiError } from "./errors";
import { ServerMetrics } from "./metrics";
import { CHAT_FORMAT, TEXT_FORMAT } from "./responses";
import { chatCompletionSchema, completionSchema } from "./schemas";
import { SlotScheduler } from "./slot-scheduler";
import { planChatCompletion, planCompletion } from "./translate";

export interface AppOptions {
  modelAlias: string;
  parallel: number;
  queueSize: number;
  apiKey: string | undefined;
  bodyLimit: number;
  logger: boolean;
}

export interface App {
  fastify: FastifyInstance;
  context: ServerContext;
}

export function buildApp(model: LlamaModel, options: AppOptions): App {
  const slots = new SlotScheduler(options.parallel, options.queueSize);
  const metrics = new ServerMetrics(slots);
  const context: ServerContext = { model, modelAlias: options.modelAlias, slots, metrics, inFlight: new Set() };
  const created = Math.floor(Date.now() / 1000);

  const app = Fastify({
    // Server errors (a 500 is a bug) are always logged; every request only when asked.
    logger: { level: options.logger ? "info" : "error" },
    bodyLimit: options.bodyLimit,
    // A type mismatch is the client's error to hear about, not something to coerce away; the error names the
    // value, which the validator keeps only when verbose.
    ajv: { customOptions: { coerceTypes: false, verbose: true } },
  });

  app.setErrorHandler((err, request, reply) => {
    const error = toApiError(err);
    if (error.status === 500) request.log.error({ err }, "request failed");
    return sendError(reply, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError(404, `No route for ${request.method} ${request.url}.`, { code: "not_found" })),
  );
  app.addHook("onResponse", async (request, reply) => {
    metrics.recordRequest(request.routeOptions.url ?? "unmatched", reply.statusCode);
  });

  app.get("/health", async () => ({
    status: "ok",
    slots: { active: slots.activeSlots, total: slots.slots },
    queue: { depth: slots.queueDepth, limit: slots.queueLimit },
  }));
  app.get("/metrics", async (_request, reply) => reply.header("content-type", metrics.contentType).send(await metrics.render()));

  app.register(async (v1) => {
    if (options.apiKey !== undefined) {
      // The plugin's own hook would answer 401s itself, in its shape: route its errors to the error handler instead.
      await v1.register(bearerAuth, { keys: [options.apiKey], addHook: false, verifyErrorLogLevel: "debug" });
      v1.addHook("onRequest", v1.verifyBearerAuth!);
    }
    const modelObject = { id: options.modelAlias, object: "model", created, owned_by: "llama-napi" };
    v1.get("/models", async () => ({ object: "list", data: [modelObject] }));
    v1.get<{ Params: { model: string } }>("/models/:model", async (request) => {
      if (request.params.model !== options.modelAlias) throw modelNotFound(request.params.model);
      return modelObject;
    });
    v1.post("/chat/completions", { schema: { body: chatCompletionSchema } }, completionHandler(context, CHAT_FORMAT, planChatCompletion));
    v1.post("/completions", { schema: { body: completionSchema } }, completionHandler(context, TEXT_FORMAT, planCompletion));
  }, { prefix: "/v1" });

  return { fastify: app, context };
}

function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply.code(error.status).headers(error.fields.headers ?? {}).send(error.body);
}
