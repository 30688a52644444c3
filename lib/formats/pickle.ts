/**
 * A safe unpickler for the pickles torch.save writes (protocols 2-5). It runs no code: GLOBAL / STACK_GLOBAL
 * resolve only names on the caller's allow-list, and REDUCE / NEWOBJ call only those.
 * Values: None → null, int → number (bigint beyond 2^53), str → string, bytes → Uint8Array, tuple and list →
 * array, dict → Map, set → Set.
 */
import { ModelFormatError, UnsupportedModelError } from "../errors";

/** An allowed global: what REDUCE or NEWOBJ of it builds from its positional arguments. */
export class PickleCallable {
  constructor(
    readonly name: string,
    readonly call: (args: unknown[]) => unknown,
  ) {}
}

export interface UnpickleOptions {
  /** The file it came from, for messages. */
  source: string;
  /** "module.name" → what calling it builds. Any other global is refused. */
  globals: ReadonlyMap<string, (args: unknown[]) => unknown>;
  /** Resolves a persistent id (BINPERSID). */
  persistentLoad(pid: unknown): unknown;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** A module or attribute path as GLOBAL writes it: dotted Python identifiers. */
const PYTHON_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

function integer(v: bigint): number | bigint {
  return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v;
}

/** Little-endian two's complement of `bytes`. */
function signedLittleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  if (bytes.length > 0 && bytes[bytes.length - 1] & 0x80) v -= 1n << BigInt(bytes.length * 8);
  return v;
}

export function unpickle(data: Uint8Array, options: UnpickleOptions): unknown {
  const { source } = options;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (what: string): never => {
    throw new ModelFormatError(`${source}: pickle ${what} (at byte ${pos})`);
  };
  const need = (n: number): number => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.length) fail("is truncated");
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => data[need(1)];
  const u16 = () => view.getUint16(need(2), true);
  const u32 = () => view.getUint32(need(4), true);
  const u64 = () => {
    const v = view.getBigUint64(need(8), true);
    return v > MAX_SAFE ? fail(`length ${v} is too large`) : Number(v);
  };
  const bytes = (n: number) => data.subarray(need(n), pos);
  const utf8 = (n: number) => {
    try {
      return decoder.decode(bytes(n));
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail("is truncated (a line has no end)");
    return Buffer.from(bytes(end - pos + 1).subarray(0, -1)).toString("latin1");
  };
  const pop = (): unknown => (stack.length > 0 ? stack.pop() : fail("stack underflow"));
  const top = (): unknown => (stack.length > 0 ? stack[stack.length - 1] : fail("stack underflow"));
  const popMark = (): unknown[] => {
    const items = stack;
    stack = marks.pop() ?? fail("has no MARK to pop to");
    return items;
  };
  const resolveGlobal = (module: string, name: string): PickleCallable => {
    const full = `${module}.${name}`;
    // Not a dotted Python name: corrupt bytes, not a global to refuse (and not text to put in a message as it is).
    if (!PYTHON_NAME.test(module) || !PYTHON_NAME.test(name)) fail(`names a global that is not a Python name: ${JSON.stringify(full.slice(0, 80))}`);
    const call = options.globals.get(full);
    if (!call) {
      throw new UnsupportedModelError(`${source}: pickle refers to ${full}, which is not on the allow-list of torch.save globals (no code from a checkpoint is run)`);
    }
    return new PickleCallable(full, call);
  };
  const callable = (v: unknown): PickleCallable => (v instanceof PickleCallable ? v : fail("calls something that is not a global"));
  const asMap = (v: unknown): Map<unknown, unknown> => (v instanceof Map ? v : fail("sets items on something that is not a dict"));
  const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : fail("appends to something that is not a list"));
  const setItems = (target: Map<unknown, unknown>, items: unknown[]) => {
    if (items.length % 2 !== 0) fail("SETITEMS has an odd number of items");
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const memoGet = (key: number) => (memo.has(key) ? memo.get(key) : fail(`memo key ${key} is not set`));

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: u64(); break; // FRAME (a read-ahead hint)
      case 0x2e: return pop(); // STOP
      case 0x28: marks.push(stack); stack = []; break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push(view.getInt32(need(4), true)); break; // BININT
      case 0x8a: stack.push(integer(signedLittleEndian(bytes(u8())))); break; // LONG1
      case 0x8b: stack.push(integer(signedLittleEndian(bytes(u32())))); break; // LONG4
      case 0x47: stack.push(view.getFloat64(need(8), false)); break; // BINFLOAT (big-endian)
      case 0x58: stack.push(utf8(u32())); break; // BINUNICODE
      case 0x8c: stack.push(utf8(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(u64())); break; // BINUNICODE8
      case 0x55: stack.push(Buffer.from(bytes(u8())).toString("latin1")); break; // SHORT_BINSTRING
      case 0x54: stack.push(Buffer.from(bytes(u32())).toString("latin1")); break; // BINSTRING
      case 0x43: stack.push(bytes(u8())); break; // SHORT_BINBYTES
      case 0x42: stack.push(bytes(u32())); break; // BINBYTES
      case 0x8e: stack.push(bytes(u64())); break; // BINBYTES8
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: stack.push(memoGet(u8())); break; // BINGET
      case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      // popMark() replaces `stack`: take its result before touching `stack` again.
      case 0x74: case 0x6c: { const items = popMark(); stack.push(items); break; } // TUPLE, LIST
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; } // TUPLE3
      case 0x64: { const m = new Map(); setItems(m, popMark()); stack.push(m); break; } // DICT
      case 0x61: { const v = pop(); asArray(top()).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); asArray(top()).push(...items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); asMap(top()).set(k, v); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(asMap(top()), items); break; } // SETITEMS
      case 0x90: { // ADDITEMS
        const items = popMark();
        const set = top();
        if (!(set instanceof Set)) fail("adds items to something that is not a set");
        for (const item of items) (set as Set<unknown>).add(item);
        break;
      }
      case 0x91: { const items = popMark(); stack.push(new Set(items)); break; } // FROZENSET
      case 0x63: { const module = line(); stack.push(resolveGlobal(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL operands are not strings");
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: case 0x81: { // REDUCE, NEWOBJ: callable(*args)
        const args = asArray(pop());
        stack.push(callable(pop()).call(args));
        break;
      }
      case 0x62: pop(); break; // BUILD: state of objects we model as plain values (e.g. a state dict's _metadata)
      case 0x51: stack.push(options.persistentLoad(pop())); break; // BINPERSID
      default:
        fail(`opcode 0x${op.toString(16)} is not supported`);
    }
  }
}
