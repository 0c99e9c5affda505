"""Train (or collect stats for) SLM-SS, the generative separator, with ESPnet's trainer (stage 3
with --separator_type slm_ss).

`python -m sepalm_espnet.bin.slm_ss_train <ESPnet training options> --codec CODEC`: every ESPnet
option works unchanged (--ngpu, --dist_launcher, --resume, --use_amp, ...).
"""
from sepalm_espnet.tasks.slm_ss import SlmSsTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(SlmSsTask, cmd)


if __name__ == "__main__":
    main()
