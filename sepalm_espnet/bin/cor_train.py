"""Train (or collect stats for) the audio-LM corrector with ESPnet's trainer (stage 7).

`python -m sepalm_espnet.bin.cor_train --config conf/train_cor.yaml --tokenizer_dir DIR
    --train_data_path_and_name_and_type data/train/units,units,text (also text_pt, text_ct) ...`:
every ESPnet training option works unchanged (--ngpu, --dist_launcher, --multiprocessing_distributed,
--resume, --collect_stats, ...).
"""
from sepalm_espnet.tasks.corrector import CorrectorTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(CorrectorTask, cmd)


if __name__ == "__main__":
    main()
