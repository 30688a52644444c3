/**
 * Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the HTTP status that goes with
 * them, and the mapping of everything that can go wrong in a request (framework, validation, library) onto them.
 */
import type { FastifyError } from "fastify";
import { STATUS_CODES } from "node:http";
import { ChatTemplateLimitError, ContextOverflowError, InvalidArgumentError, UnsupportedModelError } from "../errors";

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface ApiErrorFields {
  /** The request parameter at fault, as the client spelled it ("messages[0].role"). */
  param?: string;
  code?: string;
  /** Extra response headers (Retry-After). */
  headers?: Record<string, string>;
}

export class ApiError extends Error {
  override name = "ApiError";

  constructor(
    readonly status: number,
    message: string,
    readonly fields: ApiErrorFields = {},
  ) {
    super(message);
  }

  get body(): OpenAiErrorBody {
    return { error: { message: this.message, type: errorType(this.status), param: this.fields.param ?? null, code: this.fields.code ?? null } };
  }
}

function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** A 400 for a parameter the request must give (and, given the others, did not). */
export function missingParameter(param: string): ApiError {
  return new ApiError(400, `Missing required parameter: '${param}'.`, { param, code: "missing_required_parameter" });
}

/** A 400 for a parameter (or a value of it) this server does not implement: refused rather than ignored. */
export function unsupportedParameter(message: string, param: string): ApiError {
  return new ApiError(400, message, { param, code: "unsupported_parameter" });
}

/** A 400 about one request parameter (or the request as a whole when param is undefined). */
export function invalidParameter(message: string, param?: string): ApiError {
  return new ApiError(400, message, { param, code: "invalid_value" });
}

/**
 * A 404 for a model name other than the alias when the server is strict about names; otherwise any name is served
 * by the one model (as llama-server does: clients send their default model name, "gpt-3.5-turbo", when given none).
 */
export function checkModelName(server: { modelAlias: string; strictModelName: boolean }, model: string): void {
  if (server.strictModelName && model !== server.modelAlias) {
    throw new ApiError(404, `The model '${model}' does not exist.`, { param: "model", code: "model_not_found" });
  }
}

/** The answer to requests that arrive, and the abort reason of generations running, while the server closes. */
export const SHUTTING_DOWN = new ApiError(503, "The server is shutting down.", { code: "server_shutting_down" });

export function contextOverflowError(tokens: number, contextSize: number, param: string): ApiError {
  return new ApiError(
    400,
    `This model's maximum context length is ${contextSize} tokens. However, your ${param} resulted in ${tokens} tokens.`,
    { param, code: "context_length_exceeded" },
  );
}

/** Codes for the framework's own client errors, so clients can tell them apart without parsing messages. */
const FRAMEWORK_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "request_too_large",
  FST_ERR_CTP_INVALID_JSON_BODY: "invalid_json",
  FST_ERR_CTP_EMPTY_JSON_BODY: "invalid_json",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "invalid_content_length",
  FST_ERR_BAD_URL: "invalid_url",
  FST_ERR_MAX_PARAM_LENGTH: "invalid_url",
  FST_BEARER_AUTH_MISSING_AUTHORIZATION_HEADER: "invalid_api_key",
  FST_BEARER_AUTH_INVALID_AUTHORIZATION_HEADER: "invalid_api_key",
};

/**
 * Any error thrown while serving a request, as the ApiError the client gets: the library's and the framework's
 * client errors keep their meaning; anything else is a bug, a 500 that tells the client nothing more.
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ContextOverflowError) return contextOverflowError(err.tokens, err.contextSize, "prompt");
  if (err instanceof InvalidArgumentError || err instanceof UnsupportedModelError) return invalidParameter(err.message);
  // The model's template is at fault, not the request: a server error, but one worth telling the client about.
  if (err instanceof ChatTemplateLimitError) return new ApiError(500, err.message, { code: "chat_template_limit_exceeded" });
  const { validation, statusCode, code, message } = (err ?? {}) as Partial<FastifyError>;
  if (validation?.length) return validationError(validation);
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
    const clientCode = FRAMEWORK_CODES[code ?? ""] ?? (err instanceof SyntaxError ? "invalid_json" : undefined);
    return new ApiError(statusCode, clientCode === "invalid_json" ? `The request body is not valid JSON: ${message}` : String(message), { code: clientCode });
  }
  return new ApiError(500, "internal server error", { code: "internal_error" });
}

/**
 * The answer to a connection whose request never made it to a route (its bytes are not HTTP, its headers are too
 * large, or it was not received within the timeouts), written straight to the socket before it is closed.
 */
export function clientErrorResponse(code: string | undefined): string {
  const error =
    code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? new ApiError(408, "The request was not received in time.", { code: "request_timeout" })
      : code === "HPE_HEADER_OVERFLOW"
        ? new ApiError(431, "The request's headers are too large.", { code: "request_headers_too_large" })
        : new ApiError(400, "The request is not valid HTTP.", { code: "invalid_http" });
  const body = JSON.stringify(error.body);
  return (
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

type ValidationIssue = NonNullable<FastifyError["validation"]>[number] & { data?: unknown; parentSchema?: { description?: string } };

/**
 * A schema violation as a 400 naming the parameter. The validator stops at the first failing keyword, so the last
 * issue is the one that decided: for an `anyOf` it is the summary (the branches' own issues come before it), and
 * the schema's description says what was expected.
 */
function validationError(issues: ValidationIssue[]): ApiError {
  const issue = issues[issues.length - 1];
  const params = issue.params as Record<string, unknown>;
  const path = paramPath(issue.instancePath);
  if (issue.keyword === "required") {
    return missingParameter(path ? `${path}.${String(params.missingProperty)}` : String(params.missingProperty));
  }
  // An empty path is the body itself: an array, a string, ... instead of an object.
  if (path === "") return invalidParameter(`The request body must be a JSON object, got ${describe(issue.data)}.`);
  switch (issue.keyword) {
    case "type": {
      const expected = String(params.type).split(",").filter((t) => t !== "null").join(" or ");
      return invalidParameter(`Invalid type for '${path}': expected ${expected}, got ${describe(issue.data)}.`, path);
    }
    case "anyOf":
      return invalidParameter(`Invalid '${path}': expected ${issue.parentSchema?.description ?? "another value"}, got ${describe(issue.data)}.`, path);
    case "enum": {
      const allowed = (params.allowedValues as unknown[]).map((v) => `'${String(v)}'`).join(", ");
      return invalidParameter(`Invalid value for '${path}': expected one of ${allowed}, got ${describe(issue.data)}.`, path);
    }
    default:
      return invalidParameter(`Invalid '${path}': ${issue.message} (got ${describe(issue.data)}).`, path);
  }
}

/** "/messages/0/content" → "messages[0].content". */
function paramPath(instancePath: string): string {
  return instancePath
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), "");
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value);
  return text.length > 40 ? `${typeof value} ${text.slice(0, 40)}…` : `${typeof value} ${text}`;
}
