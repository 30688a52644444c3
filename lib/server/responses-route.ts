/**
 * POST /v1/responses, OpenAI's Responses API: input as a string or items (messages, function calls and their
 * outputs, references to stored items), instructions, tools, previous_response_id (ResponseStore), and the response
 * as one object or as its typed stream of events (response.created ... response.completed, each with a
 * sequence_number). The conversation renders and generates as a chat completion does (translate.ts,
 * completion-route.ts).
 */
import { randomBytes } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ChatMessage, ToolCall } from "../chat/types";
import type { Completion, GenerateOptions } from "../generation/types";
import { admit, generateInSlot, type ServerContext, trackRequest } from "./completion-route";
import { ApiError, checkModelName, invalidParameter, missingParameter, toApiError, unsupportedParameter } from "./errors";
import type { ResponseStore } from "./response-store";
import type { ResponseInputItem, ResponsesBody } from "./schemas";
import { SseStream } from "./sse";
import {
  checkSampling, generateOptions, jsonSchemaConstraint, maxTokensOf, refuseUnsupported, renderConversation, type ToolCalling, toolCalling,
} from "./translate";
import { HeldReply, toolCallsOf } from "./responses";

/** Parameters of the Responses API this server cannot honour: refused when used. */
const RESPONSES_UNSUPPORTED: Record<string, (value: unknown) => boolean> = {
  background: (v) => v === true,
  conversation: (v) => v != null,
  prompt: (v) => v != null,
  top_logprobs: (v) => typeof v === "number" && v > 0,
};

/** A request made ready to run: its conversation, prompt, options, and what the response echoes. */
interface ResponsePlan {
  body: ResponsesBody;
  /** The conversation without the instructions: what a later previous_response_id carries on. */
  conversation: ChatMessage[];
  prompt: number[];
  options: GenerateOptions;
  tools: ToolCalling | undefined;
}

/** An output item with the conversation message it stands for. */
interface OutputItem {
  item: Record<string, unknown>;
  message: ChatMessage;
}

export function responsesHandler(ctx: ServerContext, store: ResponseStore) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const body = request.body as ResponsesBody;
    checkModelName(ctx, body.model);
    const plan = planResponse(body, ctx, store);
    admit(ctx, 1);
    const abort = trackRequest(ctx, reply);
    const run = new ResponseRun(ctx, store, plan, abort.signal);
    try {
      return body.stream ? await run.stream(reply) : await run.respond();
    } catch (err) {
      abort.abort(err);
      throw err;
    }
  };
}

function planResponse(body: ResponsesBody, ctx: ServerContext, store: ResponseStore): ResponsePlan {
  refuseUnsupported(body, RESPONSES_UNSUPPORTED);
  let history: ChatMessage[] = [];
  if (body.previous_response_id != null) {
    const stored = store.conversation(body.previous_response_id);
    if (!stored) {
      throw new ApiError(400, `Previous response with id '${body.previous_response_id}' not found.`, {
        param: "previous_response_id",
        code: "previous_response_not_found",
      });
    }
    history = stored;
  }
  const conversation = [...history, ...inputMessages(body.input, store)];
  const functions = (body.tools ?? []).map((tool, i) => {
    if (tool.type !== "function" || typeof tool.name !== "string") {
      throw unsupportedParameter(`Tools of type '${tool.type}' are not supported by this server: only function tools.`, `tools[${i}].type`);
    }
    return { name: tool.name, description: tool.description, parameters: tool.parameters };
  });
  const tools = toolCalling(functions, body.tool_choice, body.parallel_tool_calls, "tools");
  const system: ChatMessage[] = body.instructions != null ? [{ role: "system", content: body.instructions }] : [];
  const prompt = renderConversation(ctx.model, [...system, ...conversation], tools.calling?.definitions, "input");
  const options = { ...generateOptions(body, maxTokensOf(body, ["max_output_tokens"], ctx.limits.maxTokensCap)), ...tools.options, ...formatOptions(body) };
  checkSampling(options, ctx.model);
  return { body, conversation, prompt, options, tools: tools.calling };
}

/** text.format: plain text, or output held to a JSON Schema (json_object: any object). */
function formatOptions(body: ResponsesBody): Partial<GenerateOptions> {
  const format = body.text?.format;
  if (format == null || format.type === "text") return {};
  if (format.type === "json_object") return jsonSchemaConstraint({ type: "object" }, "text.format");
  if (format.schema == null) throw missingParameter("text.format.schema");
  return jsonSchemaConstraint(format.schema, "text.format");
}

/** The input items as chat messages; errors name the item (input[i]...). */
function inputMessages(input: ResponsesBody["input"], store: ResponseStore): ChatMessage[] {
  if (typeof input === "string") return [{ role: "user", content: input }];
  const messages: ChatMessage[] = [];
  const addCall = (call: ToolCall) => {
    // Calls that follow an assistant message (or each other) belong to it.
    const last = messages.at(-1);
    if (last?.role === "assistant") last.toolCalls = [...(last.toolCalls ?? []), call];
    else messages.push({ role: "assistant", content: "", toolCalls: [call] });
  };
  input.forEach((item: ResponseInputItem, i) => {
    const param = `input[${i}]`;
    const type = item.type ?? "message";
    if (type === "message") {
      const roles: Record<string, ChatMessage["role"]> = { user: "user", system: "system", developer: "system", assistant: "assistant" };
      const role = typeof item.role === "string" ? roles[item.role] : undefined;
      if (!role) throw invalidParameter(`Invalid '${param}.role': expected one of 'user', 'system', 'developer', 'assistant'.`, `${param}.role`);
      messages.push({ role, content: textOf(item.content, `${param}.content`) });
    } else if (type === "function_call") {
      for (const field of ["call_id", "name", "arguments"] as const) {
        if (typeof item[field] !== "string") throw invalidParameter(`Invalid '${param}.${field}': expected a string.`, `${param}.${field}`);
      }
      addCall({ id: item.call_id as string, name: item.name as string, arguments: item.arguments as string });
    } else if (type === "function_call_output") {
      if (typeof item.call_id !== "string") throw invalidParameter(`Invalid '${param}.call_id': expected a string.`, `${param}.call_id`);
      messages.push({ role: "tool", content: textOf(item.output, `${param}.output`), toolCallId: item.call_id });
    } else if (type === "item_reference") {
      const message = typeof item.id === "string" ? store.item(item.id) : undefined;
      if (!message) throw invalidParameter(`Invalid '${param}.id': no stored item has the id '${String(item.id)}'.`, `${param}.id`);
      if (message.toolCalls) message.toolCalls.forEach(addCall);
      else messages.push({ ...message });
    } else {
      throw unsupportedParameter(`Input items of type '${type}' are not supported by this server.`, `${param}.type`);
    }
  });
  return messages;
}

/** A message's content or a tool's output: a string, or text parts (input_text, output_text). */
function textOf(content: unknown, param: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw invalidParameter(`Invalid '${param}': expected a string or an array of text parts.`, param);
  return content
    .map((part: { type?: unknown; text?: unknown }, j) => {
      if ((part?.type === "input_text" || part?.type === "output_text" || part?.type === "text") && typeof part.text === "string") return part.text;
      throw unsupportedParameter(`Content parts of type '${String(part?.type)}' are not supported by this server: only text.`, `${param}[${j}]`);
    })
    .join("");
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString("hex")}`;
}

/** One request being answered: the response object, built as the generation goes, and its events. */
class ResponseRun {
  private readonly id = newId("resp");
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private sequence = 0;

  constructor(
    private readonly ctx: ServerContext,
    private readonly store: ResponseStore,
    private readonly plan: ResponsePlan,
    private readonly signal: AbortSignal,
  ) {}

  async respond(): Promise<object> {
    const completion = await generateInSlot(this.ctx, this.plan.prompt, { ...this.plan.options, signal: this.signal }, this.signal, () => {});
    if (this.signal.aborted) throw this.signal.reason;
    return this.finish(completion, this.outputOf(completion.text));
  }

  async stream(reply: FastifyReply): Promise<FastifyReply> {
    const sse = new SseStream(reply);
    const event = (type: string, data: object, last = false) => sse.sendEvent(type, { type, sequence_number: this.sequence++, ...data }, last);
    event("response.created", { response: this.response("in_progress", []) });
    event("response.in_progress", { response: this.response("in_progress", []) });
    const message = { id: newId("msg"), opened: false, text: "" };
    const openMessage = () => {
      if (message.opened) return;
      message.opened = true;
      event("response.output_item.added", { output_index: 0, item: { id: message.id, type: "message", status: "in_progress", role: "assistant", content: [] } });
      event("response.content_part.added", { item_id: message.id, output_index: 0, content_index: 0, part: outputText("") });
    };
    const sendText = (delta: string) => {
      openMessage();
      message.text += delta;
      event("response.output_text.delta", { item_id: message.id, output_index: 0, content_index: 0, delta, logprobs: [] });
    };
    const held = new HeldReply(this.plan.tools, sendText);
    try {
      const completion = await generateInSlot(this.ctx, this.plan.prompt, { ...this.plan.options, signal: this.signal }, this.signal, (token) => held.add(token.text));
      if (this.signal.aborted) throw this.signal.reason;
      const calls = held.holding ? toolCallsOf(completion.text, this.plan.tools) : undefined;
      let output: OutputItem[];
      if (calls) {
        output = calls.map((call) => callItem(call));
        output.forEach(({ item }, index) => {
          event("response.output_item.added", { output_index: index, item: { ...item, arguments: "", status: "in_progress" } });
          event("response.function_call_arguments.delta", { item_id: item.id, output_index: index, delta: item.arguments });
          event("response.function_call_arguments.done", { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments });
          event("response.output_item.done", { output_index: index, item });
        });
      } else {
        held.flush();
        openMessage();
        output = [messageItem(message.id, message.text)];
        event("response.output_text.done", { item_id: message.id, output_index: 0, content_index: 0, text: message.text, logprobs: [] });
        event("response.content_part.done", { item_id: message.id, output_index: 0, content_index: 0, part: outputText(message.text) });
        event("response.output_item.done", { output_index: 0, item: output[0].item });
      }
      const response = this.finish(completion, output);
      event(response.status === "completed" ? "response.completed" : "response.incomplete", { response }, true);
    } catch (err) {
      if (!sse.opened) throw err;
      const { error } = toApiError(err).body;
      event("error", { code: error.code, message: error.message, param: error.param }, true);
    }
    return reply;
  }

  /** The output of a whole reply: its tool calls, or one message. */
  private outputOf(text: string): OutputItem[] {
    const calls = toolCallsOf(text, this.plan.tools);
    return calls ? calls.map(callItem) : [messageItem(newId("msg"), text)];
  }

  /** The finished response, stored for previous_response_id unless the request said store: false. */
  private finish(completion: Completion, output: OutputItem[]) {
    if (this.plan.body.store !== false) {
      const items = new Map(output.map(({ item, message }) => [item.id as string, message]));
      // Parallel calls are one assistant turn of the conversation.
      const calls = output.flatMap((o) => o.message.toolCalls ?? []);
      const reply: ChatMessage[] = calls.length > 0 ? [{ role: "assistant", content: "", toolCalls: calls }] : output.map((o) => o.message);
      this.store.set(this.id, [...this.plan.conversation, ...reply], items);
    }
    const { promptTokens, prefillTokens, genTokens } = completion.stats;
    const usage = {
      input_tokens: promptTokens,
      input_tokens_details: { cached_tokens: promptTokens - prefillTokens },
      output_tokens: genTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: promptTokens + genTokens,
    };
    const status = completion.finishReason === "length" ? "incomplete" : "completed";
    return this.response(status, output.map((o) => o.item), usage);
  }

  /** The response object in OpenAI's shape, echoing the request's settings. */
  private response(status: "in_progress" | "completed" | "incomplete", output: object[], usage: object | null = null) {
    const { body, tools } = this.plan;
    return {
      id: this.id,
      object: "response",
      created_at: this.createdAt,
      status,
      background: false,
      error: null,
      incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: this.ctx.modelAlias,
      output,
      parallel_tool_calls: tools?.parallel ?? body.parallel_tool_calls ?? true,
      previous_response_id: body.previous_response_id ?? null,
      reasoning: { effort: null, summary: null },
      store: body.store !== false,
      temperature: body.temperature ?? null,
      text: { format: body.text?.format ?? { type: "text" } },
      tool_choice: body.tool_choice ?? "auto",
      tools: body.tools ?? [],
      top_p: body.top_p ?? null,
      truncation: "disabled",
      usage,
      user: null,
      metadata: body.metadata ?? {},
    };
  }
}

function outputText(text: string) {
  return { type: "output_text", text, annotations: [], logprobs: [] };
}

function messageItem(id: string, text: string): OutputItem {
  return {
    item: { id, type: "message", status: "completed", role: "assistant", content: [outputText(text)] },
    message: { role: "assistant", content: text },
  };
}

function callItem(call: ToolCall): OutputItem {
  return {
    item: { id: newId("fc"), type: "function_call", status: "completed", call_id: call.id, name: call.name, arguments: call.arguments },
    message: { role: "assistant", content: "", toolCalls: [call] },
  };
}
