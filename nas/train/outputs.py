"""What a run writes besides checkpoints: results.csv, steps.csv, results.png, the summary table, wandb."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.io import atomic_path, write_text_atomic

__all__ = ["COLUMNS", "MAP_KEYS", "RunLog", "from_points", "in_points", "metrics_row", "summary_table"]

COLUMNS = ("epoch", "loss", "cls", "iou", "dfl", "lr", "mAP50_95", "mAP50", "mAP75", "skipped_steps", "elapsed_s")
# the mAP entries of a history row: fractions (0-1), as `nas val` and metrics.json give them; None where the val
# split has no object of that size
MAP_KEYS = ("mAP50_95", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large")
PER_CLASS_KEYS = ("per_class", "per_class_AP50")


def metrics_row(m: dict[str, Any]) -> dict[str, Any]:
    """The mAP entries of a history row from `nas.engine.val.validate`'s metrics: fractions to 4 decimals."""
    row: dict[str, Any] = {k: round(m[k], 4) for k in MAP_KEYS[:3]}
    row.update({k: round(m[k], 4) if m[k] >= 0 else None for k in MAP_KEYS[3:]})
    row.update({k: {name: round(v, 4) for name, v in m[k].items()} for k in PER_CLASS_KEYS})
    return row


def _scaled(row: dict[str, Any], factor: float, digits: int) -> dict[str, Any]:
    out = dict(row)
    for k in MAP_KEYS:
        if out.get(k) is not None:
            out[k] = round(factor * out[k], digits)
    for k in PER_CLASS_KEYS:
        if k in out:
            out[k] = {name: round(factor * v, digits) for name, v in out[k].items()}
    return out


def in_points(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of a history row (or `TrainResult.metrics`) with its mAP entries in points (0-100, 2 decimals): the
    scale of the experiments' committed JSON files, written before the trainer reported fractions."""
    return _scaled(row, 100, 2)


def from_points(row: dict[str, Any]) -> dict[str, Any]:
    """`in_points` undone: a history row of a checkpoint written when the trainer kept mAP in points."""
    return _scaled(row, 0.01, 4)


class RunLog:
    """Per-epoch rows to results.csv (rewritten whole, atomically), per-step losses to steps.csv, optional wandb."""

    def __init__(self, run_dir: Path, logger: str, config: dict[str, Any], name: str):
        self.dir = run_dir
        self.steps_path = run_dir / "steps.csv"
        self.wandb = None
        if logger == "wandb":
            try:
                import wandb
            except ImportError:
                raise ConfigError("logger=wandb needs the wandb package: pip install wandb (or logger=none)") from None
            os.environ.setdefault("WANDB_MODE", "offline")
            self.wandb = wandb.init(project="yolo-nas-search", name=name, dir=str(run_dir), config=config)

    def write_epochs(self, history: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k, "") for k in COLUMNS})
        write_text_atomic(self.dir / "results.csv", buf.getvalue())
        if self.wandb is not None and history:
            self.wandb.log({k: v for k, v in history[-1].items() if isinstance(v, (int, float))})

    def truncate_steps(self, global_step: int) -> None:
        """Keep the first `global_step` step rows (a resumed run rewrites the steps after its checkpoint)."""
        if not self.steps_path.is_file():
            return
        lines = self.steps_path.read_text().splitlines(keepends=True)
        write_text_atomic(self.steps_path, "".join(lines[: global_step + 1]))

    def write_step(self, step: int, epoch: int, batch: int, loss: float, lr: float) -> None:
        new = not self.steps_path.is_file()
        with open(self.steps_path, "a") as f:
            if new:
                f.write("step,epoch,batch,loss,lr\n")
            f.write(f"{step},{epoch},{batch},{loss!r},{lr!r}\n")

    def plot(self, history: list[dict[str, Any]]) -> Path | None:
        """results.png: the three loss terms and the total, and mAP50-95 / mAP50 per epoch."""
        if not history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in history]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        for k in ("loss", "cls", "iou", "dfl"):
            a.plot(epochs, [r[k] for r in history], marker=".", label=k)
        a.set(xlabel="epoch", ylabel="train loss", title="loss (weighted terms)")
        a.legend()
        for k in ("mAP50_95", "mAP50"):
            pts = [(r["epoch"], r[k]) for r in history if r.get(k) is not None]
            if pts:
                b.plot(*zip(*pts), marker=".", label=k)
        b.set(xlabel="epoch", ylabel="mAP (0-1)", title="val mAP (EMA weights)")
        if b.lines:
            b.legend()
        else:
            b.text(0.5, 0.5, "no validation (val=false)", ha="center", va="center", transform=b.transAxes)
        fig.tight_layout()
        path = self.dir / "results.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        return path

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def epoch_table(history: list[dict[str, Any]]) -> list[str]:
    """Markdown rows of a training history in points (`in_points`, the experiments' records: loss terms, mAP 0-100,
    elapsed seconds), header included."""
    return [
        "| epoch | loss | cls | iou | dfl | mAP50-95 | mAP50 | elapsed |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['epoch']} | {r['loss']:.3f} | {r['cls']:.3f} | {r['iou']:.3f} | {r['dfl']:.3f} "
            f"| {r['mAP50_95']:.1f} | {r['mAP50']:.1f} | {r['elapsed_s']:.0f} s |"
            for r in history
        ),
    ]


def summary_table(metrics: dict[str, Any]) -> str:
    """Markdown table: all classes, then AP50-95 and AP50 of each class, as fractions (0-1) like `nas val` prints."""
    lines = ["| class | AP50-95 (0-1) | AP50 (0-1) |", "|---|---|---|"]
    lines.append(f"| all | {metrics['mAP50_95']:.4f} | {metrics['mAP50']:.4f} |")
    per50 = metrics.get("per_class_AP50", {})
    for name, ap in metrics.get("per_class", {}).items():
        ap50 = per50.get(name)
        lines.append(f"| {name} | {ap:.4f} | {'' if ap50 is None else f'{ap50:.4f}'} |")
    return "\n".join(lines)
