/**
 * The download cache on disk: $LLAMA_NAPI_CACHE, default ~/.cache/llama-napi, laid out to be browsed by people:
 *
 *   hf/OWNER/REPO/REVISION/PATH          a Hub file at its path in the repository; REVISION/ is the model directory
 *   url/HOST/ID/NAME                     a file fetched by URL (ID: a hash of the URL, NAME: its last path segment)
 *   <file>.partial                       a download in progress, renamed to <file> once whole and verified
 *   SNAPSHOT/.meta/files/PATH.json       what is known of a file: URL, size, ETag, sha256, commit, partial/complete
 *   SNAPSHOT/.meta/directory.json        for a model directory: the files that make it up
 *
 * A snapshot is one REVISION/ or ID/ directory: the unit a spec resolves into.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as nodePath from "node:path";
import type { ModelSource } from "./spec";

const META = ".meta";
const RECORD_SUFFIX = ".json";

export function cacheRoot(): string {
  return nodePath.resolve(process.env.LLAMA_NAPI_CACHE || nodePath.join(os.homedir(), ".cache", "llama-napi"));
}

/** One file's download state; `size`, `etag`, `sha256` and `commit` are what the server said (sha256 once verified). */
export interface FileRecord {
  /** The spec that names this file alone (hf:OWNER/REPO/PATH or the URL). */
  spec: string;
  url: string;
  state: "partial" | "complete";
  size?: number;
  etag?: string;
  sha256?: string;
  commit?: string;
  updatedAt: string;
}

/** A model directory: which files of the snapshot belong to it; `complete` once all were fetched. */
export interface DirectoryManifest {
  spec: string;
  files: string[];
  complete: boolean;
}

/** A URL's file name in the cache: its last path segment, or "download" when that is empty. */
export function urlFileName(url: URL): string {
  const segment = url.pathname.split("/").pop() ?? "";
  let name: string;
  try {
    name = decodeURIComponent(segment).replace(/[/\\\0]/g, "_");
  } catch {
    name = segment; // a malformed %-escape: keep it as written
  }
  return name === "" || name === "." || name === ".." ? "download" : name;
}

/** Where a single-file source lies inside its snapshot; undefined for a model directory (the snapshot itself). */
export function fileInSnapshot(source: ModelSource): string | undefined {
  return source.kind === "hf" ? source.path : urlFileName(source.url);
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(path, "utf8")) as T;
  } catch {
    return undefined; // missing, or cut short by a crash: as if absent
  }
}

/** Writes under a unique temporary name, then renames: a reader sees the old content or the new, never half. */
function writeJsonAtomic(path: string, value: unknown): void {
  fs.mkdirSync(nodePath.dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  fs.writeFileSync(temp, `${JSON.stringify(value, null, 2)}\n`);
  fs.renameSync(temp, path);
}

function fileSize(path: string): number | undefined {
  try {
    return fs.statSync(path).size;
  } catch {
    return undefined;
  }
}

export class Snapshot {
  constructor(readonly dir: string) {}

  static of(source: ModelSource): Snapshot {
    const root = cacheRoot();
    if (source.kind === "hf") return new Snapshot(nodePath.join(root, "hf", ...source.repo.split("/"), source.revision));
    const id = createHash("sha256").update(source.url.href).digest("hex").slice(0, 12);
    return new Snapshot(nodePath.join(root, "url", source.url.host.replace(/:/g, "_"), id));
  }

  /** Every snapshot directory in the cache. */
  static all(): Snapshot[] {
    const root = cacheRoot();
    const hf = subdirs(nodePath.join(root, "hf"), 3); // OWNER/REPO/REVISION
    const url = subdirs(nodePath.join(root, "url"), 2); // HOST/ID
    return [...hf, ...url].map((dir) => new Snapshot(dir));
  }

  file(path: string): string {
    return nodePath.join(this.dir, path);
  }

  partial(path: string): string {
    return `${this.file(path)}.partial`;
  }

  lock(path: string): string {
    return nodePath.join(this.dir, META, "files", `${path}.lock`);
  }

  readRecord(path: string): FileRecord | undefined {
    return readJson<FileRecord>(this.recordPath(path));
  }

  writeRecord(path: string, record: FileRecord): void {
    writeJsonAtomic(this.recordPath(path), record);
  }

  /** The record of a file that is whole on disk, else undefined. */
  completeRecord(path: string): FileRecord | undefined {
    const record = this.readRecord(path);
    return record?.state === "complete" && fileSize(this.file(path)) === record.size ? record : undefined;
  }

  /** Bytes of the file on disk: the whole file, or what a download in progress has so far. */
  bytesOnDisk(path: string): number {
    return fileSize(this.file(path)) ?? fileSize(this.partial(path)) ?? 0;
  }

  readManifest(): DirectoryManifest | undefined {
    return readJson<DirectoryManifest>(this.manifestPath());
  }

  writeManifest(manifest: DirectoryManifest): void {
    writeJsonAtomic(this.manifestPath(), manifest);
  }

  /** Paths of the files that have a record, complete or not. */
  recordedFiles(): string[] {
    const base = nodePath.join(this.dir, META, "files");
    return listFiles(base)
      .filter((f) => f.endsWith(RECORD_SUFFIX))
      .map((f) => nodePath.relative(base, f).slice(0, -RECORD_SUFFIX.length).split(nodePath.sep).join("/"));
  }

  /** Deletes a file with its partial download and its record. */
  removeFile(path: string): void {
    for (const p of [this.file(path), this.partial(path), this.recordPath(path)]) fs.rmSync(p, { force: true });
  }

  removeManifest(): void {
    fs.rmSync(this.manifestPath(), { force: true });
  }

  /** Removes the directories left empty under the snapshot, then the snapshot's parents up to the cache root. */
  pruneEmptyDirectories(): void {
    removeEmptyDirs(this.dir);
    const root = cacheRoot();
    for (let dir = nodePath.dirname(this.dir); dir.startsWith(root + nodePath.sep); dir = nodePath.dirname(dir)) {
      if (!removeIfEmpty(dir)) break;
    }
  }

  private recordPath(path: string): string {
    return nodePath.join(this.dir, META, "files", `${path}${RECORD_SUFFIX}`);
  }

  private manifestPath(): string {
    return nodePath.join(this.dir, META, "directory.json");
  }
}

function readDir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Directories exactly `depth` levels below `dir`. */
function subdirs(dir: string, depth: number): string[] {
  const children = readDir(dir).filter((e) => e.isDirectory()).map((e) => nodePath.join(dir, e.name));
  return depth === 1 ? children : children.flatMap((child) => subdirs(child, depth - 1));
}

function listFiles(dir: string): string[] {
  return readDir(dir).flatMap((e) => {
    const path = nodePath.join(dir, e.name);
    return e.isDirectory() ? listFiles(path) : [path];
  });
}

function removeIfEmpty(dir: string): boolean {
  try {
    fs.rmdirSync(dir);
    return true;
  } catch {
    return false; // not empty, or gone already
  }
}

/** Removes empty directories bottom-up under `dir` (and `dir` itself when it ends up empty). */
function removeEmptyDirs(dir: string): void {
  for (const e of readDir(dir)) if (e.isDirectory()) removeEmptyDirs(nodePath.join(dir, e.name));
  removeIfEmpty(dir);
}
