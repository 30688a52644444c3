/**
 * Building custom op libraries: a C (or CUDA) source against the bundled native/include/llama_napi_ops.h, compiled
 * into the shared library that loadModel's customOps loads.
 */
import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import path from "node:path";
import { InvalidArgumentError, OpBuildError } from "./errors";
import { PACKAGE_ROOT } from "./native/binding";

/** The directory of llama_napi_ops.h, for a library's include path. */
export const CUSTOM_OPS_HEADER_DIR = path.join(PACKAGE_ROOT, "native", "include");

export interface BuildOpOptions {
  /** The library to write. Default: the source's path with its extension replaced by .so. */
  output?: string;
}

/** Each source extension's compiler and its flags for a position-independent shared library. */
const COMPILERS: Record<string, { command: string; what: string; flags: string[] }> = {
  ".c": { command: "cc", what: "the system C compiler", flags: ["-O2", "-shared", "-fPIC"] },
  ".cu": { command: "nvcc", what: "the CUDA compiler (nvcc, from the CUDA toolkit)", flags: ["-O2", "-shared", "-Xcompiler", "-fPIC"] },
};

/**
 * Compiles `source` (.c with the system `cc`, .cu with `nvcc`) into a shared library, with the bundled header's
 * directory on the include path; resolves with the library's absolute path. An InvalidArgumentError for a source
 * that is missing or of another kind; an OpBuildError when the compiler is missing or fails (its stderr in the
 * message).
 */
export async function buildOp(source: string, options: BuildOpOptions = {}): Promise<string> {
  if (typeof source !== "string" || source.length === 0) {
    throw new InvalidArgumentError(`buildOp: source must be the path of a .c or .cu file (got ${String(source)})`, { option: "source" });
  }
  const extension = path.extname(source);
  const compiler = COMPILERS[extension];
  if (!compiler) {
    throw new InvalidArgumentError(`${source}: an op library is built from a .c or .cu source (got "${extension}")`, { option: "source" });
  }
  const isFile = await stat(source).then((s) => s.isFile(), () => false);
  if (!isFile) throw new InvalidArgumentError(`${source}: no such source file`, { option: "source" });
  const output = path.resolve(options.output ?? source.slice(0, -extension.length) + ".so");
  const args = [...compiler.flags, "-I", CUSTOM_OPS_HEADER_DIR, "-o", output, source];
  const { code, stderr, spawnError } = await runCompiler(compiler.command, args);
  if (spawnError) {
    const missing = (spawnError as NodeJS.ErrnoException).code === "ENOENT";
    throw new OpBuildError(
      missing
        ? `cannot build ${source}: ${compiler.command} (${compiler.what}) is not on PATH`
        : `cannot build ${source}: ${compiler.command} did not start: ${spawnError.message}`,
      source, compiler.command, "", { cause: spawnError },
    );
  }
  if (code !== 0) {
    throw new OpBuildError(`${compiler.command} failed to build ${source} (exit code ${code}):\n${stderr.trimEnd()}`, source, compiler.command, stderr);
  }
  return output;
}

function runCompiler(command: string, args: string[]): Promise<{ code: number | null; stderr: string; spawnError?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    const chunks: Buffer[] = [];
    child.stderr.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("error", (spawnError) => resolve({ code: null, stderr: "", spawnError }));
    child.on("close", (code) => resolve({ code, stderr: Buffer.concat(chunks).toString("utf8") }));
  });
}
