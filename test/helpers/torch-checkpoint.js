"use strict";
// A minimal torch.save writer: a pickle of a state dict and a stored ZIP, for tests and the fuzz harness.

function str(s) {
  const b = Buffer.from(s, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(b.length);
  return Buffer.concat([Buffer.from("X"), len, b]);
}
function int(n) {
  const b = Buffer.alloc(5);
  b.write("J");
  b.writeInt32LE(n, 1);
  return b;
}
const op = (s) => Buffer.from(s, "latin1");
const tuple = (items) => Buffer.concat([op("("), ...items, op("t")]);
const global = (module, name) => op(`c${module}\n${name}\n`);

/** tensors: { name, key, storageClass?, numel, offset?, shape, stride? } */
function statePickle(tensors, { rebuild = ["torch._utils", "_rebuild_tensor_v2"] } = {}) {
  const parts = [op("\x80\x02}(")];
  for (const t of tensors) {
    const stride = t.stride ?? t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    parts.push(
      str(t.name), global(...rebuild),
      op("("),
      tuple([str("storage"), global("torch", t.storageClass ?? "FloatStorage"), str(t.key), str("cpu"), int(t.numel)]), op("Q"),
      int(t.offset ?? 0), tuple(t.shape.map(int)), tuple(stride.map(int)), op("\x89"),
      global("collections", "OrderedDict"), op(")R"),
      op("t"), op("R"),
    );
  }
  parts.push(op("u."));
  return Buffer.concat(parts);
}

/** A stored ZIP (CRCs left 0: the reader does not check them); entries: [name, data, method?]. */
function zip(entries) {
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const [name, data, method = 0] of entries) {
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    centrals.push(central, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

module.exports = { statePickle, zip, op, str, tuple, global };
