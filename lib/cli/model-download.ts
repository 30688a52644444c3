/**
 * How the commands get models: the --offline option, a download progress bar, a load progress bar, sizes for
 * people.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { DEFAULT_MODEL_PATH } from "../default-model";
import { type DownloadProgress, resolveModelPath } from "../hub";
import { cacheRoot } from "../hub/cache";
import { quantize } from "../quantize/quantize";
import type { QuantizeType } from "../quantize/tensor-types";
import { type LlamaModel, loadModel, type LoadModelOptions } from "../model";
import { MODEL_OPTION, type OptionSpec } from "./args";
import { ProgressBar } from "./progress-bar";

export const OFFLINE_OPTION: OptionSpec = {
  type: "boolean", description: "Use cached models only, never the network (also HF_HUB_OFFLINE=1)",
};

export const MODEL_OR_DEFAULT_OPTION: OptionSpec = {
  ...MODEL_OPTION,
  description: `${MODEL_OPTION.description} (default: the 1.2 MB TinyStories model in the package, models/stories260K.gguf)`,
};

/** Redraws at most this often: a fast download reports every few kilobytes. */
const REDRAW_MS = 100;

export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  for (; n >= 1000 && i < units.length - 1; i++) n /= 1000;
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function formatDuration(seconds: number): string {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A download's bar on stderr (bytes, rate, time left) when it is a terminal; silent otherwise. */
export function downloadProgressBar(): { onProgress: (p: DownloadProgress) => void; finish: () => void } {
  const bar = new ProgressBar(formatBytes);
  let start: { bytes: number; at: number } | undefined;
  let drawnAt = -Infinity;
  return {
    onProgress(p) {
      const now = performance.now();
      // The rate counts this run's bytes only, not what an interrupted run left on disk.
      start ??= { bytes: p.bytes, at: now };
      if (now - drawnAt < REDRAW_MS && p.bytes !== p.totalBytes) return;
      drawnAt = now;
      const received = p.bytes - start.bytes;
      const total = p.totalBytes ?? p.bytes;
      const eta = received > 0 && p.totalBytes !== undefined ? `ETA ${formatDuration(((total - p.bytes) * (now - start.at)) / 1000 / received)} ` : "";
      bar.update(p.bytes, total, `${eta}${p.file}`, received); // the file name last: a narrow terminal cuts it, not the ETA
    },
    finish: () => bar.finish(),
  };
}

/** resolveModelPath with the progress bar. */
export async function resolveModel(spec: string, offline: boolean | undefined): Promise<string> {
  const progress = downloadProgressBar();
  try {
    return await resolveModelPath(spec, { offline, onProgress: progress.onProgress });
  } finally {
    progress.finish();
  }
}

/**
 * loadModel with bars on stderr, when it is a terminal: the download of a Hub or URL model not yet cached, then the
 * weights being read. Elsewhere no onProgress is passed, so the weights are read on first use as in any library
 * load, and nothing is printed.
 */
export async function loadModelWithProgress(spec: string, options: LoadModelOptions): Promise<LlamaModel> {
  const path = await resolveModel(spec, options.offline);
  if (!process.stderr.isTTY) return loadModel(path, options);
  const bar = new ProgressBar(formatBytes);
  const label = `loading ${basename(path)}`;
  try {
    return await loadModel(path, { ...options, onProgress: (p) => bar.update(p.loadedBytes, p.totalBytes, label, p.loadedBytes) });
  } finally {
    bar.finish();
  }
}

/** --save-to-serialized-model-path FILE: writes the loaded model there, saying so on stderr. */
export async function saveSerializedIfAsked(model: LlamaModel, file: string | undefined): Promise<void> {
  if (file === undefined) return;
  const { path, bytes } = await model.saveSerialized(file);
  process.stderr.write(`wrote the prepared model to ${path} (${formatBytes(bytes)}); --model ${path} loads it without preparing\n`);
}

/**
 * The default model in weight type `type` (run --encoding): the packaged f32 model itself for f32, else quantized
 * from it once into the cache (LLAMA_NAPI_CACHE or ~/.cache/llama-napi, under default-model/) and reused. Written to
 * a temporary name and renamed, so an interrupted quantization never leaves a partial model under the name.
 */
export async function defaultModelIn(type: QuantizeType): Promise<string> {
  if (type.toLowerCase() === "f32") return DEFAULT_MODEL_PATH;
  const path = join(cacheRoot(), "default-model", `${basename(DEFAULT_MODEL_PATH, ".gguf")}.${type}.gguf`);
  if (existsSync(path)) return path;
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  try {
    const { notices } = await quantize(DEFAULT_MODEL_PATH, partial, { type });
    renameSync(partial, path);
    for (const notice of notices) process.stderr.write(`notice: ${notice}\n`);
    process.stderr.write(`made the default model in ${type}: ${path}\n`);
  } finally {
    rmSync(partial, { force: true });
  }
  return path;
}
