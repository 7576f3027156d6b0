#!/usr/bin/env python3
"""A training job as gpujobs runs it: standard library only (numpy when installed is not needed).

It fits a logistic regression by gradient descent on seeded synthetic data, one epoch at a time,
and shows what a gpujobs command job can do:
  - progress: a line "GPUJOBS_PROGRESS <fraction> loss=<value>" drives `starter watch` and status;
  - checkpoints: it writes its state to $GPUJOBS_CHECKPOINT_DIR after every epoch, and starts from
    it when there is one (the worker saves that directory and restores it on the next attempt,
    on whatever worker the job is retried);
  - outputs: it writes the model to $GPUJOBS_OUTPUT_DIR, which `--output 'model.json'` keeps.

  starter submit command --output model.json -- python3 train.py --epochs 20
"""
import argparse
import json
import math
import os
import random
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epoch-seconds", type=float, default=0.0, help="sleep per epoch, to make a short job long")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    teacher = [rng.gauss(0, 1) for _ in range(args.features)]
    xs = [[rng.gauss(0, 1) for _ in range(args.features)] for _ in range(args.samples)]
    ys = [1.0 if sum(w * x for w, x in zip(teacher, row)) > 0 else 0.0 for row in xs]

    ckpt_dir = os.environ.get("GPUJOBS_CHECKPOINT_DIR", "checkpoint")
    out_dir = os.environ.get("GPUJOBS_OUTPUT_DIR", "output")
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    ckpt = os.path.join(ckpt_dir, "state.json")

    w, start = [0.0] * args.features, 0
    if os.path.exists(ckpt):
        with open(ckpt) as f:
            state = json.load(f)
        w, start = state["w"], state["epoch"]
        print(f"resuming from the checkpoint of epoch {start}", flush=True)
    else:
        print("starting from scratch", flush=True)

    loss = float("nan")
    for epoch in range(start + 1, args.epochs + 1):
        grad, loss = [0.0] * args.features, 0.0
        for row, y in zip(xs, ys):
            p = 1 / (1 + math.exp(-sum(a * b for a, b in zip(w, row))))
            loss -= y * math.log(p + 1e-12) + (1 - y) * math.log(1 - p + 1e-12)
            for i, x in enumerate(row):
                grad[i] += (p - y) * x
        w = [a - args.lr * g / args.samples for a, g in zip(w, grad)]
        loss /= args.samples
        if args.epoch_seconds:
            time.sleep(args.epoch_seconds)
        tmp = ckpt + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": epoch, "w": w}, f)
        os.replace(tmp, ckpt)  # a checkpoint is always whole
        print(f"epoch {epoch}/{args.epochs} loss {loss:.4f}", flush=True)
        print(f"GPUJOBS_PROGRESS {epoch / args.epochs:.4f} loss={loss:.6f}", flush=True)

    accuracy = sum((sum(a * b for a, b in zip(w, row)) > 0) == (y > 0.5) for row, y in zip(xs, ys)) / args.samples
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump({"weights": w, "final_loss": loss, "accuracy": accuracy, "epochs": args.epochs}, f)
    print(f"done: loss {loss:.4f}, accuracy {accuracy:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
