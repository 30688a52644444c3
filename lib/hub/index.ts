/** Models from the Hugging Face Hub and URLs, through a local cache. */
export { resolveModelPath, pullModel } from "./resolve";
export type { DownloadProgress, ResolveModelOptions } from "./resolve";
export { listCachedModels, removeCachedModel } from "./cached-models";
export type { CachedModel } from "./cached-models";
export { DownloadError } from "./errors";
