"""``relsum train`` across processes (DDP under ``accelerate launch`` / ``torchrun``): who does what.

Why: TRL's GRPOTrainer already shards prompts, all-reduces gradients and gathers rewards across
processes, but the stage around it writes files and tracking records that must exist once. The rule
is: every process loads its own reward scorer and trains; only the main process (rank 0) builds the
tiny default policy (the others wait), writes the adapter, the held-out comparison, the MLflow run and
the model version, and ``train_result.json``.

The backend follows the device, as accelerate picks it: with ``use_cpu`` (``policy.bf16=false``) the
process group is gloo on the CPU (``DistributedType.MULTI_CPU``), on GPUs NCCL. Launch commands:

- CPU, 2 processes (gloo)::

      accelerate launch --config_file relsum/configs/accelerate_cpu_ddp.yaml -m relsum.cli train ...
      # same as: torchrun --nproc_per_node 2 -m relsum.cli train ...

  (``accelerate launch --cpu`` starts one process unless MPI is configured; the config file uses the
  torchrun launcher, and the CPU-only TrainingArguments make accelerate pick gloo.)
- one node, N GPUs (NCCL)::

      accelerate launch --config_file relsum/configs/accelerate_multi_gpu.yaml --num_processes N \\
          -m relsum.cli train train.policy.bf16=true ...
- DeepSpeed ZeRO-2: ``--config_file relsum/configs/accelerate_zero2.yaml`` (needs ``deepspeed``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

logger = logging.getLogger(__name__)


def world_size() -> int:
    """Processes in the job (``WORLD_SIZE`` set by torchrun / accelerate launch; 1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def init(cpu: bool) -> None:
    """Join the process group now (gloo with ``cpu``, else the accelerator's backend), if launched.

    The Trainer would do it later with the same settings (accelerate's ``PartialState`` is a
    singleton); doing it first lets the stage wait on rank 0 before training starts.
    """
    if world_size() <= 1:
        return
    from accelerate import PartialState

    state = PartialState(cpu=cpu)
    logger.info("process %d of %d, backend %s, device %s", state.process_index, state.num_processes,
                state.backend, state.device)


def barrier() -> None:
    """Wait for every process (no-op when not launched)."""
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a shared folder); the others run it after, when it exists."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()
