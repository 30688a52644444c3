/** llama-napi: Llama-family LLM inference for Node.js. */
export { loadModel, LlamaModel } from "./model";
export type { LoadModelOptions, LoadProgress, ModelInfo } from "./model";
export type {
  Completion,
  FinishReason,
  GeneratedToken,
  GenerateOptions,
  GenerationStats,
  Prompt,
} from "./generation/types";
export type { SamplingOptions } from "./sampling/sampler";
export { SAMPLING_DEFAULTS } from "./sampling/sampler";
export type { TokenizeOptions } from "./tokenizer/types";
export type { ChatMessage, ChatPrompt, ChatTemplateOptions } from "./chat/types";
export type { ModelFormat, TensorType, RopeScaling } from "./formats/types";
export { quantize } from "./quantize/quantize";
export type { QuantizeOptions, QuantizeProgress, QuantizeResult, QuantizedTensor } from "./quantize/quantize";
export { QUANTIZE_TYPES, QUANTIZE_MIXES } from "./quantize/tensor-types";
export type { QuantizeType, QuantizeMix } from "./quantize/tensor-types";
export { perplexity } from "./eval/perplexity";
export type { PerplexityOptions, PerplexityResult, KlStats } from "./eval/perplexity";
export {
  LlamaNapiError,
  ModelFormatError,
  UnsupportedModelError,
  ContextOverflowError,
  DisposedError,
  InvalidArgumentError,
} from "./errors";
