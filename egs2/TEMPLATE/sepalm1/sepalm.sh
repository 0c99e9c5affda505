#!/usr/bin/env bash
# SepALM recipe: separate, correct in the text domain, re-synthesize, align.
# The one stage script every egs2/<corpus>/sepalm1/run.sh calls. Stage numbers are a public
# interface (design.md). Each stage skips work a previous run finished (.done markers) and
# moves outputs into place only when complete.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
fail() { log "error: $*"; exit 1; }

# General
stage=1                # first stage to run
stop_stage=15          # last stage to run (16 uploads and is skipped unless --skip_upload_hf false)
nj=4                   # parallel jobs of CPU stages
inference_nj=4         # parallel jobs of inference stages
ngpu=0                 # GPUs per training job (0: CPU)
num_nodes=1            # nodes of a multi-node training job (slurm)
dumpdir=dump           # formatted audio
expdir=exp             # models and decodes
python=python3

# Data
local_data_opts=""     # options passed to local/data.sh
train_set=train
valid_set=dev
test_sets="test"
fs=16000               # every stage works at this sample rate
audio_format=wav       # wav or flac for dumped audio

# Upload
skip_upload_hf=true    # stage 16 only runs with --skip_upload_hf false

help_message="Usage: $0 [options]

Stages:
   1  local/data.sh: Kaldi data dirs (wav.scp, spk1.scp, spk2.scp, noise1.scp, text_spk1/2)
   2  format: resample to --fs, downmix, dump to ${dumpdir}/raw/<set>, utt2num_samples
   3  separator: collect stats + train SepFormer (ESPnet enh task)
   4  separator inference on train, dev and test sets
   5  ASR teacher transcripts (Whisper greedy) of separated and clean speech
   6  speech units (HuBERT features + k-means) of separated speech
   7  corrector fine-tuning (audio LM, LoRA, chain-of-thought targets)
   8  corrector inference: preliminary + corrected transcripts
   9  DAC tokens of separated and clean speech; G2P of corrected text
  10  synthesizer training (AR+NAR or masked codec LM)
  11  synthesizer inference: refined speech
  12  aligner training
  13  full SepALM inference on the test sets
  14  scoring: SI-SNRi SDRi PESQi ESTOIi WER SIM RTF -> RESULTS.md
  15  pack a model-zoo archive
  16  upload to the Hugging Face hub (skipped unless --skip_upload_hf false)
"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

[ "${stage}" -le "${stop_stage}" ] || fail "--stage ${stage} is after --stop_stage ${stop_stage}"
[ "${stage}" -ge 1 ] && [ "${stop_stage}" -le 16 ] || fail "stages are 1 to 16"

# Stages whose implementation has not landed yet stop the run rather than being skipped.
implemented_stages="1 2"
for n in $(seq "${stage}" "${stop_stage}"); do
    [ "${n}" -eq 16 ] && [ "${skip_upload_hf}" = true ] && continue
    case " ${implemented_stages} " in
        *" ${n} "*) ;;
        *) fail "stage ${n} is not implemented yet; run with --stop_stage $((n - 1)) (see --help)" ;;
    esac
done

runs() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
all_sets() { echo "${train_set} ${valid_set} ${test_sets}"; }

# A stage's outputs carry a .done marker holding the options they were made with; a rerun
# with the same options skips them, other options make the stage redo them.
is_done() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }
mark_done() { echo "$2" > "$1/.done"; }
# Partial outputs of an interrupted run are reused only if made with the same options.
start_or_resume() {
    if [ -f "$1/.signature" ] && [ "$(cat "$1/.signature")" != "$2" ]; then
        log "$1 was started with other options: removing it"
        rm -rf "$1"
    fi
    rm -f "$1/.done"
    mkdir -p "$1/logdir"
    echo "$2" > "$1/.signature"
}
# Splits an scp into at most $3 key files $2/keys.<n>.scp; prints how many it made.
split_keys() {
    local n
    n=$(wc -l < "$1")
    [ "$3" -lt "${n}" ] && n=$3
    # shellcheck disable=SC2046
    split_scp.sh "$1" $(seq -f "$2/keys.%g.scp" 1 "${n}")
    echo "${n}"
}

if runs 1; then
    log "Stage 1: data preparation: local/data.sh ${local_data_opts}"
    signature="local/data.sh ${local_data_opts}"
    if is_done data "${signature}"; then
        log "Stage 1: data/ is up to date, skipped"
    else
        # shellcheck disable=SC2086
        local/data.sh ${local_data_opts}
        for dset in $(all_sets); do
            validate_data_dir.sh "data/${dset}"
        done
        mark_done data "${signature}"
    fi
fi

if runs 2; then
    log "Stage 2: format audio at ${fs} Hz (${audio_format}) into ${dumpdir}/raw"
    for dset in $(all_sets); do
        out=${dumpdir}/raw/${dset}
        signature="fs=${fs} audio_format=${audio_format} src=$(cat "data/${dset}/wav.scp" | md5sum)"
        if is_done "${out}" "${signature}"; then
            log "Stage 2: ${out} is up to date, skipped"
            continue
        fi
        # Audio files are each written atomically and kept by a resumed run with the same
        # options; the Kaldi files appear only after the merge has checked every shard.
        start_or_resume "${out}" "${signature}"
        _nj=$(split_keys "data/${dset}/wav.scp" "${out}/logdir" "${nj}")
        ${train_cmd} JOB=1:"${_nj}" "${out}/logdir/format.JOB.log" \
            ${python} -m sepalm_espnet.bin.format_data_dir shard "data/${dset}" "${out}" \
                --fs "${fs}" --audio_format "${audio_format}" \
                --key_file "${out}/logdir/keys.JOB.scp" --shard_name JOB
        ${python} -m sepalm_espnet.bin.format_data_dir merge "data/${dset}" "${out}" --num_shards "${_nj}"
        mark_done "${out}" "${signature}"
    done
fi

log "Successfully finished stages ${stage}-${stop_stage}"
