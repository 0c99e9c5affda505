#!/usr/bin/env bash
# The paper's corpora (§4.1, §4.4): trained on Libri2Mix + WHAM! + WHAMR!, tested on each and
# on WSJ0-2mix with MUSAN / DEMAND noise. Corpus roots are set in db.sh. Pretrained models
# come from the Hugging Face hub or local copies: Whisper-tiny (teacher and WER transcriber),
# SpeechGPT-7B-cm (corrector, LoRA) and DAC 16 kHz (codec).
#
# Units (§3.3): SpeechGPT understands only its own extractor's units, mHuBERT
# mhubert_base_vp_en_es_fr_it3 layer 11 quantised by its 1000-cluster k-means. Convert both
# once (the only steps that unpickle: trusted files only), from the files SpeechGPT's
# speech2unit uses (mhubert_base_vp_en_es_fr_it3.pt, mhubert_base_vp_en_es_fr_it3_L11_km1000.bin):
#   python -m sepalm_espnet.bin.convert_fairseq_hubert --checkpoint mhubert_base_vp_en_es_fr_it3.pt \
#       --output_dir downloads/mhubert_base_vp_en_es_fr_it3
#   python -m sepalm_espnet.bin.fit_kmeans --feature_type hubert --layer 11 \
#       --hubert_dir downloads/mhubert_base_vp_en_es_fr_it3 \
#       --sklearn_model mhubert_base_vp_en_es_fr_it3_L11_km1000.bin --output_dir downloads/mhubert_L11_km1000
# A corrector other than SpeechGPT may fit its own k-means instead: --unit_kmeans "" (with
# --unit_kmeans_refit true while --cor_base_tokenizer is SpeechGPT's).
#
# Separator (stage 3): SepFormer trained here (days of GPU time), or SpeechBrain's published
# 16 kHz WHAMR! SepFormer imported instead: --sep_pretrained speechbrain/sepformer-whamr16k
# (then optionally fine-tuned: --sep_init exp/sep_sepformer-whamr16k/valid.si_snr_loss.ave.pth).
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
    --unit_hubert downloads/mhubert_base_vp_en_es_fr_it3 \
    --unit_layer 11 \
    --unit_clusters 1000 \
    --unit_kmeans downloads/mhubert_L11_km1000 \
    --cor_base_tokenizer fnlp/SpeechGPT-7B-cm \
    --codec 16khz \
    "$@"
