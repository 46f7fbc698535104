"""Scale-out with PyTorch's own launcher: ranks, their shard, and the collectives of a run.

``torchrun --nproc_per_node=K -m ccdf solve ...`` starts K processes with RANK, WORLD_SIZE
and LOCAL_RANK in their environment (and the rendezvous address).  The process group is
created only when WORLD_SIZE > 1: gloo on the CPU, nccl with ``--device cuda`` (rank on
``cuda:LOCAL_RANK``).  Rank r takes inputs i with i % world == r of the sorted input list.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

# Ranks wait for each other at the end of a run: allow them to finish far apart.
TIMEOUT = timedelta(days=7)


class Ranks:
    """This process's place in the run (rank 0 of 1 without torchrun)."""

    def __init__(self, device: str):
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0")) if self.size > 1 else 0
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cpu") if device != "cuda" else \
            torch.device("cuda", local) if self.size > 1 else torch.device("cuda")
        self._dist = None

    def start(self) -> None:
        """Join the process group (a no-op for one process)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                timeout=TIMEOUT)
        self._dist = dist

    def shard(self, items: list) -> list:
        return items[self.rank::self.size]

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self._dist is None:
            return obj
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self._dist is None:
            return [obj]
        box = [None] * self.size
        self._dist.all_gather_object(box, obj)
        return box

    def barrier(self) -> None:
        if self._dist is not None:
            self._dist.barrier()

    def close(self) -> None:
        if self._dist is not None:
            self._dist.destroy_process_group()
            self._dist = None
