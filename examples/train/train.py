"""A training-style command: fits a linear model with SGD, checkpoints every step to $RPH_CHECKPOINT_DIR,
resumes from the last checkpoint (a restarted pod or spot interruption continues), and writes out/."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    checkpoints = Path(os.environ.get("RPH_CHECKPOINT_DIR", "checkpoints"))
    checkpoints.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(512, 8))
    true_weights = np.arange(1, 9, dtype=float)
    targets = features @ true_weights + rng.normal(scale=0.1, size=512)
    state = checkpoints / "state.npz"
    if state.exists():
        saved = np.load(state)
        weights, start = saved["weights"], int(saved["step"])
        print(f"resuming from step {start} (attempt {os.environ.get('RPH_ATTEMPT', '?')})", flush=True)
    else:
        weights, start = np.zeros(8), 0
    loss = float("nan")
    for step in range(start + 1, args.steps + 1):
        batch = rng.integers(0, 512, size=64)
        error = features[batch] @ weights - targets[batch]
        weights -= args.lr * features[batch].T @ error / len(batch)
        loss = float(np.mean(error**2))
        np.savez(state, weights=weights, step=step)
        if step % 50 == 0 or step == args.steps:
            print(f"step {step} loss {loss:.5f}", flush=True)
    out = Path("out")
    out.mkdir(exist_ok=True)
    (out / "model.json").write_text(
        json.dumps(
            {
                "weights": [round(float(w), 4) for w in weights],
                "final_loss": round(loss, 6),
                "steps": args.steps,
            },
            indent=2,
        )
    )
    print(f"wrote {out / 'model.json'}", flush=True)


if __name__ == "__main__":
    main()
