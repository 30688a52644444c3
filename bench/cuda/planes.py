#!/usr/bin/env python3
"""Byte planes: bf16 weights compress poorly as they are (their low bytes are noise), but their high bytes (sign,
exponent) compress well once apart. `split FILE OUT` writes OUT.even.xz and OUT.odd.xz; `join OUT FILE` restores
FILE. Used to fit the trained reference models into the device machine's 64 MiB transfer (bench/cuda/pack.sh)."""
import lzma
import sys


def split(path, out):
    data = open(path, "rb").read()
    for name, plane in (("even", data[0::2]), ("odd", data[1::2])):
        with open(f"{out}.{name}.xz", "wb") as f:
            f.write(lzma.compress(plane, preset=9 | lzma.PRESET_EXTREME))


def join(out, path):
    even = lzma.decompress(open(f"{out}.even.xz", "rb").read())
    odd = lzma.decompress(open(f"{out}.odd.xz", "rb").read())
    data = bytearray(len(even) + len(odd))
    data[0::2] = even
    data[1::2] = odd
    open(path, "wb").write(data)


if __name__ == "__main__":
    {"split": split, "join": join}[sys.argv[1]](sys.argv[2], sys.argv[3])
