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
export type { ModelFormat, TensorType, RopeScaling } from "./formats/types";
export {
  LlamaNapiError,
  ModelFormatError,
  UnsupportedModelError,
  ContextOverflowError,
  DisposedError,
  InvalidArgumentError,
} from "./errors";
