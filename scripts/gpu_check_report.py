#!/usr/bin/env python3
"""The Markdown report of scripts/gpu-check.sh, assembled from what its steps left in its work
directory:

  steps.tsv        one line per step: name, result (ok, FAIL, not checked), seconds, detail
  preflight.tsv    key, value: what the machine has (driver, glibc, tools, PyTorch, cuBLAS)
  torch-info.json  torch_bench.py info, when PyTorch is there
  ours.jsonl, torch.jsonl, rebuilt.jsonl   the benchmark cases: ours, PyTorch's, ours with the
                   kernels rebuilt on the machine
  res-embedded/NAME.txt, res-rebuilt/NAME.txt   cuobjdump --dump-resource-usage
  nvcc.log         the rebuild's ptxas -v lines (registers, spills)
  *.out, *.err     each step's output

  gpu_check_report.py --work DIR --out FILE [--meta KEY=VALUE]...

It writes FILE and DIR/result: PASS (every step ran and passed), FAIL (a step failed) or
INCOMPLETE (nothing failed, but a step or a target was not checked). A missed benchmark target
is reported, not a failure. Only the standard library is needed.
"""

import argparse
import datetime
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import bench_table, read_jsonl, summary_line  # noqa: E402

TAIL = 120  # lines of each log shown


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def jsonl(path):
    return read_jsonl(path) if os.path.exists(path) else []


def tail(text, n=TAIL):
    lines = text.rstrip().splitlines()
    if len(lines) > n:
        lines = ["… (%d lines above)" % (len(lines) - n)] + lines[-n:]
    return "\n".join(lines)


def code(text):
    return ["```", tail(text) or "(no output)", "```"]


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


RES_RE = re.compile(r"Function ([\w$]+):\s+REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")
PTXAS_RE = re.compile(r"Function properties for ([\w$]+)\s+(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def resources(directory):
    """{(module, kernel): (reg, stack, shared, local)} from cuobjdump files."""
    res = {}
    if not os.path.isdir(directory):
        return res
    for name in sorted(os.listdir(directory)):
        module = name.rsplit(".", 1)[0]
        for m in RES_RE.finditer(read(os.path.join(directory, name))):
            res[(module, m.group(1))] = tuple(int(x) for x in m.group(2, 3, 4, 5))
    return res


def spills(log):
    """{kernel: (stack, spill stores, spill loads)} from ptxas -v output."""
    return {m.group(1): tuple(int(x) for x in m.group(2, 3, 4)) for m in PTXAS_RE.finditer(log)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    args = ap.parse_args()
    w = lambda name: os.path.join(args.work, name)  # noqa: E731
    meta = dict(m.split("=", 1) for m in args.meta)

    steps = []
    for line in read(w("steps.tsv")).splitlines():
        parts = line.split("\t") + ["", "", "", ""]
        steps.append(parts[:4])
    pre = []
    for line in read(w("preflight.tsv")).splitlines():
        k, _, v = line.partition("\t")
        pre.append((k, v))
    info = {}
    if os.path.exists(w("torch-info.json")):
        try:
            info = json.loads(read(w("torch-info.json")))
        except ValueError:
            info = {}
    ours, rebuilt = jsonl(w("ours.jsonl")), jsonl(w("rebuilt.jsonl"))
    theirs = {(t["case"], t["precision"]): t for t in jsonl(w("torch.jsonl"))}
    torch_step = next((s for s in steps if s[0] == "PyTorch"), None)
    torch_missing = ""
    if torch_step and torch_step[1] != "ok":
        torch_missing = "PyTorch %s (%s)" % (torch_step[1], torch_step[3])
    table, tally = bench_table(ours, theirs, torch_missing) if ours else ([], {"met": 0, "missed": 0, "unchecked": []})

    failed = [s[0] for s in steps if s[1] == "FAIL"]
    unchecked = [s[0] for s in steps if s[1] == "not checked"]
    if ours:
        unchecked_targets = tally["unchecked"]
    else:
        unchecked_targets = ["every benchmark target: no benchmark case ran"]
    result = "FAIL" if failed else "INCOMPLETE" if unchecked or unchecked_targets else "PASS"

    gpu_line = re.search(r"^GPU \d+: (.*)$", read(w("gpucheck.err")), re.M)
    device = meta.pop("device", "") or (gpu_line.group(1).split(",")[0] if gpu_line else "") or \
        next((c.get("device") for c in ours if c.get("device")), "") or "unknown GPU"
    date = meta.pop("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    out = ["# GPU check: %s, %s" % (device, date), ""]
    verdict = "**Result: %s**" % result
    notes = []
    if failed:
        notes.append("failed: " + ", ".join(failed))
    if unchecked:
        notes.append("not checked: " + ", ".join(unchecked))
    if not ours:
        notes.append("no benchmark ran: every target not checked")
    elif unchecked_targets:
        notes.append("%d benchmark target(s) not checked" % len(unchecked_targets))
    if ours:
        notes.append("%d target(s) met, %d missed" % (tally["met"], tally["missed"]))
    out += [verdict + (" — " + "; ".join(notes) if notes else "") + ".", ""]
    if meta:
        out += ["; ".join("%s: %s" % kv for kv in sorted(meta.items())) + ".", ""]

    out += ["## Steps", "", "| step | result | seconds | detail |", "| --- | --- | ---: | --- |"]
    for name, status, secs, detail in steps:
        shown = "**%s**" % status if status != "ok" else status
        out.append("| %s | %s | %s | %s |" % (cell(name), shown, cell(secs or "-"), cell(detail)))
    out.append("")

    out += ["## Preflight", ""]
    out += ["- %s: %s" % (k, v) for k, v in pre] or ["- (no preflight ran)"]
    ours_gemm = re.search(r"^SGEMM: (.*)$", read(w("gpucheck.err")) or read(w("bench.err")), re.M)
    if ours_gemm:
        out.append("- SGEMM and cuBLAS, ours (gpucheck): %s" % ours_gemm.group(1))
    if info.get("cublas_path"):
        out.append("- cuBLAS, PyTorch's: %s, version %s" % (info["cublas_path"], info.get("cublas_version") or "unknown"))
    out.append("")

    out += ["## GPU vs PyTorch", ""]
    if ours:
        tv = next(iter(theirs.values()), {})
        facts = ["ours: `gpucheck --bench`, best of %s runs" % meta.get("repeat", read(w("repeat")).strip() or "3")]
        if tv:
            facts.append("PyTorch %s (CUDA %s), eager" % (tv.get("torch"), tv.get("torch_cuda")))
        out += ["; ".join(facts) + ".", ""] + table + ["", summary_line(tally), ""]
        if tally["unchecked"]:
            out += ["Not checked:", ""] + ["- " + u for u in tally["unchecked"]] + [""]
    else:
        out += ["No benchmark case ran: every target is **not checked** (see the bench step).", ""]

    if rebuilt:
        base = {(c["case"], c["impl"], c["precision"], c.get("variant", "")): c for c in ours}
        nvcc = next((v.split(" (")[0] for k, v in pre if k == "nvcc"), "the machine's nvcc")
        build = next((s for s in steps if s[0] == "nvcc rebuild"), None)
        out += ["## Embedded kernels (nvcc 11.8, sm_90 SASS) vs rebuilt here (%s, -arch=sm_90)" % nvcc, ""]
        if build:
            out += ["Rebuild: %s." % build[3], ""]
        out += ["| case | impl | embedded | rebuilt | rebuilt / embedded |", "| --- | --- | ---: | ---: | ---: |"]
        for c in rebuilt:
            b = base.get((c["case"], c["impl"], c["precision"], c.get("variant", "")), {})
            impl = c["impl"] + (" (%s)" % c["variant"] if c.get("variant") else "")
            mine = "error: " + c["error"] if c.get("error") else "%.4g %s" % (c.get("rate", 0), c["unit"])
            theirs_b = "error: " + b["error"] if b.get("error") else ("%.4g %s" % (b["rate"], b["unit"]) if b.get("rate") else "-")
            ratio = "%.2fx" % (c["rate"] / b["rate"]) if c.get("rate") and b.get("rate") else "-"
            out.append("| %s | %s | %s | %s | %s |" % (c["case"], impl, theirs_b, mine, ratio))
        kernels_from = {c.get("kernels", "") for c in rebuilt}
        out += ["", "Kernels loaded from: %s." % ", ".join(sorted(k for k in kernels_from if k)), ""]

    emb, reb = resources(w("res-embedded")), resources(w("res-rebuilt"))
    sp = spills(read(w("nvcc.log")))
    if emb or reb:
        out += ["## Kernel resources (cuobjdump --dump-resource-usage, sm_90)", "",
                "Registers per thread, stack frame and local memory bytes (either means spills or calls), shared memory bytes. "
                "Rebuilt: the machine's nvcc, with ptxas's spill stores.", "",
                "| module | kernel | registers | stack | local | shared | rebuilt registers | rebuilt stack | rebuilt spill stores |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key in sorted(set(emb) | set(reb)):
            e, r = emb.get(key), reb.get(key)
            s = sp.get(key[1])
            flag = lambda v: ("**%d**" % v) if v else "0"  # noqa: E731
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                key[0], key[1],
                e[0] if e else "-", flag(e[1]) if e else "-", flag(e[3]) if e else "-", e[2] if e else "-",
                r[0] if r else "-", flag(r[1]) if r else "-", flag(s[1]) if s else "-"))
        out.append("")

    for tool in ("memcheck", "racecheck", "synccheck"):
        text = read(w(tool + ".out"))
        if not text:
            continue
        if tool == "memcheck":
            out += ["## compute-sanitizer over the conformance tests (PTX kernels)", ""]
        summary = [l for l in text.splitlines() if "SUMMARY" in l]
        out += ["### %s: %s" % (tool, summary[-1].strip("= ").strip() if summary else "no summary line"), ""]
        errors = [l for l in text.splitlines() if l.startswith("=========")]
        out += code("\n".join(errors[:60]) if errors else text)
        out.append("")

    for title, name in (("gpucheck (GPU vs CPU, same seeded inputs; faults last)", "gpucheck"),
                        ("cuda.test (conformance and GPU tests)", "cuda.test"),
                        ("gpucheck --bench", "bench"), ("PyTorch", "PyTorch"), ("rebuilt kernels' bench", "bench-rebuilt")):
        body = read(w(name + ".out"))
        err = read(w(name + ".err"))
        if name in ("bench", "bench-rebuilt", "PyTorch"):
            body = err  # their stdout is JSON, shown above
        if name == "cuda.test":
            body = "\n".join(l for l in body.splitlines() if not re.match(r"^=== (RUN|PAUSE|CONT|NAME)", l))
        if name == "gpucheck":
            body = err + body
        if body.strip():
            out += ["## " + title, ""] + code(body) + [""]

    text = "\n".join(out) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    with open(w("result"), "w") as f:
        f.write(result + "\n")


if __name__ == "__main__":
    main()
