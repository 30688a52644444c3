/**
 * Typed errors. Every failure a user can cause (a bad file, a bad argument, use after dispose) is one of these,
 * with a message that names the file or argument at fault.
 */
export class LlamaNapiError extends Error {
  override name = "LlamaNapiError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A model or tokenizer file is malformed: wrong magic, truncated, offsets out of range, inconsistent shapes. */
export class ModelFormatError extends LlamaNapiError {
  override name = "ModelFormatError";
}

/** A well-formed file that describes something we do not run: an unknown architecture, weight type or tokenizer. */
export class UnsupportedModelError extends LlamaNapiError {
  override name = "UnsupportedModelError";
}

/** The prompt (plus what generation needs) does not fit in the context. */
export class ContextOverflowError extends LlamaNapiError {
  override name = "ContextOverflowError";
  constructor(
    message: string,
    readonly tokens: number,
    readonly contextSize: number,
  ) {
    super(message);
  }
}

/** The model (or context) was disposed and cannot be used any more. */
export class DisposedError extends LlamaNapiError {
  override name = "DisposedError";
}

/** An argument has the wrong type or is out of range (a token id, a sampling option, ...). */
export class InvalidArgumentError extends LlamaNapiError {
  override name = "InvalidArgumentError";
  /** The name of the argument or option at fault, when the thrower names one (an own property only then). */
  declare readonly option?: string;
  constructor(message: string, options?: { cause?: unknown; option?: string }) {
    super(message, options);
    if (options?.option !== undefined) this.option = options.option;
  }
}

/** The accelerator asked for is missing (no GPU, no driver, a build without CUDA), out of memory, or failed. */
export class DeviceError extends LlamaNapiError {
  override name = "DeviceError";
}

/** An options object has a key that is not one of the function's options (a misspelling, usually). */
export class UnknownOptionError extends InvalidArgumentError {
  override name = "UnknownOptionError";
  constructor(
    message: string,
    /** The key given. */
    override readonly option: string,
    /** The valid option nearest to it by edit distance, when one is close enough to be a likely misspelling. */
    readonly suggestion: string | undefined,
  ) {
    super(message);
  }
}

/** A model's weights, or the logits computed from them, hold NaN or infinity: the file is corrupt or badly converted. */
export class NumericalError extends ModelFormatError {
  override name = "NumericalError";
  constructor(
    message: string,
    /** The model's path. */
    readonly model: string,
    /** The first tensor found holding a NaN or infinity (a tensor scan); undefined when the logits were found so. */
    readonly tensor?: string,
    /** In that tensor: the index of the bad element (f32, f16, bf16) or block (quantized types). */
    readonly index?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A KV cache does not fit in the memory of the GPU or of the machine. A DeviceError, as a GPU's memory running
 * short always was.
 */
export class OutOfMemoryError extends DeviceError {
  override name = "OutOfMemoryError";
  constructor(
    message: string,
    /** Bytes the allocation needed. */
    readonly bytesNeeded: number,
    /** Bytes the machine has, when known (the host's total memory for a cache on the CPU). */
    readonly bytesAvailable?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Which bound of the chat-template sandbox a render ran past (see ChatTemplateLimits). */
export type ChatTemplateBound = "time" | "memory" | "stack" | "output";

/**
 * A chat template ran past a bound of the sandbox it renders in: too slow, too much memory, recursion too deep, or
 * too much text. The template comes with the model's files, so this is the model's fault, not the conversation's.
 */
export class ChatTemplateLimitError extends LlamaNapiError {
  override name = "ChatTemplateLimitError";
  constructor(
    /** The template's file (and key), as ChatTemplate.origin. */
    readonly template: string,
    readonly bound: ChatTemplateBound,
    /** The bound's value: milliseconds (time), megabytes (memory), kilobytes (stack) or characters (output). */
    readonly limit: number,
  ) {
    super(`chat template (${template}) ${BOUND_DESCRIPTIONS[bound](limit)}; it is rendered with bounds because model files are untrusted`);
  }
}

const BOUND_DESCRIPTIONS: Record<ChatTemplateBound, (limit: number) => string> = {
  time: (ms) => `did not finish rendering within its time budget of ${ms} ms`,
  memory: (mb) => `needed more than its memory budget of ${mb} MB`,
  stack: (kb) => `recursed deeper than its ${kb} KB stack allows`,
  output: (chars) => `wrote more than its output budget of ${chars} characters`,
};

/**
 * A serialized model file (model.saveSerialized) is truncated or corrupt: `field` names the part found bad (the
 * header's magic, the manifest, a tokenizer table, a tensor, the checksum).
 */
export class SerializedModelError extends ModelFormatError {
  override name = "SerializedModelError";
  constructor(
    message: string,
    /** The serialized model file. */
    readonly path: string,
    /** The part of the file at fault. */
    readonly field: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A well-formed serialized model that this engine will not run as it is: written in another format version, by another
 * engine version, or prepared for another backend (`field` "formatVersion", "engineVersion" or "backend"). Save it
 * again from the original model with this version, on this backend.
 */
export class SerializedModelMismatchError extends SerializedModelError {
  override name = "SerializedModelMismatchError";
  constructor(
    message: string,
    path: string,
    field: "formatVersion" | "engineVersion" | "backend",
    /** What this engine needs. */
    readonly expected: string | number,
    /** What the file holds. */
    readonly found: string | number,
  ) {
    super(message, path, field);
  }
}

/** A GBNF grammar that does not parse or cannot be matched: where (1-based line and column) and in which rule. */
export class GrammarError extends InvalidArgumentError {
  override name = "GrammarError";
  constructor(
    message: string,
    /** The rule being defined (or referred to) at the fault; undefined before the first rule's name. */
    readonly rule: string | undefined,
    readonly line: number,
    readonly column: number,
  ) {
    super(`grammar: ${message} (${rule !== undefined ? `rule "${rule}", ` : ""}line ${line}, column ${column})`, { option: "grammar" });
  }
}

/** A JSON Schema using a keyword (or keyword value) that constrained generation does not support. */
export class UnsupportedSchemaError extends InvalidArgumentError {
  override name = "UnsupportedSchemaError";
  constructor(
    message: string,
    /** The keyword at fault ("minLength", "format", ...). */
    readonly keyword: string,
    /** Where in the schema, as a JSON pointer ("" for the root, "/properties/name"). */
    readonly path: string,
  ) {
    super(`jsonSchema${path ? ` at ${path}` : ""}: ${message}`, { option: "jsonSchema" });
  }
}

/**
 * A custom op library (loadModel's customOps) cannot serve: the file is missing or not a loadable shared library, it
 * was built for another version of llama_napi_ops.h, or it lacks the function of an enabled op.
 */
export class CustomOpError extends LlamaNapiError {
  override name = "CustomOpError";
  constructor(
    message: string,
    /** The library's path, as loaded (absolute). */
    readonly library: string,
    /** The symbol at fault (llama_napi_ops_abi_version, or an op's function); undefined when the file itself is. */
    readonly symbol: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A custom op is enabled for a model on the GPU, but its library has no CUDA launcher for it (llama_napi_ops.h): the
 * op would have to run on the CPU, which the engine never does behind the caller's back.
 */
export class CustomOpDeviceError extends DeviceError {
  override name = "CustomOpDeviceError";
  constructor(
    message: string,
    /** The library's path, as loaded (absolute). */
    readonly library: string,
    /** The launcher it lacks (llama_napi_rope_cuda, ...). */
    readonly symbol: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `llama-napi build-op` could not compile an op library: no compiler for the source, or the compiler failed. */
export class OpBuildError extends LlamaNapiError {
  override name = "OpBuildError";
  constructor(
    message: string,
    /** The source file. */
    readonly source: string,
    /** The compiler run (cc, nvcc). */
    readonly compiler: string,
    /** What the compiler wrote to stderr (empty when it could not be started). */
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
