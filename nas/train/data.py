"""The training data stream: a `DataLoader` whose workers read, resize and augment images one at a time.

Only the annotations of a `nas.data.DetectionDataset` are held in memory; images are read from disk per sample,
so a COCO-sized set trains. The order and every augmentation draw are functions of (seed, epoch, position), not
of the process or worker that computes them: a run resumed at any step, or split over DDP processes, sees the same
samples. `EpochBatches` yields the batches of one process; rank r of w takes the r-th slice of every global batch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nas.data.dataset import DataWarning
from nas.data.images import read_image
from nas.errors import ConfigError, DataError
from nas.train.augment import hflip, hsv, letterbox_square, mosaic4, random_affine
from nas.train.options import TrainOptions

__all__ = ["Batch", "EpochBatches", "TrainSet", "collate", "make_loader"]


@dataclass(frozen=True)
class Key:
    """What the sampler hands a worker: which image, in which epoch, with or without mosaic."""

    index: int
    epoch: int
    mosaic: bool


class TrainSet(Dataset):
    """Augmented training samples of a dataset: `ts[Key]` → (uint8 RGB [3, s, s], boxes xyxy [n, 4], labels [n])."""

    def __init__(self, dataset, opts: TrainOptions):
        self.dataset = dataset
        self.size = opts.imgsz
        self.opts = opts
        n = len(dataset) if opts.limit is None else min(opts.limit, len(dataset))
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image i (BGR) resized so that its long side is imgsz, with its boxes scaled alike.

        An image that no longer decodes (damaged after the split was loaded and checked) becomes a grey negative
        with one DataWarning: the same in every epoch and on resume, and the run goes on.
        """
        rec, boxes, labels = self.dataset[i]
        try:
            img = read_image(rec.path)
        except DataError as e:
            warnings.warn(
                f"{e}; training on a grey image without objects in its place (replace the file; this warning once)",
                DataWarning,
                stacklevel=2,
            )
            s = self.size
            return np.full((s, s, 3), 114, np.uint8), np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        h, w = img.shape[:2]
        r = self.size / max(h, w)
        if r != 1:
            img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_LINEAR)
        return img, np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * r, np.asarray(labels, dtype=np.int64)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        o, s = self.opts, self.size
        rng = np.random.default_rng([o.seed, key.epoch, key.index])
        if key.mosaic and rng.random() < o.mosaic:
            others = rng.integers(0, self.n, 3).tolist()
            centre = (float(rng.uniform(s / 2, 1.5 * s)), float(rng.uniform(s / 2, 1.5 * s)))
            img, boxes, labels = mosaic4([self.load(j) for j in [key.index, *others]], s, centre)
        else:
            img, boxes, labels = self.load(key.index)
            img, boxes = letterbox_square(img, boxes, s)
        img, boxes, labels = random_affine(img, boxes, labels, rng, s, o.scale, o.translate, o.degrees)
        img = hsv(img, rng, (o.hsv_h, o.hsv_s, o.hsv_v))
        if rng.random() < o.fliplr:
            img, boxes = hflip(img, boxes)
        chw = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        return torch.from_numpy(chw), torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(labels)


@dataclass
class Batch:
    images: torch.Tensor  # uint8 [B, 3, s, s], RGB
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]


def collate(samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Batch:
    return Batch(torch.stack([s[0] for s in samples]), [s[1] for s in samples], [s[2] for s in samples])


class EpochBatches:
    """Batch sampler: per epoch a seeded permutation cut into global batches (the remainder dropped); this process
    gets its `rank`-th slice of each. `set_epoch(epoch, start)` begins at global batch `start` (resume)."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1, mosaic_epochs: int = 0):
        if global_batch % world:
            raise ConfigError(f"batch={global_batch} must be divisible by the {world} processes")
        if n < global_batch:
            raise ConfigError(
                f"batch={global_batch} is larger than the {n} training images; use batch<={n} "
                "(one optimizer step needs a full batch)"
            )
        self.n, self.global_batch, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.local = global_batch // world
        self.mosaic_epochs = mosaic_epochs
        self.epoch, self.start = 0, 0

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch."""
        return self.n // self.global_batch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[Key]]:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        mosaic = self.epoch < self.mosaic_epochs
        for k in range(self.start, self.steps):
            lo = k * self.global_batch + self.rank * self.local
            yield [Key(int(i), self.epoch, mosaic) for i in perm[lo : lo + self.local].tolist()]


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(0)  # the workers are the parallelism; cv2's own thread pool would oversubscribe
    torch.set_num_threads(1)


def loader_workers(workers: int | None, world: int = 1) -> int:
    """`workers` as given; None (the default) is min(8, this process's share of the CPUs - 1): 1 on 2 cores, where
    8 loader processes would only compete with the training for the CPU."""
    if workers is not None:
        return workers
    return max(0, min(8, (os.cpu_count() or 1) // max(1, world) - 1))


def make_loader(train_set: TrainSet, sampler: EpochBatches, workers: int) -> DataLoader:
    return DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
        pin_memory=torch.cuda.is_available(),
    )
