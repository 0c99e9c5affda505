"""Train (or collect stats for) the text-to-semantic model with ESPnet's own trainer.

`python -m sepalm_espnet.bin.t2s_train <ESPnet task options>`: every ESPnet option works
unchanged; the data names (phonemes, units) are in sepalm_espnet/tasks/t2s.py.
"""
from sepalm_espnet.tasks.t2s import TextToSemanticTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(TextToSemanticTask, cmd)


if __name__ == "__main__":
    main()
