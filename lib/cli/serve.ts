/** `llama-napi serve`: the OpenAI-compatible HTTP server, until SIGINT or SIGTERM. */
import { basename } from "node:path";
import { InvalidArgumentError, LlamaNapiError } from "../errors";
import { createServer, type LlamaServer, resolveServerOptions, type ServerOptions } from "../server";
import { DEFAULT_MODEL_PATH } from "../default-model";
import type { LoadModelOptions } from "../model";
import {
  type CommandSpec, CTX_SIZE_OPTION, DEVICE_OPTION, type ParsedOptions, parseCommand, SAVE_SERIALIZED_OPTION, THREADS_OPTION, TOKENIZER_OPTION, UsageError,
  KV_TOKENS_OPTION, KV_TYPE_OPTION, CUSTOM_OPS_OPTIONS, customOpsOptions,
} from "./args";
import type { KvCacheType } from "../native/binding";
import { loadModelWithProgress, MODEL_OR_DEFAULT_OPTION, OFFLINE_OPTION, saveSerializedIfAsked } from "./model-download";

export const serveCommand: CommandSpec = {
  name: "serve",
  summary: "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings, /v1/models).",
  usage: "llama-napi serve [--model PATH] [--host 127.0.0.1] [--port 8080] [--parallel N] [options]",
  options: {
    model: MODEL_OR_DEFAULT_OPTION,
    offline: OFFLINE_OPTION,
    tokenizer: TOKENIZER_OPTION,
    threads: THREADS_OPTION,
    "ctx-size": { ...CTX_SIZE_OPTION, description: "Context size of each slot (default: the model's, at most 4096)" },
    "kv-type": KV_TYPE_OPTION,
    "kv-tokens": KV_TOKENS_OPTION,
    device: DEVICE_OPTION,
    "save-to-serialized-model-path": SAVE_SERIALIZED_OPTION,
    ...CUSTOM_OPS_OPTIONS,
    host: { type: "string", placeholder: "ADDR", description: "Address to listen on (default 127.0.0.1: this machine only)" },
    port: { type: "string", number: "int", placeholder: "N", description: "Port (default 8080; 0 picks a free one)" },
    parallel: { type: "string", number: "int", placeholder: "N", description: "Generations in flight at once, batched together (default 4)" },
    "queue-size": { type: "string", number: "int", placeholder: "N", description: "Generations that may wait for a slot; more get HTTP 429 (default 64)" },
    "api-key": { type: "string", placeholder: "KEY", description: "Require 'Authorization: Bearer KEY' on /v1/*" },
    "model-alias": { type: "string", placeholder: "NAME", description: "Model id clients use (default: the model's file or directory name)" },
    log: { type: "boolean", description: "Log every request (JSON lines on stdout)" },
    "metrics-public": { type: "boolean", description: "Serve /metrics without the API key (with --api-key it needs the key)" },
    "headers-timeout": { type: "string", number: "float", placeholder: "S", description: "Seconds a client has to send a request's headers (default 10)" },
    "request-timeout": { type: "string", number: "float", placeholder: "S", description: "Seconds a client has to send a whole request, body included (default 30)" },
    "idle-timeout": { type: "string", number: "float", placeholder: "S", description: "Seconds an idle keep-alive connection stays open (default 5)" },
    "max-connections": { type: "string", number: "int", placeholder: "N", description: "Open connections at most; more are closed at once (default 256)" },
    "max-n": { type: "string", number: "int", placeholder: "N", description: "Choices a request may ask for ('n'); more get HTTP 400 (default 8)" },
    cors: { type: "string", placeholder: "ORIGINS", description: "Let browser apps of these origins call the server: '*' or a comma-separated list (default: none)" },
    "strict-model-name": { type: "boolean", description: "Answer only requests naming the model alias (default: any model name is served)" },
    "max-tokens-cap": { type: "string", number: "int", placeholder: "N", description: "Tokens a choice may generate; a larger max_tokens gets HTTP 400, none given means this many (default: the context)" },
  },
};

/** A --*-timeout flag in seconds as the server's milliseconds (undefined: the server's default). */
function timeoutMs(o: ParsedOptions, flag: string): number | undefined {
  const seconds = o[flag] as number | undefined;
  if (seconds === undefined) return undefined;
  if (!(seconds > 0)) throw new UsageError(`--${flag} must be a positive number of seconds (got ${seconds})`);
  return Math.max(1, Math.round(seconds * 1000));
}

export async function serve(argv: string[]): Promise<number> {
  const o = parseCommand(serveCommand, argv);
  const modelSpec = (o.model as string | undefined) ?? DEFAULT_MODEL_PATH;
  const host = (o.host as string | undefined) ?? "127.0.0.1";
  const port = (o.port as number | undefined) ?? 8080;
  if (port < 0 || port > 65535) throw new UsageError(`--port must be in [0, 65535] (got ${port})`);

  const modelAlias = (o["model-alias"] as string | undefined) ?? basename(modelSpec);
  let serverOptions: ServerOptions;
  try {
    // Checked before the model loads: every option resolveServerOptions refuses came from a flag.
    serverOptions = resolveServerOptions({
      modelAlias,
      parallel: o.parallel as number | undefined,
      queueSize: o["queue-size"] as number | undefined,
      apiKey: o["api-key"] as string | undefined,
      logger: o.log === true,
      metricsPublic: o["metrics-public"] === true,
      headersTimeoutMs: timeoutMs(o, "headers-timeout"),
      requestTimeoutMs: timeoutMs(o, "request-timeout"),
      idleTimeoutMs: timeoutMs(o, "idle-timeout"),
      maxConnections: o["max-connections"] as number | undefined,
      maxN: o["max-n"] as number | undefined,
      maxTokensCap: o["max-tokens-cap"] as number | undefined,
      cors: (o.cors as string | undefined)?.split(",").map((origin) => origin.trim()),
      strictModelName: o["strict-model-name"] === true,
    });
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new UsageError(err.message);
    throw err;
  }

  const model = await loadModelWithProgress(modelSpec, {
    offline: o.offline as boolean | undefined,
    threads: o.threads as number | undefined,
    contextSize: o["ctx-size"] as number | undefined,
    kvCacheType: o["kv-type"] as KvCacheType | undefined,
    kvCacheTokens: o["kv-tokens"] as number | undefined,
    device: o.device as LoadModelOptions["device"],
    tokenizer: o.tokenizer as string | undefined,
    ...customOpsOptions(o),
  });
  let server: LlamaServer | undefined;
  try {
    await saveSerializedIfAsked(model, o["save-to-serialized-model-path"] as string | undefined);
    server = createServer(model, serverOptions);
    const address = await server.listen({ host, port }).catch((err: Error) => {
      throw new LlamaNapiError(`cannot listen on ${host}:${port}: ${err.message}`);
    });
    process.stdout.write(`llama-napi serve: model "${modelAlias}" at ${address.url}/v1 (Ctrl-C stops)\n`);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      // Both handlers go at the first signal, so a second Ctrl-C during shutdown kills the process as usual.
      const stop = (received: NodeJS.Signals) => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve(received);
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    process.stderr.write(`llama-napi serve: ${signal}, shutting down\n`);
  } finally {
    await server?.close();
    await model.dispose();
  }
  return 0;
}
