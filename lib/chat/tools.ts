/**
 * Tool (function) calling in chat: rendering the tools, the assistant's calls and the tools' results into a prompt,
 * and parsing a reply back into calls. A template that knows tools (Llama 3.1's own: it reads `tools`, `tool_calls`
 * and role "tool") renders them itself, from the variables HF templates expect; any other gets the built-in Llama
 * 3.1 JSON format: the tools described in the system message, a call written as
 * `{"name": ..., "parameters": {...}}` (one per line), results as JSON objects in the tool's turn.
 */
import { randomBytes } from "node:crypto";
import { InvalidArgumentError } from "../errors";
import type { ChatMessage, ToolCall, ToolDefinition } from "./types";

/** A message as the template receives it (HF's field names). */
export interface TemplateMessage {
  role: string;
  content: string;
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: unknown } }[];
  tool_call_id?: string;
}

/** What a template renders a conversation from. */
export interface TemplateInput {
  messages: TemplateMessage[];
  /** OpenAI's tool objects, when the template renders tools itself. */
  tools?: { type: "function"; function: ToolDefinition }[];
}

/** Llama 3.1's instruction for JSON tool calls (from Meta's prompt format for custom tools). */
const TOOL_INSTRUCTIONS =
  "You have access to the following functions. To call a function, respond with JSON for a function call: " +
  '{"name": function name, "parameters": dictionary of argument name and its value}, one call per line and ' +
  "nothing else. Do not use variables.";

/** The token Llama 3.1 writes before a tool call. */
const PYTHON_TAG = "<|python_tag|>";

/** Whether a template renders tools itself (reads `tools` and the messages' `tool_calls`). */
export function templateKnowsTools(templateText: string): boolean {
  return /\btools\b/.test(templateText) && /\btool_calls\b/.test(templateText);
}

/** Whether a conversation involves tools at all (tools offered, calls or results in its history). */
export function usesTools(messages: readonly ChatMessage[], tools: readonly ToolDefinition[] | undefined): boolean {
  return (tools !== undefined && tools.length > 0) || messages.some((m) => m.role === "tool" || (m.toolCalls?.length ?? 0) > 0);
}

export function checkTools(tools: unknown, where: string): asserts tools is readonly ToolDefinition[] | undefined {
  if (tools === undefined) return;
  if (!Array.isArray(tools)) throw new InvalidArgumentError(`${where}: tools must be an array of { name, description?, parameters? }`, { option: "tools" });
  const names = new Set<string>();
  tools.forEach((tool, i) => {
    if (typeof tool !== "object" || tool === null || typeof tool.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(tool.name)) {
      throw new InvalidArgumentError(`${where}: tools[${i}].name must be 1 to 64 letters, digits, '_', '.' or '-'`, { option: "tools" });
    }
    if (names.has(tool.name)) throw new InvalidArgumentError(`${where}: two tools are named ${tool.name}`, { option: "tools" });
    names.add(tool.name);
    if (tool.description !== undefined && typeof tool.description !== "string") {
      throw new InvalidArgumentError(`${where}: tools[${i}].description must be a string`, { option: "tools" });
    }
    if (tool.parameters !== undefined && (typeof tool.parameters !== "object" || tool.parameters === null || Array.isArray(tool.parameters))) {
      throw new InvalidArgumentError(`${where}: tools[${i}].parameters must be a JSON Schema object`, { option: "tools" });
    }
  });
}

/**
 * The conversation as a template renders it: plain messages when no tools are involved; with tools, HF's
 * variables for a template that knows them, else the built-in Llama 3.1 format. `toolRole` is the role results go
 * in for the built-in format ("ipython" for Llama 3 style templates, whose headers take any role).
 */
export function templateInput(
  messages: readonly ChatMessage[],
  tools: readonly ToolDefinition[] | undefined,
  knowsTools: boolean,
  toolRole: "ipython" | "user",
): TemplateInput {
  if (!usesTools(messages, tools)) return { messages: messages.map(({ role, content }) => ({ role, content })) };
  if (knowsTools) {
    return {
      messages: messages.map((m) => ({
        role: m.role,
        content: m.content,
        ...(m.toolCalls?.length && {
          tool_calls: m.toolCalls.map((call) => ({ id: call.id, type: "function" as const, function: { name: call.name, arguments: argumentsValue(call.arguments) } })),
        }),
        ...(m.toolCallId !== undefined && { tool_call_id: m.toolCallId }),
      })),
      ...(tools?.length && { tools: tools.map((tool) => ({ type: "function" as const, function: tool })) }),
    };
  }
  return { messages: builtinToolMessages(messages, tools ?? [], toolRole) };
}

function builtinToolMessages(messages: readonly ChatMessage[], tools: readonly ToolDefinition[], toolRole: string): TemplateMessage[] {
  const out: TemplateMessage[] = [];
  if (tools.length > 0) {
    const described = tools.map((tool) => JSON.stringify({ type: "function", function: tool }, null, 4)).join("\n\n");
    const system = `${TOOL_INSTRUCTIONS}\n\n${described}`;
    if (messages[0]?.role === "system") out.push({ role: "system", content: `${messages[0].content}\n\n${system}` });
    else out.push({ role: "system", content: system });
  }
  const callNames = new Map<string, string>();
  for (const [i, m] of messages.entries()) {
    if (i === 0 && m.role === "system" && tools.length > 0) continue;
    if (m.role === "tool") {
      // Consecutive results share one turn: templates that alternate user / assistant take them as one message.
      const result = JSON.stringify({ name: callNames.get(m.toolCallId ?? "") ?? null, output: m.content });
      const previous = out.at(-1);
      if (previous?.role === toolRole && messages[i - 1]?.role === "tool") previous.content += `\n${result}`;
      else out.push({ role: toolRole, content: result });
      continue;
    }
    if (m.toolCalls?.length) {
      for (const call of m.toolCalls) callNames.set(call.id, call.name);
      const calls = m.toolCalls.map((call) => JSON.stringify({ name: call.name, parameters: argumentsValue(call.arguments) })).join("\n");
      out.push({ role: m.role, content: m.content === "" ? calls : `${m.content}\n${calls}` });
      continue;
    }
    out.push({ role: m.role, content: m.content });
  }
  return out;
}

/** A call's arguments as the object templates print with `tojson`; text that is not JSON stays text. */
function argumentsValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A fresh call id, as OpenAI's look ("call_" and 24 characters). */
export function newToolCallId(): string {
  return `call_${randomBytes(12).toString("hex")}`;
}

/**
 * The tool calls a reply consists of, or undefined when it is not (only) tool calls: after an optional
 * <|python_tag|>, one or more JSON objects `{"name", "parameters" | "arguments"}` naming offered tools (or an array
 * of them), separated by whitespace, ';' or ','. Anything else in the reply makes it ordinary text.
 */
export function parseToolCalls(text: string, tools: readonly ToolDefinition[]): ToolCall[] | undefined {
  let rest = text.trimStart();
  if (rest.startsWith(PYTHON_TAG)) rest = rest.slice(PYTHON_TAG.length);
  const names = new Set(tools.map((t) => t.name));
  const calls: ToolCall[] = [];
  for (let at = 0; ; ) {
    while (at < rest.length && /[\s;,]/.test(rest[at])) at++;
    if (at === rest.length) break;
    const end = jsonValueEnd(rest, at);
    if (end < 0) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(rest.slice(at, end));
    } catch {
      return undefined;
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      const call = toolCallOf(item, names);
      if (!call) return undefined;
      calls.push(call);
    }
    at = end;
  }
  return calls.length > 0 ? calls : undefined;
}

function toolCallOf(value: unknown, names: ReadonlySet<string>): ToolCall | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { name, parameters, arguments: args } = value as { name?: unknown; parameters?: unknown; arguments?: unknown };
  if (typeof name !== "string" || !names.has(name)) return undefined;
  const given = parameters ?? (typeof args === "string" ? argumentsValue(args) : args) ?? {};
  if (typeof given !== "object" || given === null || Array.isArray(given)) return undefined;
  return { id: newToolCallId(), name, arguments: JSON.stringify(given) };
}

/** Where the JSON object or array starting at `start` ends (after its closing bracket), or -1 when it does not close. */
function jsonValueEnd(text: string, start: number): number {
  if (text[start] !== "{" && text[start] !== "[") return -1;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * Whether a reply that begins with `text` may still turn out to be tool calls: nothing but whitespace yet, or a
 * JSON object or array (or the <|python_tag|>) begins. A stream holds such text back until the reply ends.
 */
export function mayBeToolCalls(text: string): boolean {
  const start = text.trimStart();
  return start === "" || start[0] === "{" || start[0] === "[" || PYTHON_TAG.startsWith(start.slice(0, PYTHON_TAG.length));
}
