"""Training and fine-tuning of any architecture of the space (`nas train`, `NAS(...).train`, the proxies)."""

from nas.train.options import TrainOptions
from nas.train.run import train
from nas.train.trainer import TrainResult

__all__ = ["TrainOptions", "TrainResult", "train"]
