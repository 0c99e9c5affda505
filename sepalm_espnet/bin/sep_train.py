"""Train (or collect stats for) a separator with ESPnet's own enh trainer, SepFormer registered.

`python -m sepalm_espnet.bin.sep_train <espnet2.bin.enh_train options>`: every ESPnet option
works unchanged (--ngpu, --dist_launcher, --multiprocessing_distributed, --resume, ...).
"""
from sepalm_espnet.separator.registry import EnhancementTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(EnhancementTask, cmd)


if __name__ == "__main__":
    main()
