import * as path from "node:path";
import { PACKAGE_ROOT } from "./native/binding";

/**
 * The model the package carries: llama2.c's 260K-parameter TinyStories model as GGUF (1.2 MB, MIT; see
 * models/README.md), at models/stories260K.gguf in the package root. It needs no download, so the examples and a
 * first `llama-napi run` (which uses it without --model) work offline.
 */
export const DEFAULT_MODEL_PATH = path.join(PACKAGE_ROOT, "models", "stories260K.gguf");
