#!/usr/bin/env python3
"""PyTorch's side of scripts/gpu-check.sh: the same benchmark cases as `gpucheck --bench --json`,
run on the same card, and the Markdown report that compares the two.

  torch_bench.py run OURS.jsonl [--device cuda] [--repeat 3]
      Runs every case of OURS.jsonl in PyTorch and prints one JSON line per case and precision:
      vector_addition as torch.add(out=), matrix_multiply as torch.mm(out=) in FP32 or TF32,
      image_processing as F.conv2d (cuDNN, FP32, autotuned), neural_network as the same MLP
      trained eagerly with Adam and F.cross_entropy, batches in order.
  torch_bench.py info
      Prints one JSON object: PyTorch's version, its CUDA and cuDNN, the device, and the cuBLAS
      library it loaded (path and version), so that gpu-check.sh runs ours on the same one.
  torch_bench.py report OURS.jsonl [TORCH.jsonl] [--torch-missing WHY] [--meta KEY=VALUE]...
      Prints the Markdown table: our rate, PyTorch's, the ratio and the issue's target. Every
      target appears: one whose rate could not be measured (cuBLAS not loaded, PyTorch missing,
      a case that failed) is "not checked", saying why.

Rates are defined by our side: each case carries `work` (bytes, FLOPs or samples, from the job's
Work estimate) and `scale`, and PyTorch's rate is work / its time / scale. Both sides time the
device with CUDA events around the timed loop, after a warm-up, and keep the best of --repeat.
Only the standard library and torch are needed (the GPU test machine has no network).
"""

import argparse
import ctypes
import datetime
import json
import sys
import time

TARGETS = {  # ours / PyTorch, from the issue
    ("vector_addition", "ptx"): 0.9,
    ("matrix_multiply", "cublas"): 0.95,
    ("matrix_multiply", "ptx"): 0.5,
    ("image_processing", "ptx"): 0.5,
    ("neural_network", "cublas"): 1.0,
    ("neural_network", "ptx"): 1.0,
}


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Timer:
    """Device time of a region: CUDA events on a GPU, the wall clock on the CPU (for tests)."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.startswith("cuda")

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def region(self):
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()

            def stop():
                end.record()
                end.synchronize()
                return start.elapsed_time(end) / 1e3

            return stop
        t0 = time.perf_counter()
        return lambda: time.perf_counter() - t0

    def loop(self, step, iters):
        step()  # warm-up: allocator, cuBLAS/cuDNN heuristics
        self.sync()
        stop = self.region()
        for _ in range(iters):
            step()
        return stop()


def has(obj, name):
    """hasattr that survives torch's backend objects, which raise AssertionError, not
    AttributeError, for an attribute they do not know."""
    try:
        getattr(obj, name)
        return True
    except Exception:
        return False


def set_tf32(torch, matmul_tf32):
    """TF32 for matmul as asked, never for convolutions. PyTorch >= 2.9 has fp32_precision and
    refuses a mix of it and the legacy allow_tf32 flags, so only one API is used."""
    mm, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if has(mm, "fp32_precision"):
        mm.fp32_precision = "tf32" if matmul_tf32 else "ieee"
        cudnn.conv.fp32_precision = "ieee"
    else:
        mm.allow_tf32 = matmul_tf32
        cudnn.allow_tf32 = False


def bench_case(torch, timer, device, c):
    F = torch.nn.functional
    p, job = c["params"], c["job"]

    def uniform(*shape):
        return torch.rand(*shape, device=device) * 2 - 1

    if job == "vector_addition":
        a, b = uniform(p["size"]), uniform(p["size"])
        out = torch.empty_like(a)
        return "torch.add", timer.loop(lambda: torch.add(a, b, out=out), p["iterations"])
    if job == "matrix_multiply":
        tf32 = c["precision"] == "tf32"
        set_tf32(torch, tf32)
        n = p["size"]
        a, b, out = uniform(n, n), uniform(n, n), torch.empty(n, n, device=device)
        return "torch.mm " + ("tf32" if tf32 else "fp32"), timer.loop(lambda: torch.mm(a, b, out=out), p["iterations"])
    if job == "image_processing":
        set_tf32(torch, False)
        torch.backends.cudnn.benchmark = True
        k = p["kernel_size"]
        x = uniform(p["batch_size"], p["channels"], p["image_size"], p["image_size"])
        w = uniform(p["filters"], p["channels"], k, k)
        return "F.conv2d (cuDNN fp32)", timer.loop(lambda: F.conv2d(x, w, padding=k // 2), p["iterations"])
    if job == "neural_network":
        set_tf32(torch, False)
        return "nn.Linear/ReLU + Adam, eager", bench_mlp(torch, timer, device, p)
    raise ValueError("unknown job " + job)


def bench_mlp(torch, timer, device, p):
    """Trains the job's MLP as kernels.NeuralNetwork does and returns the device time of its
    epochs (the per-epoch loss read-back is outside the timed regions, as on our side)."""
    F, nn = torch.nn.functional, torch.nn
    samples = p.get("samples") or p["batch_size"] * 100
    bs = p["batch_size"]
    x = torch.randn(samples, p["input_size"], device=device)
    y = torch.randint(0, p["output_size"], (samples,), device=device)

    def train(epochs):
        model = nn.Sequential(nn.Linear(p["input_size"], p["hidden_size"]), nn.ReLU(),
                              nn.Linear(p["hidden_size"], p["output_size"])).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=p["learning_rate"])
        seconds, losses = 0.0, []
        for _ in range(epochs):
            stop = timer.region()
            total = torch.zeros((), device=device)
            for lo in range(0, samples, bs):
                xb, yb = x[lo:lo + bs], y[lo:lo + bs]
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * xb.shape[0]
            seconds += stop()
            losses.append(total.item() / samples)
        return seconds, losses

    train(1)  # warm-up
    seconds, losses = train(p["epochs"])
    if not losses[-1] < losses[0]:
        print("warning: PyTorch's MLP loss did not fall: %s" % losses, file=sys.stderr)
    return seconds


def loaded_library(prefix):
    """The path of a shared library this process has mapped whose name starts with prefix."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if path.rsplit("/", 1)[-1].startswith(prefix):
                return path
    return ""


def cublas_version(path):
    """cuBLAS's version from the library itself (cublasGetProperty: major, minor, patch)."""
    lib = ctypes.CDLL(path)
    parts = []
    for prop in range(3):
        v = ctypes.c_int()
        if lib.cublasGetProperty(prop, ctypes.byref(v)) != 0:
            return ""
        parts.append(str(v.value))
    return ".".join(parts)


def cmd_info(args):
    import torch

    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.backends.cudnn.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        a = torch.ones(64, 64, device="cuda")
        torch.mm(a, a)  # loads cuBLAS
        torch.cuda.synchronize()
        path = loaded_library("libcublas.so")
        if path:
            info["cublas_path"] = path
            info["cublas_version"] = cublas_version(path)
    print(json.dumps(info))


def cmd_run(args):
    import torch

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("torch_bench.py: PyTorch sees no CUDA device")
    timer = Timer(torch, device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    seen = set()
    for c in read_jsonl(args.ours):
        key = (c["case"], c["precision"])
        if key in seen:  # the PTX and cuBLAS runs of a case share one PyTorch reference
            continue
        seen.add(key)
        res = {"case": c["case"], "job": c["job"], "precision": c["precision"], "unit": c["unit"],
               "device": name, "torch": torch.__version__, "torch_cuda": torch.version.cuda}
        try:
            best = None
            for _ in range(max(args.repeat, 1)):
                ref, seconds = bench_case(torch, timer, device, c)
                best = seconds if best is None else min(best, seconds)
            res.update(ref=ref, seconds=best, rate=c["work"] / best / c["scale"])
        except Exception as e:  # one failed case must not hide the others
            res["error"] = "%s: %s" % (type(e).__name__, e)
        print(json.dumps(res), flush=True)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def fmt_rate(v, unit):
    return "%.4g %s" % (v, unit) if v else "-"


def target_of(c):
    """The issue's target for a case of ours: plain runs only, not variants."""
    if c.get("variant"):
        return None
    return TARGETS.get((c["job"], c["impl"]))


def bench_table(ours, theirs, torch_missing=""):
    """The comparison table's Markdown lines and the targets' tally: met, missed, and unchecked
    with the reason of each. Every target of TARGETS appears, as a row of a case or, when no case
    of it ran, as a row of its own."""
    out = ["| job | case | ours | our rate | PyTorch | PyTorch rate | ours / PyTorch | target |",
           "| --- | --- | --- | ---: | --- | ---: | ---: | --- |"]
    tally = {"met": 0, "missed": 0, "unchecked": []}
    seen_targets = set()
    for c in ours:
        t = theirs.get((c["case"], c["precision"]), {})
        impl = c["impl"] + (" " + c["precision"] if c["job"] == "matrix_multiply" else "")
        if c.get("variant"):
            impl += " (%s)" % c["variant"]
        if c.get("error"):
            mine = "error: " + c["error"]
        elif c.get("skipped"):
            mine = "not checked: " + c["skipped"]
        else:
            mine = fmt_rate(c.get("rate"), c["unit"])
        if t:
            ref = t.get("ref") or ("failed" if t.get("error") else "not run")
            rate = "error: " + t["error"] if t.get("error") else fmt_rate(t.get("rate"), c["unit"])
        else:
            ref, rate = "not run", "not checked: " + (torch_missing or "no PyTorch result for this case")
        ratio, verdict = "-", ""
        goal = target_of(c)
        if goal:
            seen_targets.add((c["job"], c["impl"]))
        if c.get("rate") and t.get("rate"):
            r = c["rate"] / t["rate"]
            ratio = "%.2fx" % r
            if goal:
                ok = r >= goal
                verdict = "≥ %.2gx %s" % (goal, "met" if ok else "**missed**")
                tally["met" if ok else "missed"] += 1
        elif goal:
            why = c.get("error") or c.get("skipped") or t.get("error") or torch_missing or "PyTorch did not run this case"
            verdict = "≥ %.2gx **not checked**: %s" % (goal, why)
            tally["unchecked"].append("%s %s %s: %s" % (c["job"], c["case"], impl, why))
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (c["job"], c["case"], impl, mine, ref, rate, ratio, verdict))
    for (job, impl), goal in sorted(TARGETS.items()):
        if (job, impl) not in seen_targets:
            why = "no %s case ran (see gpucheck --bench's output)" % impl
            out.append("| %s | - | %s | not checked | - | - | - | ≥ %.2gx **not checked**: %s |" % (job, impl, goal, why))
            tally["unchecked"].append("%s %s: %s" % (job, impl, why))
    return out, tally


def summary_line(tally):
    parts = ["%d target(s) met" % tally["met"], "%d missed" % tally["missed"]]
    if tally["unchecked"]:
        parts.append("%d **not checked**" % len(tally["unchecked"]))
    return "; ".join(parts) + "."


def cmd_report(args):
    ours = read_jsonl(args.ours)
    theirs = {}
    if args.torch:
        for t in read_jsonl(args.torch):
            theirs[(t["case"], t["precision"])] = t
    meta = dict(m.split("=", 1) for m in args.meta)
    device = next((c.get("device") for c in ours if c.get("device")), "unknown GPU")
    tv = next(iter(theirs.values()), {})
    date = meta.pop("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    out = ["## GPU vs PyTorch: %s, %s" % (device, date), ""]
    facts = ["ours: `gpucheck --bench`, best of %s runs" % meta.pop("repeat", "3")]
    if tv:
        facts.append("PyTorch %s (CUDA %s), eager" % (tv.get("torch"), tv.get("torch_cuda")))
    facts += ["%s: %s" % kv for kv in sorted(meta.items())]
    out += ["; ".join(facts) + ".", ""]
    lines, tally = bench_table(ours, theirs, args.torch_missing)
    out += lines + ["", summary_line(tally)]
    if not ours:
        out.append("No benchmark ran: see gpucheck's output.")
    print("\n".join(out))
    if args.tally:
        with open(args.tally, "w") as f:
            json.dump(tally, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the cases in PyTorch, print JSON lines")
    run.add_argument("ours", help="gpucheck --bench --json output")
    run.add_argument("--device", default="cuda")
    run.add_argument("--repeat", type=int, default=3)
    sub.add_parser("info", help="print PyTorch's versions and the cuBLAS it loaded, as JSON")
    rep = sub.add_parser("report", help="print the Markdown comparison")
    rep.add_argument("ours")
    rep.add_argument("torch", nargs="?", help="torch_bench.py run output (omit when PyTorch did not run)")
    rep.add_argument("--torch-missing", default="", help="why PyTorch did not run, for the table")
    rep.add_argument("--tally", help="write the targets' tally (met, missed, unchecked) to this JSON file")
    rep.add_argument("--meta", action="append", default=[], help="KEY=VALUE facts for the header")
    args = ap.parse_args()
    {"run": cmd_run, "info": cmd_info, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
