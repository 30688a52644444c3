/** `llama-napi build-op SRC.c [-o OUT.so]`: compiles a custom op library against the bundled llama_napi_ops.h. */
import { buildOp } from "../custom-ops";
import { type CommandSpec, parseCommand } from "./args";

export const buildOpCommand: CommandSpec = {
  name: "build-op",
  summary: "Compile a custom op library (C with the system cc, CUDA .cu with nvcc) for --custom-ops-path.",
  usage: "llama-napi build-op SRC.c|SRC.cu [-o OUT.so]",
  positionals: ["source"],
  options: {
    output: { type: "string", short: "o", placeholder: "PATH", description: "The library to write (default: SRC with .so)" },
  },
};

export async function buildOpMain(argv: string[]): Promise<number> {
  const o = parseCommand(buildOpCommand, argv);
  const library = await buildOp(o.source as string, { output: o.output as string | undefined });
  process.stdout.write(`${library}\n`);
  return 0;
}
