#!/usr/bin/env bash
# Stage 1: synthesize the offline mini LibriMix corpus (Debian TTS voices, fortunes sentences,
# coloured noise and babble, optional WHAMR!-style reverb) and its data dirs:
#   data/{train,dev,test}/{wav.scp,spk1.scp,spk2.scp,noise1.scp,utt2spk,spk2utt,text_spk1,text_spk2}
# Deterministic from --seed; a rerun with the same options keeps what is done, other options
# into an existing --corpus_dir are refused. The Python main holds the defaults and documents
# the corpus: python -m sepalm_espnet.bin.prepare_mini_librimix --help
set -euo pipefail

log() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2
}

corpus_dir=downloads/mini_librimix  # generated audio and metadata (git-ignored)
datadir=data                        # where the data dirs go
n_train=                            # training mixtures (empty: the Python default)
n_dev=                              # development mixtures (empty: the Python default)
n_test=                             # test mixtures (empty: the Python default)
seed=                               # random seed (empty: the Python default)
reverb=                             # true: reverberant mixtures, anechoic references (empty: false)
nj=                                 # parallel processes (empty: the Python default)
help_message="Usage: $0 [options]"

. utils/parse_options.sh
. ./path.sh

# Only the options given are passed on, so the defaults live in the Python main alone.
# (Spelt out rather than looped over with ${!name}, so shellcheck sees each option used.)
opts=()
add_opt() { [ -z "$2" ] || opts+=("--$1" "$2"); }
add_opt n_train "${n_train}"
add_opt n_dev "${n_dev}"
add_opt n_test "${n_test}"
add_opt seed "${seed}"
add_opt reverb "${reverb}"
add_opt nj "${nj}"

log "Synthesizing mini LibriMix into ${corpus_dir}"
python -m sepalm_espnet.bin.prepare_mini_librimix --corpus_dir "${corpus_dir}" --datadir "${datadir}" "${opts[@]}"
log "Successfully finished. [elapsed=${SECONDS}s]"
