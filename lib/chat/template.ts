/**
 * A chat template: Jinja text compiled once, at model load, by @huggingface/jinja (the renderer transformers.js
 * uses), then rendered with the variables HF chat templates expect.
 */
import { Template } from "@huggingface/jinja";
import { InvalidArgumentError, ModelFormatError } from "../errors";
import type { ChatMessage } from "./types";

export interface ChatTemplateVariables {
  messages: readonly ChatMessage[];
  addGenerationPrompt: boolean;
  bosToken: string;
  eosToken: string;
}

export class ChatTemplate {
  private readonly compiled: Template;

  /** Throws ModelFormatError naming `origin` (the file, or the GGUF key) when the text is not a valid template. */
  constructor(
    readonly text: string,
    readonly origin: string,
    /** One of ours (./builtin-templates), not the model's. */
    readonly builtin = false,
  ) {
    try {
      this.compiled = new Template(text);
    } catch (err) {
      throw new ModelFormatError(`${origin}: invalid chat template: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The rendered conversation; an error the template raises (raise_exception) is an InvalidArgumentError. */
  render(v: ChatTemplateVariables): string {
    try {
      return this.compiled.render({
        messages: v.messages,
        add_generation_prompt: v.addGenerationPrompt,
        bos_token: v.bosToken,
        eos_token: v.eosToken,
        // Llama 3.1 templates print the date (the package provides raise_exception and strftime_now itself).
        date_string: formatDate(new Date()),
      });
    } catch (err) {
      throw new InvalidArgumentError(`chat template (${this.origin}): ${(err as Error).message}`, { cause: err });
    }
  }
}

/** "26 Jul 2024": strftime's "%d %b %Y", as llama.cpp passes date_string. */
function formatDate(date: Date): string {
  const month = date.toLocaleString("en-US", { month: "short" });
  return `${String(date.getDate()).padStart(2, "0")} ${month} ${date.getFullYear()}`;
}
