"""Train (or collect stats for) the cascade's text corrector with ESPnet's trainer (Table 3 (e)).

`python -m sepalm_espnet.bin.ger_train --config conf/tuning/train_ger_paper.yaml --tokenizer_dir LM_DIR
    --model_conf lm_name_or_path=LM_DIR --train_data_path_and_name_and_type DIR/nbest,nbest,text
    --train_data_path_and_name_and_type DIR/text_ct,text_ct,text ...`: every ESPnet training option
works unchanged (--ngpu, --dist_launcher, --resume, --collect_stats, ...).
"""
from sepalm_espnet.tasks.ger import GerTask
from sepalm_espnet.tasks.launch import train


def main(cmd=None):
    train(GerTask, cmd)


if __name__ == "__main__":
    main()
