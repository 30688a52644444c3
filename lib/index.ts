/** llama-napi: Llama-family LLM inference for Node.js. */
import "./ambient"; // global types the declarations need (see ambient.ts)
export { loadModel, LlamaModel } from "./model";
export type { CustomOpName, CustomOpsInfo, KvCacheInfo, KvCacheUsage, LoadModelOptions, LoadProgress, ModelInfo } from "./model";
export type { KvCacheType } from "./native/binding";
export type {
  Completion,
  ContextOverflowPolicy,
  FinishReason,
  GeneratedToken,
  GenerateOptions,
  GenerationStats,
  Prompt,
  TokenLogprob,
} from "./generation/types";
export { ChatSession, GenerationStream } from "./generation/session";
export type { SessionOptions, PromptOptions, TurnCompletion, ToolResult, ToolFunction } from "./generation/session";
export type { EmbedOptions, EmbeddingPooling } from "./generation/embed";
export type { LogitsProcessor, SamplerName, SamplingOptions } from "./sampling/sampler";
export { SAMPLING_DEFAULTS, SAMPLER_NAMES } from "./sampling/sampler";
export type { TokenizeOptions } from "./tokenizer/types";
export type { ChatMessage, ChatPrompt, ChatTemplateOptions, ToolCall, ToolDefinition } from "./chat/types";
export type { ModelFormat, TensorType, RopeScaling } from "./formats/types";
export { quantize } from "./quantize/quantize";
export type { QuantizeOptions, QuantizeProgress, QuantizeResult, QuantizedTensor } from "./quantize/quantize";
export { QUANTIZE_TYPES, QUANTIZE_MIXES } from "./quantize/tensor-types";
export type { QuantizeType, QuantizeMix } from "./quantize/tensor-types";
export { perplexity } from "./eval/perplexity";
export type { PerplexityOptions, PerplexityResult, KlStats } from "./eval/perplexity";
export { createServer, resolveServerOptions, type ServerOptions, type ListenOptions, type ServerAddress, type LlamaServer } from "./server";
export {
  LlamaNapiError,
  ModelFormatError,
  UnsupportedModelError,
  ContextOverflowError,
  DisposedError,
  InvalidArgumentError,
  DeviceError,
  UnknownOptionError,
  NumericalError,
  OutOfMemoryError,
} from "./errors";
export { ChatTemplateLimitError, type ChatTemplateBound } from "./errors";
export { SerializedModelError, SerializedModelMismatchError } from "./errors";
export { GrammarError, UnsupportedSchemaError } from "./errors";
export { compileGrammar, constraintFromJsonSchema, jsonSchemaToGbnf, JSON_GBNF } from "./grammar";
export type { CompiledGrammar, ConstraintOptions } from "./grammar";
export { CustomOpError, CustomOpDeviceError, OpBuildError } from "./errors";
export { buildOp, CUSTOM_OPS_HEADER_DIR, type BuildOpOptions } from "./custom-ops";
export type { ChatTemplateLimits } from "./chat/limits";
export { resolveModelPath, pullModel, listCachedModels, removeCachedModel, DownloadError } from "./hub";
export type { DownloadProgress, ResolveModelOptions, CachedModel } from "./hub";
export { DEFAULT_MODEL_PATH } from "./default-model";
