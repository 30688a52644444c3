/**
 * The chat-template sandbox's supervisor thread (see sandbox.ts): runs each job in the renderer process, times it
 * from the renderer's start note, kills a renderer that runs past its time budget, notes one that died (V8 aborts a
 * process whose heap is exhausted), and answers the sleeping main thread: the outcome on the results port, then a
 * wake-up on the shared word. A renderer is reused for as long as it lives and its heap size is the one asked for.
 */
import { type ChildProcess, fork } from "node:child_process";
import * as nodePath from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { RENDERER_STACK_KB, type RenderJob, type RenderOutcome, type RenderStarted, type SupervisorData } from "./sandbox";

const { signal, results } = workerData as SupervisorData;

let renderer: { child: ChildProcess; memoryMb: number } | undefined;

function rendererFor(memoryMb: number): ChildProcess {
  if (renderer?.memoryMb !== memoryMb) {
    renderer?.child.kill("SIGKILL");
    const child = fork(nodePath.join(__dirname, "sandbox-renderer.js"), [], {
      execArgv: [`--max-old-space-size=${memoryMb}`, `--stack-size=${RENDERER_STACK_KB}`],
      // V8's report of an exhausted heap is the renderer's business, not the host's stderr.
      stdio: ["ignore", "ignore", "ignore", "ipc"],
      // The host's NODE_OPTIONS (preloaded modules, heap sizes) are not for this script.
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    renderer = { child, memoryMb };
    // A renderer that dies between jobs (killed from outside) is replaced at the next one.
    child.once("exit", () => {
      if (renderer?.child === child) renderer = undefined;
    });
  }
  return renderer.child;
}

function answer(outcome: RenderOutcome): void {
  results.postMessage(outcome);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

function run(job: RenderJob): void {
  const child = rendererFor(job.limits.memoryMb);
  let timer: NodeJS.Timeout | undefined;
  const settle = (outcome: RenderOutcome, rendererLost: boolean) => {
    clearTimeout(timer);
    child.off("message", onMessage).off("error", onError).off("exit", onExit);
    if (rendererLost && renderer?.child === child) renderer = undefined;
    answer(outcome);
  };
  const onMessage = (message: RenderOutcome | RenderStarted) => {
    if (message.id !== job.id) return;
    if (!("started" in message)) return settle(message, false);
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      settle({ id: job.id, exceeded: "time" }, true);
    }, job.limits.timeMs);
  };
  const onError = (err: Error) => settle({ id: job.id, failure: `the template renderer failed: ${err.message}` }, true);
  const onExit = (code: number | null, exitSignal: NodeJS.Signals | null) =>
    settle(
      exitSignal === "SIGABRT" ? { id: job.id, exceeded: "memory" } : { id: job.id, failure: `the template renderer exited (${exitSignal ?? `code ${code}`})` },
      true,
    );
  child.on("message", onMessage).on("error", onError).on("exit", onExit);
  child.send(job);
}

parentPort!.on("message", run);
