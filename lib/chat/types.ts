/** The chat API's shapes: messages in, a prompt (text and token ids) out. */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatTemplateOptions {
  /** End with the header that opens the assistant's turn, so generation writes the reply (default true). */
  addGenerationPrompt?: boolean;
}

/** A rendered conversation. It is itself a prompt: `model.generate(model.applyChatTemplate(messages))`. */
export interface ChatPrompt {
  text: string;
  tokens: number[];
}
