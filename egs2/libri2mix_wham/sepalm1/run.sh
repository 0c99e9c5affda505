#!/usr/bin/env bash
# The paper's corpora (§4.1, §4.4): trained on Libri2Mix + WHAM! + WHAMR!, tested on each and
# on WSJ0-2mix with MUSAN / DEMAND noise. Corpus roots are set in db.sh. Pretrained models
# come from the Hugging Face hub or local copies: Whisper-tiny (teacher and WER transcriber),
# a transformers HuBERT for the units (layer 11, 1000 clusters fitted on train; or SpeechGPT's
# k-means converted with bin/fit_kmeans.py --sklearn_model and given as --unit_kmeans),
# SpeechGPT-7B-cm (corrector, LoRA) and DAC 16 kHz (codec).
set -euo pipefail

./sepalm.sh \
    --train_set train_all \
    --valid_set dev_all \
    --test_sets "libri2mix_test wham_test whamr_test ood_musan_test ood_demand_test" \
    --fs 16000 \
    --nj 16 \
    --inference_nj 8 \
    --ngpu 1 \
    --asr_backend whisper \
    --asr_model tiny \
    --unit_feature hubert \
    --unit_hubert utter-project/mHuBERT-147 \
    --unit_layer 11 \
    --unit_clusters 1000 \
    --cor_base_tokenizer fnlp/SpeechGPT-7B-cm \
    --codec 16khz \
    "$@"
