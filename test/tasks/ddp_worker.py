"""One rank of test_ddp's trainings: `ddp_worker.py BIN ESPNET_ARGS...` runs sepalm_espnet.bin.BIN.

ESPnet writes checkpoints on rank 0 only and its main() returns nothing, so nothing it leaves
shows what the other ranks hold. This worker runs the bin's own main() with its task's own
trainer, subclassed only to write, on every rank, <output_dir>/ddp_rank<R>.pth: the parameters
before and after Trainer.run, the utterances the rank trained on, and how it was wrapped.
The launcher (torchrun, srun) starts one worker per rank, as it would start the bin.
"""
import importlib
import sys
from pathlib import Path

import torch
from espnet2.tasks.abs_task import AbsTask


def task_of(module) -> type:
    """The AbsTask subclass a bin module trains (each bin imports exactly one)."""
    tasks = {value for value in vars(module).values()
             if isinstance(value, type) and issubclass(value, AbsTask) and value is not AbsTask}
    if len(tasks) != 1:
        raise RuntimeError(f"{module.__name__}: expected one ESPnet task, found {sorted(t.__name__ for t in tasks)}")
    return tasks.pop()


def rank_recording(trainer: type) -> type:
    """`trainer`, also saving what each rank trained (see the module docstring)."""

    class RankRecordingTrainer(trainer):
        keys_seen = []
        wrapped_by = None

        @classmethod
        def run(cls, model, trainer_options, **kwargs):
            initial = {name: value.detach().clone() for name, value in model.state_dict().items()}
            super().run(model=model, trainer_options=trainer_options, **kwargs)
            distributed = torch.distributed.is_initialized()
            rank = torch.distributed.get_rank() if distributed else 0
            torch.save({
                "initial": initial,
                "trained": model.state_dict(),
                "keys": cls.keys_seen,
                "wrapped_by": cls.wrapped_by,
                "backend": torch.distributed.get_backend() if distributed else None,
                "world_size": torch.distributed.get_world_size() if distributed else 1,
            }, Path(trainer_options.output_dir) / f"ddp_rank{rank}.pth")

        @classmethod
        def train_one_epoch(cls, model, iterator, **kwargs):
            cls.wrapped_by = type(model).__name__

            def recorded():
                for keys, batch in iterator:
                    cls.keys_seen.extend(keys)
                    yield keys, batch

            return super().train_one_epoch(model=model, iterator=recorded(), **kwargs)

    return RankRecordingTrainer


def main(argv) -> None:
    if not argv:
        sys.exit("usage: ddp_worker.py BIN [ESPnet training options]  (BIN: a sepalm_espnet.bin *_train module)")
    bin_name, *cmd = argv
    module = importlib.import_module(f"sepalm_espnet.bin.{bin_name}")
    task = task_of(module)
    task.trainer = rank_recording(task.trainer)
    module.main(cmd=cmd)  # the bin leaves its process group at exit (tasks/launch.py)


if __name__ == "__main__":
    main(sys.argv[1:])
