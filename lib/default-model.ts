import * as path from "node:path";

/**
 * The model the package carries: llama2.c's 260K-parameter TinyStories model as GGUF (1.2 MB, MIT), at
 * models/stories260K.gguf in the package root (this file compiles to dist/cjs/, two folders below it). It needs no
 * download, so examples and a first run work offline.
 */
export const DEFAULT_MODEL_PATH = path.resolve(__dirname, "..", "..", "models", "stories260K.gguf");
