/**
 * Models from the Hugging Face Hub or a URL, through the cache. resolveModelPath turns any model spec into a
 * local path, downloading only what the cache lacks; pullModel also asks the server whether cached files are
 * still current (a branch such as main moves).
 */
import { InvalidArgumentError } from "../errors";
import { cacheRoot, Snapshot, urlFileName } from "./cache";
import type { CachedModel } from "./cached-models";
import { fetchFile } from "./download";
import { DownloadError } from "./errors";
import type { RequestContext } from "./http";
import { hubEndpoint, hubToken, listRepoFiles, modelDirectoryFiles, resolveUrl } from "./hub-api";
import { retrying } from "./retry";
import { formatModelSpec, type ModelSource, parseModelSpec } from "./spec";

export interface DownloadProgress {
  /** The spec being fetched. */
  spec: string;
  /** The file being downloaded: its path in the repository, or the URL's file name. */
  file: string;
  /** Bytes on disk so far for the whole spec (resumed bytes included), and the total when the server said. */
  bytes: number;
  totalBytes: number | undefined;
}

export interface ResolveModelOptions {
  /** Use the cache only and never touch the network. Default: true when HF_HUB_OFFLINE=1. */
  offline?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
}

/**
 * The local path of a model: a local path is returned as is; `hf:OWNER/REPO[@REVISION][/PATH]` and `https://`
 * specs are downloaded into the cache first unless already there. Throws DownloadError (offline and not cached,
 * network unreachable, HTTP error, checksum mismatch) or InvalidArgumentError (a malformed spec).
 */
export async function resolveModelPath(spec: string, options: ResolveModelOptions = {}): Promise<string> {
  const source = parseModelSpec(spec);
  return source ? (await fetchModel(source, options, false)).path : spec;
}

/** Downloads a model into the cache, or brings a cached one up to date with the server. */
export async function pullModel(spec: string, options: ResolveModelOptions = {}): Promise<CachedModel> {
  const source = parseModelSpec(spec);
  if (!source) throw new InvalidArgumentError(`${spec}: not a Hub model (hf:OWNER/REPO[@REVISION][/PATH]) or a URL`);
  return fetchModel(source, options, true);
}

/** What a fetch shares: where it goes, how requests are made, how progress is told. */
interface Fetch {
  spec: string;
  snapshot: Snapshot;
  offline: boolean;
  refresh: boolean;
  ctx: RequestContext;
  report: (file: string, bytes: number, totalBytes: number | undefined) => void;
}

async function fetchModel(source: ModelSource, options: ResolveModelOptions, refresh: boolean): Promise<CachedModel> {
  const spec = formatModelSpec(source);
  const f: Fetch = {
    spec,
    snapshot: Snapshot.of(source),
    offline: options.offline ?? /^(1|true|yes|on)$/i.test(process.env.HF_HUB_OFFLINE ?? ""),
    refresh,
    ctx: { what: spec, hubOrigin: new URL(hubEndpoint()).origin, token: hubToken(), signal: options.signal },
    report: (file, bytes, totalBytes) => options.onProgress?.({ spec, file, bytes, totalBytes }),
  };
  if (source.kind === "url") return fetchSingleFile(f, urlFileName(source.url), source.url.href);
  if (source.path === undefined) return fetchDirectory(f, source.repo, source.revision);
  return fetchSingleFile(f, source.path, resolveUrl(source.repo, source.revision, source.path));
}

function notCachedOffline(f: Fetch): DownloadError {
  return new DownloadError(`${f.spec} is not in the cache (${cacheRoot()}) and offline mode is on; fetch it once online: llama-napi pull ${f.spec}`);
}

async function fetchSingleFile(f: Fetch, path: string, url: string): Promise<CachedModel> {
  const record = f.offline
    ? f.snapshot.completeRecord(path)
    : await fetchFile({
        snapshot: f.snapshot, path, spec: f.spec, url, ctx: f.ctx, refresh: f.refresh,
        onBytes: (bytes, size) => f.report(path, bytes, size),
      });
  if (!record) throw notCachedOffline(f);
  return { spec: f.spec, path: f.snapshot.file(path), files: 1, bytes: record.size ?? 0, complete: true };
}

/** A model directory: the repository's file list, then each model file (config, weights, tokenizer) in turn. */
async function fetchDirectory(f: Fetch, repo: string, revision: string): Promise<CachedModel> {
  const { snapshot } = f;
  const manifest = snapshot.readManifest();
  const cached = manifest?.complete === true && manifest.files.every((file) => snapshot.completeRecord(file) !== undefined);
  if (cached && (f.offline || !f.refresh)) {
    const bytes = manifest.files.reduce((n, file) => n + snapshot.bytesOnDisk(file), 0);
    return { spec: f.spec, path: snapshot.dir, files: manifest.files.length, bytes, complete: true };
  }
  if (f.offline) throw notCachedOffline(f);

  const files = modelDirectoryFiles(await retrying(() => listRepoFiles(repo, revision, f.ctx), f.ctx.signal), f.spec);
  const paths = files.map((file) => file.path);
  // Files the repository no longer has (the branch moved since the last pull) leave the directory.
  for (const old of manifest?.files ?? []) if (!paths.includes(old)) snapshot.removeFile(old);
  snapshot.writeManifest({ spec: f.spec, files: paths, complete: false });
  const totalBytes = files.reduce((n, file) => n + file.size, 0);
  let done = 0;
  for (const path of paths) {
    const fileSpec = `${f.spec}/${path}`;
    const record = await fetchFile({
      snapshot, path, spec: fileSpec, url: resolveUrl(repo, revision, path), ctx: { ...f.ctx, what: fileSpec }, refresh: f.refresh,
      onBytes: (bytes) => f.report(path, done + bytes, totalBytes),
    });
    done += record.size ?? 0;
    f.report(path, done, totalBytes);
  }
  snapshot.writeManifest({ spec: f.spec, files: paths, complete: true });
  return { spec: f.spec, path: snapshot.dir, files: paths.length, bytes: done, complete: true };
}
