/**
 * Renders untrusted chat templates (a model's own, from its files) outside this process, with bounds: a time budget
 * enforced from outside the render, a heap and a stack of fixed size, and a cap on the output's length. A runaway
 * template (an endless loop, a huge range or join, strings or lists that double, recursion through macros) costs at
 * most the budget and becomes an error; this process goes on.
 *
 * Rendering stays synchronous for the caller: the main thread posts the job and sleeps on a shared word with
 * Atomics.wait until the answer is in. The renderer (sandbox-renderer.ts) is a child process with a small heap, which
 * keeps compiled templates between renders. A process, not a worker thread: a worker's heap limit is only checked
 * between allocations, so one large allocation (an array or string doubling) aborts the whole process, while a child
 * that runs out of heap dies alone. The supervisor (sandbox-supervisor.ts), a worker thread, owns the child: its event
 * loop is free while the render runs, so it times the render, kills a child that runs past its budget and sees one
 * die, none of which the sleeping main thread could do. Both start at the first render and are unref'd, so they
 * never keep a process alive.
 */
import * as nodePath from "node:path";
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import type { ChatTemplateBound } from "../errors";
import type { ChatTemplateLimits } from "./limits";

/** The rendering process's stack (V8's default, made explicit): deep recursion ends at this, as a "stack" bound. */
export const RENDERER_STACK_KB = 984;

export interface RenderJob {
  id: number;
  /** The template's source: the renderer compiles it once and keeps it for later jobs. */
  source: string;
  variables: Record<string, unknown>;
  limits: ChatTemplateLimits;
}

/**
 * What a job ends in: the text, the template's own error (raise_exception, a type error), a bound it passed, or a
 * failure of the sandbox itself (the renderer could not start, or was killed from outside).
 */
export type RenderOutcome =
  | { id: number; text: string }
  | { id: number; error: string }
  | { id: number; exceeded: ChatTemplateBound }
  | { id: number; failure: string };

/** The renderer's note that it has the job: the supervisor's clock for the time budget starts here. */
export interface RenderStarted {
  id: number;
  started: true;
}

/** The supervisor's worker data: the word the main thread sleeps on, and the port the outcomes arrive on. */
export interface SupervisorData {
  signal: Int32Array;
  results: MessagePort;
}

/**
 * Starting the supervisor and the renderer and loading the template engine can take a while on a loaded machine;
 * it is not the template's time. Past the budget plus this, the supervisor itself is taken to be stuck.
 */
const STARTUP_ALLOWANCE_MS = 30_000;

class Sandbox {
  private readonly signal = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  private readonly results: MessagePort;
  private readonly supervisor: Worker;
  private lastId = 0;
  /** Set when the supervisor did not answer and was terminated: the next render needs a new sandbox. */
  broken = false;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.results = port1;
    const workerData: SupervisorData = { signal: this.signal, results: port2 };
    // No execArgv: the host's flags (--test, loaders, heap sizes) are not for these scripts.
    this.supervisor = new Worker(nodePath.join(__dirname, "sandbox-supervisor.js"), { workerData, transferList: [port2], execArgv: [] });
    this.supervisor.unref();
  }

  /** The job's outcome; a supervisor that does not answer in time counts as the time budget passed. */
  render(source: string, variables: Record<string, unknown>, limits: ChatTemplateLimits): RenderOutcome {
    const id = ++this.lastId;
    const job: RenderJob = { id, source, variables, limits };
    this.supervisor.postMessage(job);
    const deadline = performance.now() + limits.timeMs + STARTUP_ALLOWANCE_MS;
    for (;;) {
      // Jobs run one at a time and a sandbox that gave up on one is replaced: what arrives is this job's outcome.
      const outcome = receiveMessageOnPort(this.results)?.message as RenderOutcome | undefined;
      if (outcome !== undefined) return outcome;
      const left = deadline - performance.now();
      if (left <= 0) {
        this.broken = true;
        void this.supervisor.terminate();
        return { id, exceeded: "time" };
      }
      Atomics.wait(this.signal, 0, 0, left);
      Atomics.store(this.signal, 0, 0);
    }
  }
}

let sandbox: Sandbox | undefined;

/** Renders `source` with `variables` within `limits`, in the process's sandbox (started at the first render). */
export function renderInSandbox(source: string, variables: Record<string, unknown>, limits: ChatTemplateLimits): RenderOutcome {
  if (sandbox === undefined || sandbox.broken) sandbox = new Sandbox();
  return sandbox.render(source, variables, limits);
}
