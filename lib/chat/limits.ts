/**
 * The bounds a chat template from a model's files renders within (sandbox.ts enforces them). On their own, free of
 * Node's modules, because the public type declarations name them.
 */
import { InvalidArgumentError } from "../errors";
import { checkOptionNames, type OptionNames } from "../option-names";

/** Bounds of one render. */
export interface ChatTemplateLimits {
  /** Wall-clock time the render may take, in milliseconds. */
  timeMs: number;
  /** Heap of the rendering process (V8's old generation), in megabytes. */
  memoryMb: number;
  /** Length of the rendered text, in UTF-16 characters. */
  outputChars: number;
}

/** Generous for real templates (they render in about a millisecond, into a prompt that must fit a context). */
export const DEFAULT_CHAT_TEMPLATE_LIMITS: Readonly<ChatTemplateLimits> = {
  timeMs: 1000,
  memoryMb: 128,
  outputChars: 4 * 1024 * 1024,
};

const LIMIT_NAMES = { timeMs: true, memoryMb: true, outputChars: true } as const satisfies OptionNames<ChatTemplateLimits>;

/** The defaults with what the caller gave (loadModel's chatTemplateLimits), each a positive integer. */
export function resolveChatTemplateLimits(given: Partial<ChatTemplateLimits> | undefined): Readonly<ChatTemplateLimits> {
  if (given === undefined) return DEFAULT_CHAT_TEMPLATE_LIMITS;
  if (typeof given !== "object" || given === null) throw new InvalidArgumentError("chatTemplateLimits must be an object");
  checkOptionNames(given, LIMIT_NAMES, "chatTemplateLimits");
  const limits = { ...DEFAULT_CHAT_TEMPLATE_LIMITS };
  for (const key of Object.keys(DEFAULT_CHAT_TEMPLATE_LIMITS) as (keyof ChatTemplateLimits)[]) {
    const value = given[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw new InvalidArgumentError(`chatTemplateLimits.${key} must be a positive integer (got ${String(value)})`);
    }
    limits[key] = value;
  }
  return limits;
}
