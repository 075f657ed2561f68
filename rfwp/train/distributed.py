"""Data-parallel training: the processes that ``torchrun`` starts train one model, each on its share of the batch.

    torchrun --standalone --nproc_per_node 2 <a task's script or -m module> ...    (or python -m torch.distributed.run)

Each process builds the same model from the run's seed on its device (``setup()``: GPU ``LOCAL_RANK`` where
CUDA is available, else the CPU) and reads its own columns of the token stream
(``ContiguousSegments(..., rank=rank(), world_size=world_size())``); ``SequenceTrainer`` trains the model in
``DistributedDataParallel`` (``wrap``), and ``execute`` runs the same loop in every process and writes checkpoints
and the run record from the main process only. Without torchrun (no WORLD_SIZE in the environment) there is one
process, nothing is initialised and every helper here is the identity.
"""
from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

_device: torch.device | None = None   # this process's device, fixed by the first setup()


def _environment(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} in the environment is not an integer (torchrun sets it)") from None


def world_size() -> int:
    """The number of processes training together (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return _environment("WORLD_SIZE", 1)


def rank() -> int:
    """This process's index among them, 0 to world_size() - 1 (torchrun's RANK)."""
    return _environment("RANK", 0)


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK): the GPU it uses."""
    return _environment("LOCAL_RANK", 0)


def is_main() -> bool:
    """Whether this process is the one that writes (rank 0)."""
    return rank() == 0


def setup(device: torch.device | str | None = None) -> torch.device:
    """This process's device, and under torchrun the process group, initialised once: NCCL when the device is a
    GPU, gloo on the CPU. The device defaults to GPU ``LOCAL_RANK`` where CUDA is available, else the CPU; later
    calls return the first call's device (naming a different one is an error)."""
    global _device
    wanted = None if device is None else torch.device(device)
    if wanted is not None and wanted.type == "cuda" and wanted.index is None:
        wanted = torch.device("cuda", local_rank())
    if _device is not None:
        if wanted is not None and wanted != _device:
            raise ValueError(f"this process was set up on {_device}, not {wanted}: build the model on "
                             f"rfwp.train.distributed.setup()'s device")
        return _device
    if wanted is None:
        wanted = torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    if wanted.type == "cuda":
        torch.cuda.set_device(wanted)   # NCCL's collectives run on the current GPU
    if world_size() > 1 and not dist.is_initialized():
        missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise ValueError(f"WORLD_SIZE is {world_size()} but {', '.join(missing)} not set: start the processes "
                             f"with torchrun --nproc_per_node {world_size()}")
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo",
                                device_id=wanted if wanted.type == "cuda" else None)
        atexit.register(_close)
    _device = wanted
    return _device


def _close() -> None:
    """Leave the process group at exit (unless the program already did): NCCL warns about a group left open."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun (its parameters' device sets up the process, see
    ``setup``), else ``model`` itself. DDP broadcasts the main process's weights when it wraps, and averages
    the gradients over the processes in every backward pass outside ``no_sync()``."""
    if world_size() == 1:
        return model
    device = setup(next(model.parameters()).device)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def all_sum(value: float) -> float:
    """``value`` summed over the processes, in float64 (token counts stay exact)."""
    if world_size() == 1:
        return value
    total = torch.tensor(value, dtype=torch.float64, device=setup())
    dist.all_reduce(total)
    return total.item()


def gather(value) -> list:
    """Every process's ``value`` (anything picklable; tensors on the CPU), in rank order, in every process."""
    if world_size() == 1:
        return [value]
    setup()
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def broadcast(value):
    """The main process's ``value`` (anything picklable), in every process."""
    if world_size() == 1:
        return value
    setup()
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here."""
    if world_size() > 1:
        setup()
        dist.barrier()
