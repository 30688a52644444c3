import { LlamaNapiError } from "../errors";

/**
 * A model could not be fetched: the network is unreachable, the server answered with an error (`status`), the
 * bytes did not match the server's size or checksum, or offline mode forbids fetching what the cache lacks.
 */
export class DownloadError extends LlamaNapiError {
  override name = "DownloadError";
  /** The HTTP status, when the server answered with an error. */
  readonly status: number | undefined;
  /** A dropped connection or a server-side failure (5xx, 429) that may pass on retry. */
  readonly transient: boolean;

  constructor(message: string, options: { status?: number; transient?: boolean; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.status = options.status;
    this.transient = options.transient ?? false;
  }
}
