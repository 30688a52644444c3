/**
 * torch.save checkpoints (the ZIP format of PyTorch ≥ 1.6) holding a state dict: `<archive>/data.pkl` names each
 * tensor's storage, which lives uncompressed in `<archive>/data/<key>`. Each tensor's absolute file range is
 * computed without reading its data.
 */
import { ModelFormatError, UnsupportedModelError } from "../errors";
import { BinaryFile } from "./binary-file";
import { PickleCallable, unpickle } from "./pickle";
import { readZipEntries, storedEntryRange, type ZipEntry } from "./zip";

export interface TorchTensor {
  name: string;
  /** "bf16", "f16", "f32", or another torch dtype name ("f64", "i64", ...). */
  dtype: string;
  shape: number[];
  /** Absolute byte offset in the checkpoint file. */
  offset: number;
  byteLength: number;
}

/** torch's legacy typed storage classes → element type and size. */
const STORAGE_TYPES: Record<string, { dtype: string; bytes: number }> = {
  "torch.FloatStorage": { dtype: "f32", bytes: 4 },
  "torch.HalfStorage": { dtype: "f16", bytes: 2 },
  "torch.BFloat16Storage": { dtype: "bf16", bytes: 2 },
  "torch.DoubleStorage": { dtype: "f64", bytes: 8 },
  "torch.LongStorage": { dtype: "i64", bytes: 8 },
  "torch.IntStorage": { dtype: "i32", bytes: 4 },
  "torch.ShortStorage": { dtype: "i16", bytes: 2 },
  "torch.CharStorage": { dtype: "i8", bytes: 1 },
  "torch.ByteStorage": { dtype: "u8", bytes: 1 },
  "torch.BoolStorage": { dtype: "bool", bytes: 1 },
};

interface Storage {
  type: { dtype: string; bytes: number };
  offset: number;
  length: number;
}

/** A tensor as _rebuild_tensor_v2 describes it, before it is given a name. */
class TensorRecord {
  constructor(
    readonly storage: Storage,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly strides: number[],
  ) {}
}

function isIndex(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Reads the tensor layout of a torch.save ZIP checkpoint holding a (possibly nested) dict of tensors. */
export function readTorchCheckpoint(path: string): TorchTensor[] {
  return BinaryFile.with(path, (file) => {
    const fail = (what: string): never => {
      throw new ModelFormatError(`${path}: ${what}`);
    };
    const entries = readZipEntries(file);
    if (!entries) {
      const head = file.read(0, Math.min(2, file.size), "start");
      if (head[0] === 0x80) throw new UnsupportedModelError(`${path}: legacy (pre-1.6, non-ZIP) torch.save format is not supported`);
      return fail("not a torch.save checkpoint (not a ZIP archive)");
    }
    const pickleEntry = [...entries.values()].find((e) => /^[^/]+\/data\.pkl$/.test(e.name)) ?? fail("has no <archive>/data.pkl");
    const archive = pickleEntry.name.slice(0, -"data.pkl".length);
    const pickleRange = storedEntryRange(file, pickleEntry);
    const pickle = file.read(pickleRange.offset, pickleRange.length, "data.pkl");

    const storage = (pid: unknown): Storage => {
      // ('storage', storage_type, key, location, numel)
      if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage") return fail(`data.pkl: persistent id ${String(pid)} is not a storage`);
      const [, storageClass, key, , numel] = pid;
      const type = storageClass instanceof PickleCallable ? STORAGE_TYPES[storageClass.name] : undefined;
      if (!type) return fail(`data.pkl: storage type ${String(storageClass)} is not a storage class`);
      if (typeof key !== "string" || !isIndex(numel)) return fail("data.pkl: storage key or size is malformed");
      const entry: ZipEntry = entries.get(`${archive}data/${key}`) ?? fail(`storage ${key} is missing (no ${archive}data/${key})`);
      const range = storedEntryRange(file, entry);
      if (range.length !== numel * type.bytes) return fail(`storage ${key} holds ${range.length} bytes, expected ${numel} × ${type.bytes}`);
      return { type, offset: range.offset, length: range.length };
    };

    // (func, new_type, args, state), for tensor subclasses: rebuild with func and keep the plain tensor.
    const rebuildFromType = ([func, , args]: unknown[]) =>
      func instanceof PickleCallable && Array.isArray(args) ? func.call(args) : fail("data.pkl: malformed _rebuild_from_type_v2");
    const globals = new Map<string, (args: unknown[]) => unknown>([
      ["collections.OrderedDict", () => new Map()],
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      ["torch._utils._rebuild_tensor_v2", ([s, offset, shape, strides]) => {
        if (!isIndex(offset) || !Array.isArray(shape) || !shape.every(isIndex) || !Array.isArray(strides) || !strides.every(isIndex)) {
          return fail("data.pkl: a tensor's offset, size or stride is malformed");
        }
        return new TensorRecord(s as Storage, offset, shape, strides);
      }],
      // nn.Parameter(data, requires_grad, backward_hooks): the data is what matters.
      ["torch._utils._rebuild_parameter", ([data]) => data],
      ["torch._tensor._rebuild_from_type_v2", rebuildFromType],
      ["torch._utils._rebuild_from_type_v2", rebuildFromType],
      // Storage classes only appear inside persistent ids, which name them; they are never called.
      ...Object.keys(STORAGE_TYPES).map((name): [string, () => never] => [name, () => fail(`data.pkl calls ${name}`)]),
    ]);
    const root = unpickle(pickle, { source: `${path} (${pickleEntry.name})`, globals, persistentLoad: storage });
    if (!(root instanceof Map)) return fail("data.pkl does not hold a dict of tensors");

    const tensors: TorchTensor[] = [];
    const collect = (dict: Map<unknown, unknown>, prefix: string) => {
      for (const [key, value] of dict) {
        const name = prefix + String(key);
        if (value instanceof Map) collect(value, `${name}.`);
        else if (value instanceof TensorRecord) tensors.push(tensorRange(path, name, value));
      }
    };
    collect(root, "");
    return tensors;
  });
}

/** The byte range of a contiguous row-major tensor inside its storage. */
function tensorRange(path: string, name: string, t: TensorRecord): TorchTensor {
  if (t.shape.length !== t.strides.length) throw new ModelFormatError(`${path}: tensor ${name} has ${t.shape.length} sizes but ${t.strides.length} strides`);
  let expected = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    // A size-1 dimension's stride is irrelevant, as in torch's own contiguity check.
    if (t.shape[i] !== 1 && t.strides[i] !== expected) {
      throw new ModelFormatError(`${path}: tensor ${name} is not contiguous (size [${t.shape}], stride [${t.strides}]); save it with .contiguous()`);
    }
    expected *= t.shape[i];
  }
  const elementBytes = t.storage.type.bytes;
  const offset = t.storageOffset * elementBytes;
  const byteLength = expected * elementBytes;
  if (offset + byteLength > t.storage.length) {
    throw new ModelFormatError(`${path}: tensor ${name} reaches past the end of its storage`);
  }
  return { name, dtype: t.storage.type.dtype, shape: t.shape, offset: t.storage.offset + offset, byteLength };
}
