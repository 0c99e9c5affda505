#!/usr/bin/env bash
# Offline toy corpus synthesized locally (TTS voices, coloured noise and babble): what CI runs.
set -euo pipefail

./sepalm.sh \
    --local_data_opts "--n_train 120 --n_dev 20 --n_test 20" \
    --train_set train \
    --valid_set dev \
    --test_sets test \
    --nj 2 \
    --inference_nj 2 \
    "$@"
