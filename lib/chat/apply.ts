/**
 * Renders a conversation with a chat template and tokenizes the result, special-token strings included. The BOS
 * token is added only when the template did not already write it, so the prompt never starts with two.
 */
import { InvalidArgumentError } from "../errors";
import type { Tokenizer } from "../tokenizer/types";
import type { ChatTemplate } from "./template";
import type { ChatMessage, ChatPrompt, ChatTemplateOptions } from "./types";

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
  return template.render({
    messages,
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
  });
}
