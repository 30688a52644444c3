/**
 * The chat-template sandbox's renderer process (see sandbox.ts), started by the supervisor with a small heap and a
 * fixed stack: compiles each template once, renders jobs, and reports a render that overflowed the stack, made a
 * value too long for V8 or wrote more text than allowed as the bound it passed. Its time and its heap are watched
 * from outside: the supervisor kills it, or V8 aborts it.
 */
import { Template } from "@huggingface/jinja";
import type { RenderJob, RenderOutcome, RenderStarted } from "./sandbox";

/** Compiled templates by source; a process holds a model or a few, so a handful of entries covers it. */
const compiled = new Map<string, Template>();
const MAX_COMPILED = 8;

function compile(source: string): Template {
  let template = compiled.get(source);
  if (template === undefined) {
    template = new Template(source);
    if (compiled.size === MAX_COMPILED) compiled.delete(compiled.keys().next().value!);
    compiled.set(source, template);
  }
  return template;
}

function render(job: RenderJob): RenderOutcome {
  try {
    const text = compile(job.source).render(job.variables);
    return text.length > job.limits.outputChars ? { id: job.id, exceeded: "output" } : { id: job.id, text };
  } catch (err) {
    // The engine throws no RangeError of its own: these are V8's limits (the stack, a string or array's length).
    if (err instanceof RangeError) return { id: job.id, exceeded: /call stack/.test(err.message) ? "stack" : "memory" };
    return { id: job.id, error: (err as Error).message };
  }
}

process.on("message", (job: RenderJob) => {
  const started: RenderStarted = { id: job.id, started: true };
  process.send!(started);
  process.send!(render(job));
});
// The supervisor went away (its process exited): nothing is left to render for.
process.on("disconnect", () => process.exit(0));
