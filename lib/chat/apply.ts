/**
 * Renders a conversation with a chat template and tokenizes the result, special-token strings included. The BOS
 * token is added only when the template did not already write it, so the prompt never starts with two.
 */
import { InvalidArgumentError } from "../errors";
import type { Tokenizer } from "../tokenizer/types";
import type { ChatTemplate } from "./template";
import { checkTools, templateInput } from "./tools";
import type { ChatMessage, ChatPrompt, ChatTemplateOptions, ToolCall } from "./types";

export function applyChatTemplate(
  template: ChatTemplate,
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions = {},
): ChatPrompt {
  const text = renderChat(template, tokenizer, messages, options);
  const bosToken = tokenizer.bosId === undefined ? "" : tokenizer.tokenText(tokenizer.bosId);
  const templateWroteBos = bosToken !== "" && text.startsWith(bosToken);
  const tokens = tokenizer.tokenize(text, { special: true, addBos: templateWroteBos ? false : undefined });
  return { text, tokens };
}

/** The conversation as the template writes it (text, not yet tokenized). */
export function renderChat(
  template: ChatTemplate,
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions = {},
): string {
  checkMessages(messages);
  checkTools(options.tools, "applyChatTemplate");
  return template.render({
    ...templateInput(messages, options.tools, template.knowsTools, template.writesLlama3Headers ? "ipython" : "user"),
    addGenerationPrompt: options.addGenerationPrompt ?? true,
    bosToken: tokenizer.bosId === undefined ? "" : tokenizer.tokenText(tokenizer.bosId),
    eosToken: tokenizer.eosIds.length === 0 ? "" : tokenizer.tokenText(tokenizer.eosIds[0]),
  });
}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new InvalidArgumentError("applyChatTemplate: messages must be an array of { role, content }");
  messages.forEach((m, i) => {
    if (typeof m !== "object" || m === null || typeof m.role !== "string" || typeof m.content !== "string") {
      throw new InvalidArgumentError(`applyChatTemplate: messages[${i}] must be { role: string, content: string }`);
    }
    if (m.toolCalls !== undefined && !(Array.isArray(m.toolCalls) && m.toolCalls.every(isToolCall))) {
      throw new InvalidArgumentError(`applyChatTemplate: messages[${i}].toolCalls must be an array of { id, name, arguments } strings`);
    }
    if (m.toolCallId !== undefined && typeof m.toolCallId !== "string") {
      throw new InvalidArgumentError(`applyChatTemplate: messages[${i}].toolCallId must be a string`);
    }
  });
}

function isToolCall(call: unknown): boolean {
  const c = call as ToolCall;
  return typeof c === "object" && c !== null && typeof c.id === "string" && typeof c.name === "string" && typeof c.arguments === "string";
}
