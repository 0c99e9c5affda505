"""Every training bin's entry: its task's ESPnet main(), and the process group left before exit.

ESPnet never calls destroy_process_group. Under gloo (CPU ranks: the recipe's `--ngpu 0`
multi-node job, or torchrun) a rank that exits with its group alive sometimes aborts with
"terminate called without an active exception" after every checkpoint was written
(pytorch/pytorch#190489; 1 run in ~20 in test/tasks/test_ddp.py), and the job runner then
reports the training failed. Ranks started by ESPnet itself for --ngpu > 1 are GPU (NCCL) ranks.
"""
from __future__ import annotations

import atexit
from typing import Optional, Sequence

import torch.distributed


def leave_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def train(task: type, cmd: Optional[Sequence[str]] = None) -> None:
    """`task.main(cmd)` (an ESPnet AbsTask), leaving any process group it joined at exit."""
    atexit.register(leave_process_group)
    task.main(cmd=cmd)
