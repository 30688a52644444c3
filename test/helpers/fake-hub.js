"use strict";
// A local imitation of the Hugging Face Hub for the download tests, on two loopback origins like the real one:
// the Hub serves resolve URLs ({endpoint}/{repo}/resolve/{revision}/{path}) with its headers (X-Repo-Commit; a
// small file's ETag is its git blob id; an LFS file is a 302 to the CDN with X-Linked-Etag = sha256 and
// X-Linked-Size), the tree API (/api/models/{repo}/tree/{revision}, paged with Link rel="next"), 401/404 with
// X-Error-Code, renamed repositories (a relative 307); the CDN serves the LFS blobs. Both honour Range (206, 416).
// Faults on demand: a connection cut mid-body, a wrong announced sha256. Every request is logged.
const crypto = require("node:crypto");
const http = require("node:http");

/** Files this size and over are LFS files (the Hub's rule is by pattern and size; any rule will do here). */
const LFS_MIN_BYTES = 1024;
const TREE_PAGE = 2;

const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");
const gitBlobId = (buf) => crypto.createHash("sha1").update(`blob ${buf.length}\0`).update(buf).digest("hex");

class FakeHub {
  constructor() {
    /** "owner/repo" → { commit, token, revisions: Map(revision → Map(path → file)) } */
    this.repos = new Map();
    /** old "owner/repo" → new one */
    this.renamed = new Map();
    /** Plain files (no Hub headers) under /plain/NAME, for URL specs. */
    this.plain = new Map();
    /** sha256 → { after, times }: the next `times` CDN GETs of that blob send `after` bytes and drop the connection. */
    this.cuts = new Map();
    this.requests = [];
  }

  /** files: { path: Buffer | string }; token: the repository is private and readable with this HF token. */
  addRepo(repo, files, { revision = "main", token } = {}) {
    const entry = this.repos.get(repo) ?? { commit: crypto.randomBytes(20).toString("hex"), token, revisions: new Map() };
    const contents = new Map();
    for (const [path, data] of Object.entries(files)) {
      const content = Buffer.from(data);
      contents.set(path, { content, sha256: sha256(content), announcedSha256: sha256(content), lfs: content.length >= LFS_MIN_BYTES });
    }
    entry.revisions.set(revision, contents);
    this.repos.set(repo, entry);
  }

  file(repo, path, revision = "main") {
    return this.repos.get(repo).revisions.get(revision).get(path);
  }

  /** The Hub announces this sha256 for the file instead of the right one. */
  announceWrongChecksum(repo, path) {
    this.file(repo, path).announcedSha256 = sha256(Buffer.from("something else"));
  }

  cutConnection(repo, path, after, times = 1) {
    this.cuts.set(this.file(repo, path).sha256, { after, times });
  }

  requestsTo(server, pathPart = "") {
    return this.requests.filter((r) => r.server === server && r.url.includes(pathPart));
  }

  async start() {
    this.hubServer = http.createServer((req, res) => this.serveHub(req, res));
    this.cdnServer = http.createServer((req, res) => this.serveCdn(req, res));
    await Promise.all([this.hubServer, this.cdnServer].map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", ok))));
    this.endpoint = `http://127.0.0.1:${this.hubServer.address().port}`;
    this.cdn = `http://127.0.0.1:${this.cdnServer.address().port}`;
  }

  async stop() {
    for (const s of [this.hubServer, this.cdnServer]) s.closeAllConnections();
    await Promise.all([this.hubServer, this.cdnServer].map((s) => new Promise((ok) => s.close(ok))));
  }

  log(server, req) {
    this.requests.push({ server, method: req.method, url: req.url, range: req.headers.range, authorization: req.headers.authorization });
  }

  serveHub(req, res) {
    this.log("hub", req);
    const url = new URL(req.url, this.endpoint);
    const plain = /^\/plain\/(.+)$/.exec(url.pathname);
    if (plain) {
      const content = this.plain.get(plain[1]);
      return content ? sendContent(req, res, content, { ETag: `"${sha256(content).slice(0, 16)}"` }) : error(res, 404, "NotFound", "no such file");
    }
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    if (tree) return this.serveTree(req, res, tree[1], decodeURIComponent(tree[2]), Number(url.searchParams.get("cursor") ?? 0));
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!resolve) return error(res, 404, undefined, "not a Hub URL");
    const [, repo, revision, path] = resolve;
    if (this.renamed.has(repo)) {
      res.writeHead(307, { Location: `/${this.renamed.get(repo)}/resolve/${revision}/${path}` });
      return res.end();
    }
    const files = this.revisionFiles(req, res, repo, decodeURIComponent(revision));
    if (!files) return;
    const file = files.get(path.split("/").map(decodeURIComponent).join("/"));
    if (!file) return error(res, 404, "EntryNotFound", "Entry not found");
    const headers = { "X-Repo-Commit": this.repos.get(repo).commit };
    if (!file.lfs) return sendContent(req, res, file.content, { ...headers, ETag: `"${gitBlobId(file.content)}"` });
    res.writeHead(302, {
      ...headers,
      Location: `${this.cdn}/blobs/${file.sha256}?signature=fake`,
      ETag: `"${file.announcedSha256}"`,
      "X-Linked-Etag": `"${file.announcedSha256}"`,
      "X-Linked-Size": String(file.content.length),
      "Content-Length": "0",
    });
    res.end();
  }

  /** The files of a revision, or undefined after answering 401/404 as the Hub does. */
  revisionFiles(req, res, repo, revision) {
    const entry = this.repos.get(repo);
    if (!entry) return error(res, 404, "RepoNotFound", "Repository not found");
    if (entry.token !== undefined && req.headers.authorization !== `Bearer ${entry.token}`) {
      const message = req.headers.authorization ? "Invalid credentials in Authorization header" : "Repository not found";
      return error(res, 401, "RepoNotFound", message);
    }
    const files = entry.revisions.get(revision);
    if (!files) return error(res, 404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    return files;
  }

  serveTree(req, res, repo, revision, cursor) {
    const files = this.revisionFiles(req, res, repo, revision);
    if (!files) return;
    const entries = [];
    const dirs = new Set();
    for (const [path, file] of files) {
      const slash = path.indexOf("/");
      if (slash >= 0) {
        dirs.add(path.slice(0, slash));
        continue;
      }
      const entry = { type: "file", oid: gitBlobId(file.content), size: file.content.length, path };
      if (file.lfs) entry.lfs = { oid: file.sha256, size: file.content.length, pointerSize: 134 };
      entries.push(entry);
    }
    for (const dir of dirs) entries.push({ type: "directory", oid: "0".repeat(40), size: 0, path: dir });
    const page = entries.slice(cursor, cursor + TREE_PAGE);
    const headers = { "Content-Type": "application/json" };
    if (cursor + TREE_PAGE < entries.length) {
      headers.Link = `<${this.endpoint}/api/models/${repo}/tree/${encodeURIComponent(revision)}?cursor=${cursor + TREE_PAGE}>; rel="next"`;
    }
    res.writeHead(200, headers);
    res.end(JSON.stringify(page));
  }

  serveCdn(req, res) {
    this.log("cdn", req);
    const blob = /^\/blobs\/([0-9a-f]{64})$/.exec(new URL(req.url, this.cdn).pathname);
    const content = blob && this.blob(blob[1]);
    if (!content) return error(res, 404, undefined, "no such blob");
    const cut = this.cuts.get(blob[1]);
    let cutAfter;
    if (cut && req.method === "GET" && cut.times > 0) {
      cut.times--;
      cutAfter = cut.after;
    }
    sendContent(req, res, content, { ETag: `"cdn-${blob[1].slice(0, 12)}"` }, cutAfter);
  }

  blob(sha) {
    for (const entry of this.repos.values()) {
      for (const files of entry.revisions.values()) for (const file of files.values()) if (file.sha256 === sha) return file.content;
    }
    return undefined;
  }
}

function error(res, status, code, message) {
  const headers = { "X-Error-Message": message };
  if (code) headers["X-Error-Code"] = code;
  res.writeHead(status, headers);
  res.end(message);
  return undefined;
}

/** Answers with the content or the asked Range of it; `cutAfter` bytes into the body, the connection drops. */
function sendContent(req, res, content, headers, cutAfter) {
  let start = 0;
  let end = content.length - 1;
  let status = 200;
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  if (range) {
    start = Number(range[1]);
    if (range[2]) end = Math.min(Number(range[2]), end);
    if (start >= content.length) {
      res.writeHead(416, { "Content-Range": `bytes */${content.length}` });
      return res.end();
    }
    status = 206;
    headers = { ...headers, "Content-Range": `bytes ${start}-${end}/${content.length}` };
  }
  const body = content.subarray(start, end + 1);
  res.writeHead(status, { ...headers, "Accept-Ranges": "bytes", "Content-Length": String(body.length) });
  if (req.method === "HEAD") return res.end();
  if (cutAfter !== undefined) return res.write(body.subarray(0, cutAfter), () => res.socket.destroy());
  res.end(body);
}

module.exports = { FakeHub, sha256 };
