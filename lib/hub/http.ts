/**
 * HTTP for downloads, on fetch: redirects are followed by hand so that the Hub token goes to the Hub's origin only
 * (never to the CDN it redirects to); a server that goes silent counts as a dropped connection; and failures become
 * DownloadErrors that name what was being fetched and say whether a retry may help.
 */
import { DownloadError } from "./errors";

export interface RequestContext {
  /** Names what is fetched in error messages: a spec such as hf:owner/repo/file.gguf, or a URL. */
  what: string;
  /** The Hub endpoint's origin: the only one that is sent `token`, and whose errors get Hub-specific hints. */
  hubOrigin: string;
  token: string | undefined;
  signal: AbortSignal | undefined;
}

const MAX_REDIRECTS = 10;
/** No headers, or no body bytes, for this long: the connection is treated as dropped. */
const STALL_MS = 30_000;
const TRANSIENT_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
/** Connection failures worth a retry; any other (DNS, refused, TLS) means the server cannot be reached. */
const TRANSIENT_CODES = new Set([
  "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT",
  "UND_ERR_SOCKET", "UND_ERR_CLOSED", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT",
]);

/** Aborts a request when the server goes silent; every sign of life restarts the timer. */
class Watchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor() {
    this.kick();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  kick(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.controller.abort(), STALL_MS).unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** A response at the end of its redirect chain. */
export class Exchange {
  /** @internal */
  constructor(
    readonly response: Response,
    /** The final URL. */
    readonly url: string,
    /** Every response of the chain, the final one last. */
    private readonly hops: Response[],
    private readonly watchdog: Watchdog,
    private readonly ctx: RequestContext,
  ) {}

  /** A header's first value along the redirect chain: the Hub sets X-Linked-* on its redirect, not the CDN on its answer. */
  chainHeader(name: string): string | undefined {
    for (const hop of this.hops) {
      const value = hop.headers.get(name);
      if (value !== null) return value;
    }
    return undefined;
  }

  /** Throws the DownloadError that an error status means (and ends the exchange). */
  assertOk(): void {
    if (this.response.ok) return;
    this.close();
    throw statusError(this.response, this.url, this.ctx);
  }

  /** The body, chunk by chunk; a connection that drops or stalls throws a transient DownloadError. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of this.response.body ?? []) {
        this.watchdog.kick();
        yield chunk;
      }
    } catch (err) {
      throw networkError(err, this.url, this.ctx, this.watchdog);
    } finally {
      this.watchdog.stop();
    }
  }

  async json(): Promise<unknown> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.chunks()) chunks.push(chunk);
    try {
      return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      throw new DownloadError(`${this.ctx.what}: ${this.url} did not answer with JSON`);
    }
  }

  /** Ends the exchange without reading the body. */
  close(): void {
    this.watchdog.stop();
    this.response.body?.cancel().catch(() => {});
  }
}

export async function request(url: string, method: "GET" | "HEAD", ctx: RequestContext, headers: Record<string, string> = {}): Promise<Exchange> {
  const watchdog = new Watchdog();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, watchdog.signal]) : watchdog.signal;
  const hops: Response[] = [];
  let current = url;
  try {
    for (;;) {
      const response = await fetch(current, {
        method,
        redirect: "manual",
        signal,
        // identity: Range offsets and Content-Length must count the file's own bytes, not a compressed form.
        headers: { ...headers, "accept-encoding": "identity", ...authorization(current, ctx) },
      });
      hops.push(response);
      const location = response.headers.get("location");
      if (response.status < 300 || response.status >= 400 || location === null) {
        watchdog.kick();
        return new Exchange(response, current, hops, watchdog, ctx);
      }
      response.body?.cancel().catch(() => {});
      if (hops.length > MAX_REDIRECTS) throw new DownloadError(`${ctx.what}: more than ${MAX_REDIRECTS} redirects (the last to ${location})`);
      current = new URL(location, current).href;
    }
  } catch (err) {
    watchdog.stop();
    throw networkError(err, current, ctx, watchdog);
  }
}

function authorization(url: string, ctx: RequestContext): Record<string, string> {
  return ctx.token && new URL(url).origin === ctx.hubOrigin ? { authorization: `Bearer ${ctx.token}` } : {};
}

function errorCode(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: string; errors?: { code?: string }[] } }).cause;
  return cause?.code ?? cause?.errors?.[0]?.code ?? (err as { code?: string }).code;
}

/** The caller's abort passes through as is; a stall or a dropped connection is transient; anything else is "cannot reach". */
function networkError(err: unknown, url: string, ctx: RequestContext, watchdog: Watchdog): unknown {
  if (err instanceof DownloadError) return err;
  if (ctx.signal?.aborted) return ctx.signal.reason;
  const host = new URL(url).host;
  if (watchdog.signal.aborted) {
    return new DownloadError(`${ctx.what}: ${host} sent nothing for ${STALL_MS / 1000} s`, { transient: true, cause: err });
  }
  const code = errorCode(err);
  if (code !== undefined && TRANSIENT_CODES.has(code)) {
    return new DownloadError(`${ctx.what}: the connection to ${host} dropped (${code})`, { transient: true, cause: err });
  }
  const reason = code ?? (err as Error).message;
  return new DownloadError(`${ctx.what}: cannot reach ${host} (${reason}); check the network connection`, { cause: err });
}

function statusError(response: Response, url: string, ctx: RequestContext): DownloadError {
  const { status } = response;
  const serverMessage = response.headers.get("x-error-message");
  const detail = `${status} ${response.statusText}${serverMessage ? `: ${serverMessage}` : ""}`;
  const fromHub = new URL(url).origin === ctx.hubOrigin;
  let message = `${ctx.what}: ${status === 404 ? "not found" : "refused"} (${detail})`;
  if (fromHub && status === 401) {
    message += ctx.token
      ? "; the token in HF_TOKEN was not accepted for this repository"
      : "; the repository is private, gated or does not exist: set HF_TOKEN to a Hugging Face access token that can read it";
  } else if (fromHub && status === 403 && response.headers.get("x-error-code") === "GatedRepo") {
    message += "; accept the model's conditions on its Hub page, with the account HF_TOKEN belongs to";
  }
  return new DownloadError(message, { status, transient: TRANSIENT_STATUSES.has(status) });
}
