#!/usr/bin/env bash
# Offline toy corpus synthesized locally (TTS voices, coloured noise and babble): what CI runs.
set -euo pipefail

./sepalm.sh \
    --train_set train \
    --valid_set dev \
    --test_sets test \
    --nj 2 \
    --inference_nj 2 \
    "$@"
