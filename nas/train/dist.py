"""Process-group setup for `torchrun --nproc_per_node=N -m nas train ...`: NCCL on GPUs, gloo on CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from nas.device import select_device
from nas.errors import ConfigError

__all__ = ["Dist", "setup"]


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over processes (identity in one process); differentiable inputs are detached."""
        if self.world == 1:
            return t
        t = t.detach().clone()
        dist.all_reduce(t)
        return t / self.world

    def loss_normalizer(self, s: torch.Tensor) -> torch.Tensor:
        """max(ΣS over processes, 1) / processes: see `nas.train.loss.ppyoloe_loss`."""
        total = s.detach().clone()
        dist.all_reduce(total)
        return total.clamp(min=1.0) / self.world

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every process (what wrapping in DDP does)."""
        if self.world > 1:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, 0)

    def average_gradients(self, module: torch.nn.Module, bucket: int = 1 << 24) -> None:
        """Every process's gradients replaced by their mean over processes (what DDP's backward hooks do), for a
        step DDP cannot wrap: several forwards of different sub-networks per step (the supernet's sandwich rule).
        A parameter that has a gradient on any process gets one everywhere (zeros where it had none), so the
        optimizers stay in step; flattened in buckets of `bucket` elements."""
        if self.world == 1:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        have = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        dist.all_reduce(have, op=dist.ReduceOp.MAX)
        grads = []
        for p, h in zip(params, have.tolist(), strict=True):
            if h and p.grad is None:
                p.grad = torch.zeros_like(p)
            if h:
                grads.append(p.grad)
        start = 0
        while start < len(grads):
            group, size = [], 0
            while start < len(grads) and (not group or size + grads[start].numel() <= bucket):
                group.append(grads[start])
                size += grads[start].numel()
                start += 1
            flat = torch.cat([g.reshape(-1) for g in group])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for g in group:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str | None) -> Dist:
    """One process (WORLD_SIZE unset or 1) on `device`, or this process's place in a torchrun group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want = select_device(device) if device is not None else None
    if world <= 1:
        if want is None:
            want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return Dist(device=want)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (want is None or want.type == "cuda")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s) are present")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, device=dev)
