#!/usr/bin/env bash
# Stage 1: Kaldi data dirs of the paper's corpora, from the roots in db.sh.
#   data/{libri2mix,wham,whamr}_{train,dev,test}  one corpus each (Libri2Mix train = train-100 + train-360)
#   data/train_all, data/dev_all                 their union, keys prefixed libri2mix_, wham_, whamr_
#   data/ood_{musan,demand}_test                 --ood true: WSJ0-2mix tt speech + MUSAN / DEMAND noise
# The Python checks the roots and names the db.sh variable to fix. A data dir that exists is
# finished (written aside, validated, then renamed), so a rerun skips it.
set -euo pipefail

log() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2
}

sets="libri2mix wham whamr"  # corpora to prepare (paper §4.1 trains on all three; "" for none)
ood=true                     # also generate the out-of-domain test sets (paper §4.4)
seed=0                       # seed of the out-of-domain mixing (SNR, noise file, offset)
datadir=data                 # where the data dirs go
nj=4                         # parallel jobs of the out-of-domain mixing
wsj0_text_dir=               # WSJ0 .dot transcripts (licensed, optional): texts of WHAM!, WHAMR!, OOD
ood_audio_root=              # where the out-of-domain wavs go (empty: <datadir>/ood_audio)
help_message="Usage: $0 [options]   (corpus roots are set in db.sh)"

. utils/parse_options.sh
. ./path.sh
. ./db.sh

if [ -n "${sets}" ]; then
    log "Preparing ${sets} in ${datadir}"
    # shellcheck disable=SC2086  # ${sets} is a word list
    python -m sepalm_espnet.bin.prepare_libri2mix_wham --datadir "${datadir}" --corpora ${sets} \
        --librispeech "${LIBRISPEECH}" --libri2mix "${LIBRI2MIX}" --wham "${WHAM}" --whamr "${WHAMR}" \
        --wsj0_text_dir "${wsj0_text_dir}"
fi

if [ "${ood}" = true ]; then
    for noise_corpus in musan demand; do
        root_variable=${noise_corpus^^}
        log "Generating the out-of-domain set with ${root_variable} noise"
        python -m sepalm_espnet.bin.make_ood_mixtures --noise_corpus "${noise_corpus}" \
            --noise_root "${!root_variable}" --wsj0_2mix "${WSJ0_2MIX}" --datadir "${datadir}" \
            --audio_root "${ood_audio_root:-${datadir}/ood_audio}" --seed "${seed}" --nj "${nj}" \
            --wsj0_text_dir "${wsj0_text_dir}"
    done
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
