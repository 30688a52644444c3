/** What the cache holds, model by model (`llama-napi ls`), and removing a model from it (`llama-napi rm`). */
import { InvalidArgumentError } from "../errors";
import { cacheRoot, fileInSnapshot, Snapshot } from "./cache";
import { formatModelSpec, parseModelSpec } from "./spec";

export interface CachedModel {
  /** The spec that names it, as resolveModelPath, `pull` and `rm` take it. */
  spec: string;
  /** The local path: the file, or the model directory. */
  path: string;
  files: number;
  /** Bytes on disk, unfinished downloads included. */
  bytes: number;
  /** False while a download is unfinished; the next pull resumes it. */
  complete: boolean;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** A snapshot's models: its model directory, if it is one, and every file fetched on its own. */
function modelsIn(snapshot: Snapshot): CachedModel[] {
  const manifest = snapshot.readManifest();
  const models: CachedModel[] = [];
  if (manifest) {
    models.push({
      spec: manifest.spec,
      path: snapshot.dir,
      files: manifest.files.length,
      bytes: sum(manifest.files.map((f) => snapshot.bytesOnDisk(f))),
      complete: manifest.complete && manifest.files.every((f) => snapshot.completeRecord(f) !== undefined),
    });
  }
  const inDirectory = new Set(manifest?.files);
  for (const path of snapshot.recordedFiles()) {
    const record = snapshot.readRecord(path);
    if (inDirectory.has(path) || !record) continue;
    models.push({
      spec: record.spec,
      path: snapshot.file(path),
      files: 1,
      bytes: snapshot.bytesOnDisk(path),
      complete: snapshot.completeRecord(path) !== undefined,
    });
  }
  return models;
}

export function listCachedModels(): CachedModel[] {
  return Snapshot.all()
    .flatMap(modelsIn)
    .sort((a, b) => a.spec.localeCompare(b.spec));
}

/** Deletes a cached model (finished or not) named by its spec, and returns what it was. */
export function removeCachedModel(spec: string): CachedModel {
  const source = parseModelSpec(spec);
  if (!source) throw new InvalidArgumentError(`${spec}: not a Hub model (hf:OWNER/REPO[@REVISION][/PATH]) or a URL`);
  const canonical = formatModelSpec(source);
  const model = listCachedModels().find((m) => m.spec === canonical);
  if (!model) throw new InvalidArgumentError(`${canonical} is not in the cache (${cacheRoot()}); "llama-napi ls" lists what is`);
  const snapshot = Snapshot.of(source);
  const file = fileInSnapshot(source);
  if (file === undefined) {
    for (const f of snapshot.readManifest()?.files ?? []) snapshot.removeFile(f);
    snapshot.removeManifest();
  } else {
    snapshot.removeFile(file);
  }
  snapshot.pruneEmptyDirectories();
  return model;
}
