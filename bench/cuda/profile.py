#!/usr/bin/env python3
"""Sums an ncu CSV of decode steps (run.sh --profile) per kernel: launches and microseconds per step, DRAM bytes
read and the rate, largest first. Only whole steps count: the kernels after the first top-k or argmax kernel (which ends a
step) up to the last one.
Usage: profile.py FILE.csv"""
import csv
import re
import sys
from collections import defaultdict

NS = {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}
BYTES = {"byte": 1, "Kbyte": 1e3, "KB": 1e3, "Mbyte": 1e6, "MB": 1e6, "Gbyte": 1e9, "GB": 1e9}

launches = defaultdict(dict)  # ID -> name, ns, bytes
for row in csv.DictReader(line for line in open(sys.argv[1]) if line.startswith('"')):
    launch = launches[int(row["ID"])]
    name = re.sub(r"\(.*", "", row["Kernel Name"])  # drop the argument list
    name = re.sub(r"^(void )?(\(anonymous namespace\)::|<unnamed>::)?", "", name)
    launch["name"] = f"{name} {row['Grid Size']}"  # the grid tells a layer's products apart
    value = float(row["Metric Value"].replace(",", ""))
    if row["Metric Name"] == "gpu__time_duration.sum":
        launch["ns"] = value * NS[row["Metric Unit"]]
    elif row["Metric Name"] == "dram__bytes_read.sum":
        launch["bytes"] = value * BYTES[row["Metric Unit"]]
ends = [i for i in sorted(launches) if launches[i]["name"].startswith(("top_k", "argmax"))]
if len(ends) < 2:
    sys.exit(f"{len(ends)} top-k or argmax kernels in the profile: not one whole decode step")
steps = len(ends) - 1
kernels = defaultdict(lambda: {"launches": 0, "ns": 0.0, "bytes": 0.0})
for i in sorted(launches):
    if ends[0] < i <= ends[-1]:
        k = kernels[launches[i]["name"]]
        k["launches"] += 1
        k["ns"] += launches[i].get("ns", 0)
        k["bytes"] += launches[i].get("bytes", 0)
total_ns = sum(k["ns"] for k in kernels.values())
print(f"{steps} whole decode steps; per step: {sum(k['launches'] for k in kernels.values()) / steps:.0f} kernels, "
      f"{total_ns / steps / 1e3:.1f} us of kernel time (ncu runs them one at a time: no gaps, no overlap)")
print("| kernel | launches / step | us / step | us / launch | share | DRAM read MB / step | GB/s |")
print("|---|---|---|---|---|---|---|")
for name, k in sorted(kernels.items(), key=lambda item: -item[1]["ns"]):
    rate = k["bytes"] / k["ns"] if k["ns"] else 0
    print(f"| {name[:90]} | {k['launches'] / steps:.0f} | {k['ns'] / steps / 1e3:.1f} | {k['ns'] / k['launches'] / 1e3:.1f} | "
          f"{100 * k['ns'] / total_ns:.1f}% | {k['bytes'] / steps / 1e6:.1f} | {rate:.0f} |")
