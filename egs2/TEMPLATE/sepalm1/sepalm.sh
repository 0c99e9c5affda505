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
skip_stages=""         # stages not to run, e.g. "5 6 7"
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

# Separator (stages 3, 4)
sep_config=conf/train_sep.yaml  # ESPnet enh training config (separator: sepformer)
sep_tag=                        # experiment name (default: the config file's name)
sep_args=                       # extra training options, e.g. "--max_epoch 1"
sep_inference_model=valid.si_snr_loss.ave.pth  # checkpoint that separates in stage 4
sep_segment_sec=8.0             # long inputs are separated in segments of this length
sep_hop_sec=4.0                 # segment shift (overlap = segment - hop)

# Packing (stage 15)
packed_name=                    # archive name (default: sepalm_<sep_tag>)

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
implemented_stages="1 2 3 4 14 15"
is_skipped() {
    case " ${skip_stages} " in *" $1 "*) return 0 ;; esac
    [ "$1" -eq 16 ] && [ "${skip_upload_hf}" = true ]
}
for n in $(seq "${stage}" "${stop_stage}"); do
    if is_skipped "${n}"; then
        log "Stage ${n} is skipped (--skip_stages / --skip_upload_hf)"
        continue
    fi
    case " ${implemented_stages} " in
        *" ${n} "*) ;;
        *) fail "stage ${n} is not implemented yet; stop before it (--stop_stage) or skip it (--skip_stages)" ;;
    esac
done

[ -n "${sep_tag}" ] || sep_tag=$(basename "$(readlink -f "${sep_config}")" .yaml)
sep_exp=${expdir}/sep_${sep_tag}
sep_stats_dir=${expdir}/sep_stats_${fs}

runs() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && ! is_skipped "$1"; }
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
min() { printf '%s\n' "$@" | sort -n | head -n 1; }
# Splits an scp into at most $3 key files $2/keys.<n>.scp; prints how many it made.
split_keys() {
    local n
    n=$(min "$3" "$(wc -l < "$1")")
    mkdir -p "$2"
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

# ESPnet data options of the enh task: the mixture and one reference per speaker.
enh_data_opts() {
    local split=$1 dir=$2 n
    echo "--${split}_data_path_and_name_and_type ${dir}/wav.scp,speech_mix,sound"
    for n in $(seq "$(num_speakers "${dir}")"); do
        echo "--${split}_data_path_and_name_and_type ${dir}/spk${n}.scp,speech_ref${n},sound"
    done
}
num_speakers() { find "$1" -maxdepth 1 -name 'spk[0-9]*.scp' | wc -l; }

# One training job through ESPnet's distributed options: one process per GPU on one node, or
# (slurm, --num_nodes > 1) one task per node that ESPnet's --dist_launcher slurm expands.
launch_training() {
    local log=$1
    shift
    local dist_opts=(--ngpu "${ngpu}" --multiprocessing_distributed true)
    [ "${ngpu}" -eq 0 ] && dist_opts+=(--dist_backend gloo)
    if [ "${num_nodes}" -gt 1 ]; then
        [ "${cmd_backend}" = slurm ] || fail "--num_nodes ${num_nodes} needs cmd_backend=slurm (cmd.sh)"
        ${cuda_cmd} --gpu "${ngpu}" --num_nodes "${num_nodes}" "${log}" srun --export=ALL "$@" \
            "${dist_opts[@]}" --dist_launcher slurm \
            --dist_init_method "file://$(pwd)/$(dirname "${log}")/.dist_init_$(date +%s)"
    else
        ${cuda_cmd} --gpu "${ngpu}" "${log}" "$@" "${dist_opts[@]}"
    fi
}

if runs 3; then
    _train_dir=${dumpdir}/raw/${train_set}
    _valid_dir=${dumpdir}/raw/${valid_set}
    [ -f "${sep_config}" ] || fail "--sep_config ${sep_config}: file not found"
    signature="config=$(md5sum < "${sep_config}") train=$(cat "${_train_dir}/.done" 2>/dev/null | md5sum)"
    if is_done "${sep_stats_dir}" "${signature}"; then
        log "Stage 3: ${sep_stats_dir} is up to date, skipped"
    else
        log "Stage 3: collect shape statistics in ${sep_stats_dir}"
        start_or_resume "${sep_stats_dir}" "${signature}"
        _logdir=${sep_stats_dir}/logdir
        # As many train as valid key files: each stats job takes one of each.
        _nj=$(min "${nj}" "$(wc -l < "${_valid_dir}/wav.scp")")
        _nj=$(split_keys "${_train_dir}/wav.scp" "${_logdir}" "${_nj}")
        split_keys "${_valid_dir}/wav.scp" "${_logdir}/valid" "${_nj}" > /dev/null
        # shellcheck disable=SC2046,SC2086
        ${train_cmd} JOB=1:"${_nj}" "${_logdir}/stats.JOB.log" \
            ${python} -m sepalm_espnet.bin.sep_train --collect_stats true --config "${sep_config}" \
                --sample_rate "${fs}" \
                $(enh_data_opts train "${_train_dir}") $(enh_data_opts valid "${_valid_dir}") \
                --train_shape_file "${_logdir}/keys.JOB.scp" \
                --valid_shape_file "${_logdir}/valid/keys.JOB.scp" \
                --output_dir "${_logdir}/stats.JOB" ${sep_args}
        # shellcheck disable=SC2046
        ${python} -m espnet2.bin.aggregate_stats_dirs --output_dir "${sep_stats_dir}" \
            $(for n in $(seq "${_nj}"); do echo "--input_dir ${_logdir}/stats.${n}"; done)
        mark_done "${sep_stats_dir}" "${signature}"
    fi

    signature="${signature} args=${sep_args} stats=$(md5sum < "${sep_stats_dir}/.done")"
    if is_done "${sep_exp}" "${signature}"; then
        log "Stage 3: ${sep_exp} is trained, skipped"
    else
        log "Stage 3: train the separator in ${sep_exp} (log: ${sep_exp}/train.log)"
        # No start_or_resume here: ESPnet's --resume continues from the last checkpoint.
        mkdir -p "${sep_exp}"
        _speech_shapes=()
        for _split in train valid; do
            for _shape in "${sep_stats_dir}/${_split}"/speech_{mix,ref[0-9]*}_shape; do
                _speech_shapes+=(--"${_split}"_shape_file "${_shape}")
            done
        done
        # shellcheck disable=SC2046,SC2086
        launch_training "${sep_exp}/train.log" \
            ${python} -m sepalm_espnet.bin.sep_train --config "${sep_config}" --sample_rate "${fs}" \
                $(enh_data_opts train "${_train_dir}") $(enh_data_opts valid "${_valid_dir}") \
                "${_speech_shapes[@]}" --resume true --output_dir "${sep_exp}" ${sep_args}
        [ -e "${sep_exp}/${sep_inference_model}" ] \
            || fail "training ended without ${sep_exp}/${sep_inference_model} (see --sep_inference_model)"
        mark_done "${sep_exp}" "${signature}"
    fi
fi

if runs 4; then
    [ -e "${sep_exp}/${sep_inference_model}" ] || fail "${sep_exp}/${sep_inference_model} not found: run stage 3"
    model_signature="model=$(md5sum < "${sep_exp}/${sep_inference_model}") segment=${sep_segment_sec}/${sep_hop_sec}"
    for dset in $(all_sets); do
        _data=${dumpdir}/raw/${dset}
        _dir=${sep_exp}/decode/${dset}
        signature="${model_signature} data=$(md5sum < "${_data}/.done")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 4: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 4: separate ${_data} into ${_dir}"
        start_or_resume "${_dir}" "${signature}"
        _logdir=${_dir}/logdir
        _nj=$(split_keys "${_data}/wav.scp" "${_logdir}" "${inference_nj}")
        ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/separate.JOB.log" \
            ${python} -m sepalm_espnet.bin.sep_inference --wav_scp "${_data}/wav.scp" \
                --key_file "${_logdir}/keys.JOB.scp" --output_dir "${_logdir}/output.JOB" \
                --model_file "${sep_exp}/${sep_inference_model}" --train_config "${sep_exp}/config.yaml" \
                --fs "${fs}" --segment_sec "${sep_segment_sec}" --hop_sec "${sep_hop_sec}" --ngpu "${ngpu}"
        for n in $(seq "$(num_speakers "${_logdir}/output.1")"); do
            cat "${_logdir}"/output.*/spk"${n}".scp | LC_ALL=C sort > "${_dir}/spk${n}.scp.tmp"
            mv "${_dir}/spk${n}.scp.tmp" "${_dir}/spk${n}.scp"
        done
        # Speaker order: estimates are matched to the references once, here, by PIT (SI-SNR);
        # every later stage reads this permutation.
        if [ ! -f "${_data}/spk1.scp" ]; then
            log "Stage 4: ${_data} has no references: no permutation for ${dset}"
            mark_done "${_dir}" "${signature}"
            continue
        fi
        ${decode_cmd} JOB=1:"${_nj}" "${_logdir}/permutation.JOB.log" \
            ${python} -m sepalm_espnet.bin.score_separation --permutation_only \
                --ref_dir "${_data}" --est_dir "${_dir}" --key_file "${_logdir}/keys.JOB.scp" \
                --out_dir "${_logdir}/pit.JOB"
        cat "${_logdir}"/pit.*/permutation | LC_ALL=C sort > "${_dir}/permutation.tmp"
        mv "${_dir}/permutation.tmp" "${_dir}/permutation"
        mark_done "${_dir}" "${signature}"
    done
fi

if runs 14; then
    for dset in ${test_sets}; do
        _data=${dumpdir}/raw/${dset}
        _est=${sep_exp}/decode/${dset}
        _dir=${_est}/score
        [ -f "${_est}/.done" ] || fail "${_est} not found: run stage 4"
        signature="estimates=$(md5sum < "${_est}/.done")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 14: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 14: score ${_est} against ${_data}"
        start_or_resume "${_dir}" "${signature}"
        _logdir=${_dir}/logdir
        _nj=$(split_keys "${_data}/wav.scp" "${_logdir}" "${inference_nj}")
        ${decode_cmd} JOB=1:"${_nj}" "${_logdir}/score.JOB.log" \
            ${python} -m sepalm_espnet.bin.score_separation --ref_dir "${_data}" --est_dir "${_est}" \
                --key_file "${_logdir}/keys.JOB.scp" --out_dir "${_logdir}/split.JOB"
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.score_separation --out_dir "${_dir}" \
            --merge_dirs $(seq -f "${_logdir}/split.%g" 1 "${_nj}")
        mark_done "${_dir}" "${signature}"
    done
    ${python} -m sepalm_espnet.bin.make_results --output "${expdir}/RESULTS.md" \
        --test_sets ${test_sets} --system "SepFormer (${sep_tag})=${sep_exp}/decode/{test_set}/score" \
        --metadata "date=$(date '+%Y-%m-%d')" --metadata "separator config=${sep_config}" \
        --metadata "separator model=${sep_exp}/${sep_inference_model}"
    log "Stage 14: results in ${expdir}/RESULTS.md"
    cat "${expdir}/RESULTS.md" >&2
fi

if runs 15; then
    _archive=${expdir}/packed/${packed_name:-sepalm_${sep_tag}}.zip
    [ -f "${expdir}/RESULTS.md" ] || fail "${expdir}/RESULTS.md not found: run stage 14"
    log "Stage 15: pack ${_archive}"
    ${python} -m sepalm_espnet.bin.pack_model --out "${_archive}" \
        --separator_config "${sep_exp}/config.yaml" --separator_model "${sep_exp}/${sep_inference_model}" \
        --results "${expdir}/RESULTS.md"
    log "Stage 15: load it with: python -c \"from sepalm_espnet.inference import SeparatorModel;" \
        "print(SeparatorModel.from_pretrained('${_archive}').separate('mixture.wav'))\""
fi

log "Successfully finished stages ${stage}-${stop_stage}"
