/**
 * A chat template: Jinja text compiled once, at model load, by @huggingface/jinja (the renderer transformers.js
 * uses), then rendered with the variables HF chat templates expect. A model's own template comes from files off the
 * Hub, so it renders in the sandbox (sandbox.ts) with bounds on time, memory and output; our built-in ones render
 * here.
 */
import { Template } from "@huggingface/jinja";
import { ChatTemplateLimitError, InvalidArgumentError, LlamaNapiError, ModelFormatError } from "../errors";
import { type ChatTemplateLimits, DEFAULT_CHAT_TEMPLATE_LIMITS } from "./limits";
import { RENDERER_STACK_KB, renderInSandbox } from "./sandbox";
import { templateKnowsTools, type TemplateInput } from "./tools";

export interface ChatTemplateVariables extends TemplateInput {
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
    /** One of ours (./builtin-templates), not the model's: trusted, rendered without the sandbox. */
    readonly builtin = false,
    readonly limits: Readonly<ChatTemplateLimits> = DEFAULT_CHAT_TEMPLATE_LIMITS,
  ) {
    try {
      this.compiled = new Template(text);
    } catch (err) {
      throw new ModelFormatError(`${origin}: invalid chat template: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The rendered conversation. An error the template raises (raise_exception) is an InvalidArgumentError; a model's
   * template that runs past a bound of its sandbox is a ChatTemplateLimitError.
   */
  render(v: ChatTemplateVariables): string {
    const variables = {
      messages: v.messages,
      ...(v.tools && { tools: v.tools }),
      add_generation_prompt: v.addGenerationPrompt,
      bos_token: v.bosToken,
      eos_token: v.eosToken,
      // Llama 3.1 templates print the date (the package provides raise_exception and strftime_now itself).
      date_string: formatDate(new Date()),
    };
    if (this.builtin) {
      try {
        return this.compiled.render(variables);
      } catch (err) {
        throw this.templateError((err as Error).message, err);
      }
    }
    const outcome = renderInSandbox(this.text, variables, this.limits);
    if ("text" in outcome) return outcome.text;
    if ("error" in outcome) throw this.templateError(outcome.error);
    if ("failure" in outcome) throw new LlamaNapiError(`chat template (${this.origin}): ${outcome.failure}`);
    const limit = { time: this.limits.timeMs, memory: this.limits.memoryMb, stack: RENDERER_STACK_KB, output: this.limits.outputChars }[outcome.exceeded];
    throw new ChatTemplateLimitError(this.origin, outcome.exceeded, limit);
  }

  /** Whether the template renders tools, tool calls and results itself (else the built-in Llama 3.1 format is used). */
  get knowsTools(): boolean {
    return !this.builtin && templateKnowsTools(this.text);
  }

  /** Whether the template writes Llama 3 headers, which take any role: tool results then go in Llama 3.1's "ipython" turn. */
  get writesLlama3Headers(): boolean {
    return this.text.includes("<|start_header_id|>");
  }

  private templateError(message: string, cause?: unknown): InvalidArgumentError {
    return new InvalidArgumentError(`chat template (${this.origin}): ${message}`, { cause });
  }
}

/** "26 Jul 2024": strftime's "%d %b %Y", as llama.cpp passes date_string. */
function formatDate(date: Date): string {
  const month = date.toLocaleString("en-US", { month: "short" });
  return `${String(date.getDate()).padStart(2, "0")} ${month} ${date.getFullYear()}`;
}
