#!/usr/bin/env bash
# The paper's corpora (§4.1, §4.4): trained on Libri2Mix + WHAM! + WHAMR!, tested on each and
# on WSJ0-2mix with MUSAN / DEMAND noise. Corpus roots are set in db.sh.
set -euo pipefail

./sepalm.sh \
    --train_set train_all \
    --valid_set dev_all \
    --test_sets "libri2mix_test wham_test whamr_test ood_musan_test ood_demand_test" \
    --fs 16000 \
    --nj 16 \
    --inference_nj 8 \
    --ngpu 1 \
    "$@"
