#!/usr/bin/env python3
"""Writes a linearizable faultline JSONL cas-register history of about SIZE_MB megabytes.

Used to measure what loading and checking a large history costs (peak RSS); the output is
not committed. Usage: scripts/gen-history.py SIZE_MB OUT.jsonl
"""
import json
import sys


def main():
    size_bytes = int(float(sys.argv[1]) * 1_000_000)
    out = open(sys.argv[2], "w")
    written = 0
    index = 0
    t = 0
    values = {}
    clients = 8
    keys = 5000
    op = 0
    while written < size_bytes:
        p = op % clients
        key = f"k{(op // clients) % keys}"
        if op % 3 == 0:
            f, v = "write", op
            values[key] = op
            done = v
        else:
            f, v = "read", None
            done = values.get(key)
        for kind, value in (("invoke", v), ("ok", done)):
            line = json.dumps({"index": index, "time": t, "process": p, "type": kind,
                               "f": f, "key": key, "value": value}, separators=(",", ":"))
            out.write(line + "\n")
            written += len(line) + 1
            index += 1
            t += 1000
        op += 1
    out.close()


if __name__ == "__main__":
    main()
