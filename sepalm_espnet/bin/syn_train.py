"""Train (or collect stats for) a synthesizer, AR+NAR or masked, with ESPnet's own trainer.

`python -m sepalm_espnet.bin.syn_train <ESPnet task options>`: every ESPnet option works
unchanged (--ngpu, --dist_launcher, --multiprocessing_distributed, --resume, ...); the data
names are in sepalm_espnet/tasks/synthesizer.py.
"""
from sepalm_espnet.tasks.synthesizer import SynthesizerTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(SynthesizerTask, cmd)


if __name__ == "__main__":
    main()
