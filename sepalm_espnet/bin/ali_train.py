"""Train (or collect stats for) the aligner with ESPnet's trainer (stage 12).

`python -m sepalm_espnet.bin.ali_train <ESPnet training options>`: every ESPnet option works
unchanged (--ngpu, --dist_launcher, --resume, --use_amp, ...).
"""
from sepalm_espnet.tasks.aligner import AlignerTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(AlignerTask, cmd)


if __name__ == "__main__":
    main()
