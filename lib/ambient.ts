/// <reference lib="esnext.disposable" preserve="true" />
// What the package's type declarations need beyond ES2022, so that they compile in a project that has neither the
// DOM nor @types/node typings (lib ["es2022"], skipLibCheck false). The lib reference brings Symbol.asyncDispose,
// Symbol.dispose and AsyncDisposable (TypeScript 5.2 or newer). AbortSignal, which the options name, comes from the
// DOM or Node typings where a project has them; this empty declaration merges with theirs, and stands alone where it
// has neither.
declare global {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface AbortSignal {}
}
export {};
