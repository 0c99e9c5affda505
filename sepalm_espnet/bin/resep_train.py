"""Train (or collect stats for) the re-separation ablation (Table 3 (a)) with ESPnet's trainer.

`python -m sepalm_espnet.bin.resep_train <ESPnet training options> --token_list FILE`: every
ESPnet option works unchanged (--ngpu, --dist_launcher, --resume, --use_amp, ...).
"""
from sepalm_espnet.tasks.reseparation import ReseparationTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(ReseparationTask, cmd)


if __name__ == "__main__":
    main()
