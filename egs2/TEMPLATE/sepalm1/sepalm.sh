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

# ASR teacher (stage 5): Whisper transcripts, the corrector's distillation targets
asr_backend=whisper             # whisper (openai-whisper) or faster_whisper (CTranslate2)
asr_model=tiny                  # whisper: name or .pt file; faster_whisper: model dir (paper: Whisper-tiny)
asr_batch_size=8                # utterances per teacher call

# Speech units (stage 6)
unit_feature=hubert             # hubert (paper: mHuBERT layer 11) or logmel (offline mini recipes)
unit_hubert=                    # hubert: transformers HubertModel dir or hub id
unit_layer=11                   # hubert: transformer layer the units are clustered from
unit_clusters=1000              # k-means clusters (paper: 1000)
unit_kmeans=                    # a fitted k-means dir (bin/fit_kmeans.py) instead of fitting on the train set

# Corrector (stages 7, 8)
cor_config=conf/train_cor.yaml  # corrector training config (model: audio_lm)
cor_tag=                        # experiment name (default: the config file's name)
cor_args=                       # extra training options
cor_base_tokenizer=             # the pretrained LM's tokenizer (dir or hub id); empty: SentencePiece on train transcripts
cor_vocab_size=500              # SentencePiece vocabulary when training one
cor_inference_model=valid.acc.ave.pth  # checkpoint that corrects in stage 8
cor_inference_args=             # bin/cor_inference.py options, e.g. "--zero_shot" (Table 3 h), "--do_sample false"
cor_inference_tag=              # name of that decoding (default: made from cor_inference_args)
cor_cascade_lm=                 # Table 3 (e): stage 8 runs the cascade instead, Whisper N-best (beam 3)
                                #   corrected by this local causal LM directory (generative error correction)

# Codec and synthesizer (stages 9-11)
codec=16khz                     # DAC release tag or weights file (paper: DAC 16 kHz, 12 codebooks x 1024)
codec_config=                   # instead train a DAC-architecture codec with this config (offline mini recipes)
codec_args=                     # extra bin/codec_train.py options, e.g. "--max_steps 10"
syn_config=conf/train_syn.yaml  # synthesizer training config (model: ar_nar or masked)
syn_tag=                        # experiment name (default: the config file's name)
syn_args=                       # extra training options
syn_inference_model=valid.loss.ave.pth  # checkpoint that synthesizes in stage 11
syn_inference_args=             # bin/syn_inference.py options, e.g. "--guidance_scale 1.5"
t2s_config=conf/train_t2s.yaml  # text-to-semantic model of a masked synthesizer with `condition: semantic`
t2s_tag=                        # experiment name (default: the config file's name)
t2s_args=                       # extra training options
t2s_inference_model=valid.acc.ave.pth  # checkpoint that predicts semantic tokens in stage 11

# Aligner (stages 12, 13)
ali_config=conf/train_ali.yaml  # aligner training config (model: stft_cnn)
ali_tag=                        # experiment name (default: the config file's name)
ali_args=                       # extra training options
ali_inference_model=valid.loss.ave.pth  # checkpoint that aligns in stage 13

# Scoring (stage 14)
sim_backend=resemblyzer         # speaker similarity: resemblyzer (GE2E, ships in its wheel) or wavlm
sim_model=                      # wavlm: WavLMForXVector dir or hub id (paper: WavLM speaker verification)
rtf_utterances=4                # RTF per component: this many test mixtures, cut or looped to 5 s

# Packing (stage 15) and upload (stage 16)
packed_name=                    # archive name (default: sepalm_<sep_tag>)
skip_upload_hf=true             # stage 16 only runs with --skip_upload_hf false
hf_repo=                        # Hugging Face model repo id of stage 16, e.g. user/sepalm_libri2mix
hf_dry_run=false                # stage 16 lists what it would upload and touches no network

help_message="Usage: $0 [options]

Stages:
   1  local/data.sh: Kaldi data dirs (wav.scp, spk1.scp, spk2.scp, noise1.scp, text_spk1/2)
   2  format: resample to --fs, downmix, dump to ${dumpdir}/raw/<set>, utt2num_samples
   3  separator: collect stats + train SepFormer (ESPnet enh task)
   4  separator inference on train, dev and test sets
   5  ASR teacher transcripts (Whisper greedy) of separated and clean speech
   6  speech units (HuBERT or log-mel features + k-means) of separated speech
   7  corrector fine-tuning (audio LM, LoRA, chain-of-thought targets)
   8  corrector inference: preliminary + corrected transcripts (or the cascade, --cor_cascade_lm)
   9  DAC tokens of separated and clean speech (training a codec with --codec_config); G2P
  10  synthesizer training (AR+NAR or masked codec LM; + text-to-semantic for condition: semantic)
  11  synthesizer inference: refined speech
  12  aligner training
  13  SepALM output of the test sets (aligned separated and refined speech)
  14  scoring: SI-SNRi SDRi PESQi ESTOIi WER SIM RTF -> RESULTS.md
  15  pack a model-zoo archive
  16  upload to the Hugging Face hub (skipped unless --skip_upload_hf false)
"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

[ "${stage}" -le "${stop_stage}" ] || fail "--stage ${stage} is after --stop_stage ${stop_stage}"
[ "${stage}" -ge 1 ] && [ "${stop_stage}" -le 16 ] || fail "stages are 1 to 16"

# shellcheck source=scripts/stage_lib.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/stage_lib.sh"

is_skipped() {
    case " ${skip_stages} " in *" $1 "*) return 0 ;; esac
    [ "$1" -eq 16 ] && [ "${skip_upload_hf}" = true ]
}
runs() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && ! is_skipped "$1"; }
all_sets() { echo "${train_set} ${valid_set} ${test_sets}"; }
config_tag() { basename "$(readlink -f "$1")" .yaml; }

[ -n "${sep_tag}" ] || sep_tag=$(config_tag "${sep_config}")
[ -n "${cor_tag}" ] || cor_tag=$(config_tag "${cor_config}")
[ -n "${syn_tag}" ] || syn_tag=$(config_tag "${syn_config}")
[ -n "${ali_tag}" ] || ali_tag=$(config_tag "${ali_config}")
[ -n "${t2s_tag}" ] || t2s_tag=$(config_tag "${t2s_config}")
[ -z "${cor_cascade_lm}" ] || cor_inference_tag=cascade_$(basename "${cor_cascade_lm}")
if [ -z "${cor_inference_tag}" ]; then
    cor_inference_tag=$(echo "${cor_inference_args}" | sed -e 's/--//g' -e 's/[^A-Za-z0-9.]\+/_/g' -e 's/^_//' -e 's/_$//')
    [ -n "${cor_inference_tag}" ] || cor_inference_tag=default
fi
if [ -n "${codec_config}" ]; then
    codec_tag=$(config_tag "${codec_config}")
    codec_file=${expdir}/codec_${codec_tag}/codec.pth
else
    codec_tag=$(basename "${codec}" .pth)
    codec_file=${codec}
fi
kmeans_dir=${unit_kmeans:-${expdir}/kmeans_${unit_feature}${unit_clusters}}

sep_exp=${expdir}/sep_${sep_tag}
sep_stats_dir=${expdir}/sep_stats_${fs}
cor_exp=${expdir}/cor_${cor_tag}
cor_decode=${cor_exp}/decode_${cor_inference_tag}
syn_exp=${expdir}/syn_${syn_tag}
t2s_exp=${expdir}/t2s_${t2s_tag}
syn_decode=${syn_exp}/decode_${cor_tag}_${cor_inference_tag}
ali_exp=${expdir}/ali_${ali_tag}
ali_decode=${ali_exp}/decode_${syn_tag}_${cor_tag}_${cor_inference_tag}
# Per-set outputs derived from the separator's estimates live beside them.
sep_decode_of() { echo "${sep_exp}/decode/$1"; }
teacher_of() { echo "${sep_exp}/decode/$1/teacher"; }
units_of() { echo "${sep_exp}/decode/$1/units_$(basename "${kmeans_dir}")"; }
codec_tokens_of() { echo "${sep_exp}/decode/$1/codec_${codec_tag}"; }
# A masked synthesizer with `condition: semantic` (the paper's) is conditioned on units that a
# text-to-semantic model predicts from the corrected text; it learns them from units of the
# clean speech (stages 6 and 10).
syn_condition=$([ -f "${syn_config}" ] && ${python} -c 'import sys, yaml
print((yaml.safe_load(open(sys.argv[1])).get("model_conf") or {}).get("condition", ""))' "${syn_config}" || true)
uses_semantic() { [ "${syn_condition}" = semantic ]; }



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

if runs 3; then
    log "Stage 3: separator (${sep_config})"
    train_task sep sep_train "${sep_config}" "--sample_rate ${fs} ${sep_args}" "${sep_stats_dir}" "${sep_exp}" \
        "${sep_inference_model}" "${dumpdir}/raw/${train_set}" "${dumpdir}/raw/${valid_set}" enh_data_opts wav.scp speech_mix
fi

if runs 4; then
    [ -e "${sep_exp}/${sep_inference_model}" ] || fail "${sep_exp}/${sep_inference_model} not found: run stage 3"
    model_signature="model=$(md5sum < "${sep_exp}/${sep_inference_model}") segment=${sep_segment_sec}/${sep_hop_sec}"
    for dset in $(all_sets); do
        _data=${dumpdir}/raw/${dset}
        _dir=$(sep_decode_of "${dset}")
        signature="${model_signature} data=$(md5sum < "${_data}/.done")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 4: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 4: separate ${_data} into ${_dir}"
        start_split "${_data}/wav.scp" "${_dir}" "${signature}"
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

if runs 5; then
    for dset in $(all_sets); do
        _data=${dumpdir}/raw/${dset}
        _dec=$(sep_decode_of "${dset}")
        _dir=$(teacher_of "${dset}")
        [ -f "${_dec}/permutation" ] || fail "${_dec}/permutation not found: stage 5 needs references (run stage 4)"
        signature="teacher=${asr_backend}:${asr_model} estimates=$(done_sum "${_dec}")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 5: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 5: ${asr_backend} ${asr_model} transcripts of ${_dec} and of its references into ${_dir}"
        start_split "${_dec}/spk1.scp" "${_dir}" "${signature}"
        n_spk=$(num_speakers "${_dec}")
        # shellcheck disable=SC2046
        ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/teacher.JOB.log" \
            ${python} -m sepalm_espnet.bin.asr_teacher --backend "${asr_backend}" --model "${asr_model}" \
                --batch_size "${asr_batch_size}" --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" \
                --key_file "${_logdir}/keys.JOB.scp" \
                --wav_scp $(speaker_files "${_dec}" "${n_spk}" spk%n.scp) \
                --output $(speaker_files "${_logdir}" "${n_spk}" text_pt_spk%n.JOB) \
            '&&' ${python} -m sepalm_espnet.bin.asr_teacher --backend "${asr_backend}" --model "${asr_model}" \
                --batch_size "${asr_batch_size}" --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" \
                --key_file "${_logdir}/keys.JOB.scp" --permutation "${_dec}/permutation" \
                --wav_scp $(speaker_files "${_data}" "${n_spk}" spk%n.scp) \
                --output $(speaker_files "${_logdir}" "${n_spk}" text_ct_spk%n.JOB)
        for n in $(seq "${n_spk}"); do
            merge_jobs "${_dir}/text_pt_spk${n}" "${_logdir}/text_pt_spk${n}" "${_nj}"
            merge_jobs "${_dir}/text_ct_spk${n}" "${_logdir}/text_ct_spk${n}" "${_nj}"
        done
        # Ground truth, where the corpus has it, in the same (estimate) order for scoring.
        if [ -f "${_data}/text_spk1" ]; then
            # shellcheck disable=SC2046
            ${python} -m sepalm_espnet.bin.speaker_files reorder --permutation "${_dec}/permutation" \
                --input $(speaker_files "${_data}" "${n_spk}" text_spk%n) \
                --output $(speaker_files "${_dir}" "${n_spk}" text_gt_spk%n)
        fi
        mark_done "${_dir}" "${signature}"
    done
fi

if runs 6; then
    _train_dec=$(sep_decode_of "${train_set}")
    if [ -n "${unit_kmeans}" ]; then
        [ -f "${kmeans_dir}/centers.npy" ] || fail "--unit_kmeans ${unit_kmeans}: no centers.npy (see bin/fit_kmeans.py)"
    else
        hubert_opts=()
        [ "${unit_feature}" = hubert ] && hubert_opts=(--hubert_dir "${unit_hubert}" --layer "${unit_layer}")
        signature="feature=${unit_feature} ${hubert_opts[*]} clusters=${unit_clusters} train=$(done_sum "${_train_dec}")"
        if is_done "${kmeans_dir}" "${signature}"; then
            log "Stage 6: ${kmeans_dir} is up to date, skipped"
        else
            log "Stage 6: fit ${unit_clusters}-means on ${unit_feature} features of ${_train_dec}"
            start_or_resume "${kmeans_dir}" "${signature}"
            # shellcheck disable=SC2046
            ${train_cmd} --gpu "${ngpu}" "${kmeans_dir}/logdir/fit_kmeans.log" \
                ${python} -m sepalm_espnet.bin.fit_kmeans --feature_type "${unit_feature}" "${hubert_opts[@]}" \
                    --n_clusters "${unit_clusters}" --output_dir "${kmeans_dir}" \
                    --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" \
                    --wav_scp $(speaker_files "${_train_dec}" "$(num_speakers "${_train_dec}")" spk%n.scp)
            mark_done "${kmeans_dir}" "${signature}"
        fi
    fi
    for dset in $(all_sets); do
        _dec=$(sep_decode_of "${dset}")
        _dir=$(units_of "${dset}")
        _with_refs=false
        if uses_semantic && { [ "${dset}" = "${train_set}" ] || [ "${dset}" = "${valid_set}" ]; }; then
            _with_refs=true
        fi
        signature="kmeans=$(md5sum < "${kmeans_dir}/centers.npy") estimates=$(done_sum "${_dec}") refs=${_with_refs}"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 6: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 6: speech units of ${_dec}$(${_with_refs} && echo ' and of its references') into ${_dir}"
        start_split "${_dec}/spk1.scp" "${_dir}" "${signature}"
        n_spk=$(num_speakers "${_dec}")
        _ref_units=()
        if ${_with_refs}; then
            # shellcheck disable=SC2046
            ${python} -m sepalm_espnet.bin.speaker_files reorder --permutation "${_dec}/permutation" \
                --input $(speaker_files "${dumpdir}/raw/${dset}" "${n_spk}" spk%n.scp) \
                --output $(speaker_files "${_logdir}" "${n_spk}" ref_spk%n.scp)
            # shellcheck disable=SC2207
            _ref_units=('&&' ${python} -m sepalm_espnet.bin.extract_units --kmeans_dir "${kmeans_dir}"
                --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" --key_file "${_logdir}/keys.JOB.scp"
                $([ -n "${unit_hubert}" ] && echo "--hubert_dir ${unit_hubert}")
                --wav_scp $(speaker_files "${_logdir}" "${n_spk}" ref_spk%n.scp)
                --output $(speaker_files "${_logdir}" "${n_spk}" units_ref_spk%n.JOB))
        fi
        # shellcheck disable=SC2046
        ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/units.JOB.log" \
            ${python} -m sepalm_espnet.bin.extract_units --kmeans_dir "${kmeans_dir}" \
                --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" --key_file "${_logdir}/keys.JOB.scp" \
                $([ -n "${unit_hubert}" ] && echo "--hubert_dir ${unit_hubert}") \
                --wav_scp $(speaker_files "${_dec}" "${n_spk}" spk%n.scp) \
                --output $(speaker_files "${_logdir}" "${n_spk}" units_spk%n.JOB) "${_ref_units[@]}"
        for n in $(seq "${n_spk}"); do
            merge_jobs "${_dir}/units_spk${n}" "${_logdir}/units_spk${n}" "${_nj}"
            ! ${_with_refs} || merge_jobs "${_dir}/units_ref_spk${n}" "${_logdir}/units_ref_spk${n}" "${_nj}"
        done
        mark_done "${_dir}" "${signature}"
    done
fi

# The corrector's examples: one per separated speaker (keys <utt>_spk<n>), units of ŝ and the
# teacher's transcripts of ŝ (text_pt) and of the matched clean reference (text_ct).
cor_data_dir() { echo "${cor_exp}/data/$1"; }
make_cor_data() {
    local dset=$1 dir
    dir=$(cor_data_dir "${dset}")
    local units teacher n_spk signature name
    units=$(units_of "${dset}")
    teacher=$(teacher_of "${dset}")
    signature="units=$(done_sum "${units}") teacher=$(done_sum "${teacher}")"
    is_done "${dir}" "${signature}" && return 0
    start_or_resume "${dir}" "${signature}"
    n_spk=$(num_speakers "$(sep_decode_of "${dset}")")
    # shellcheck disable=SC2046
    ${python} -m sepalm_espnet.bin.speaker_files flatten \
        --input $(speaker_files "${units}" "${n_spk}" units_spk%n) --output "${dir}/units"
    for name in text_pt text_ct text_gt; do
        [ -f "${teacher}/${name}_spk1" ] || continue
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files flatten \
            --input $(speaker_files "${teacher}" "${n_spk}" "${name}_spk%n") --output "${dir}/${name}"
    done
    mark_done "${dir}" "${signature}"
}
cor_data_opts() {
    local split=$1 dir=$2 name
    for name in units text_pt text_ct; do
        echo "--${split}_data_path_and_name_and_type ${dir}/${name},${name},text"
    done
}

if runs 7; then
    log "Stage 7: corrector (${cor_config})"
    for dset in ${train_set} ${valid_set}; do
        make_cor_data "${dset}"
    done
    _tokenizer=${cor_exp}/tokenizer
    _n_units=$(${python} -c "import numpy, sys; print(len(numpy.load(sys.argv[1])))" "${kmeans_dir}/centers.npy")
    _train=$(cor_data_dir "${train_set}")
    signature="base=${cor_base_tokenizer} vocab=${cor_vocab_size} units=${_n_units} train=$(done_sum "${_train}")"
    if is_done "${_tokenizer}" "${signature}"; then
        log "Stage 7: ${_tokenizer} is up to date, skipped"
    else
        # train_tokenizer replaces the whole directory: its log lives beside it.
        rm -f "${_tokenizer}/.done"
        mkdir -p "${cor_exp}/logdir"
        if [ -n "${cor_base_tokenizer}" ]; then
            _source=(--base_tokenizer "${cor_base_tokenizer}")
        else
            _source=(--text "${_train}/text_pt" "${_train}/text_ct" --vocab_size "${cor_vocab_size}")
        fi
        ${train_cmd} "${cor_exp}/logdir/train_tokenizer.log" \
            ${python} -m sepalm_espnet.bin.train_tokenizer "${_source[@]}" --n_units "${_n_units}" \
                --output_dir "${_tokenizer}"
        mark_done "${_tokenizer}" "${signature}"
    fi
    train_task cor cor_train "${cor_config}" "--tokenizer_dir ${_tokenizer} ${cor_args}" \
        "${expdir}/cor_stats_${cor_tag}" "${cor_exp}" "${cor_inference_model}" \
        "${_train}" "$(cor_data_dir "${valid_set}")" cor_data_opts units input_ids
fi

if runs 8; then
    if [ -z "${cor_cascade_lm}" ]; then
        [ -e "${cor_exp}/${cor_inference_model}" ] || fail "${cor_exp}/${cor_inference_model} not found: run stage 7"
        model_signature="model=$(md5sum < "${cor_exp}/${cor_inference_model}") args=${cor_inference_args}"
    else
        [ -d "${cor_cascade_lm}" ] || fail "--cor_cascade_lm ${cor_cascade_lm}: not a directory"
        model_signature="cascade=${asr_backend}:${asr_model}+$(cat "${cor_cascade_lm}"/config.json | md5sum)"
    fi
    for dset in $(all_sets); do
        make_cor_data "${dset}"
        _data=$(cor_data_dir "${dset}")
        _dir=${cor_decode}/${dset}
        signature="${model_signature} data=$(done_sum "${_data}")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 8: ${_dir} is up to date, skipped"
            continue
        fi
        start_split "${_data}/units" "${_dir}" "${signature}"
        if [ -z "${cor_cascade_lm}" ]; then
            log "Stage 8: correct ${_data} into ${_dir}"
            # shellcheck disable=SC2086
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/correct.JOB.log" \
                ${python} -m sepalm_espnet.bin.cor_inference --train_config "${cor_exp}/config.yaml" \
                    --model_file "${cor_exp}/${cor_inference_model}" --units "${_data}/units" \
                    --teacher_text "${_data}/text_pt" --key_file "${_logdir}/keys.JOB.scp" \
                    --output_dir "${_logdir}/output.JOB" --ngpu "${ngpu}" ${cor_inference_args}
        else
            log "Stage 8: cascade (${asr_backend} N-best + ${cor_cascade_lm}) of $(sep_decode_of "${dset}") into ${_dir}"
            # shellcheck disable=SC2046
            ${python} -m sepalm_espnet.bin.speaker_files flatten --output "${_logdir}/est_wav.scp" \
                --input $(speaker_files "$(sep_decode_of "${dset}")" "$(num_speakers "$(sep_decode_of "${dset}")")" spk%n.scp)
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/cascade.JOB.log" \
                ${python} -m sepalm_espnet.bin.cascade_correct --backend "${asr_backend}" --model "${asr_model}" \
                    --lm "${cor_cascade_lm}" --wav_scp "${_logdir}/est_wav.scp" --key_file "${_logdir}/keys.JOB.scp" \
                    --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" --output_dir "${_logdir}/output.JOB"
        fi
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.cor_inference --output_dir "${_dir}" \
            --merge_dirs $(seq -f "${_logdir}/output.%g" 1 "${_nj}")
        mark_done "${_dir}" "${signature}"
    done
    # Transcript WER (paper: against Whisper's transcript of the clean speech; and against the
    # ground truth where the corpus has it) of the teacher on ŝ, and of both corrector outputs.
    for dset in ${test_sets}; do
        _data=$(cor_data_dir "${dset}")
        _dir=${cor_decode}/${dset}/score_text
        signature="decode=$(done_sum "${cor_decode}/${dset}")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 8: ${_dir} is up to date, skipped"
            continue
        fi
        start_or_resume "${_dir}" "${signature}"
        for _hyp in teacher:"${_data}/text_pt" preliminary:"${cor_decode}/${dset}/text_pt" \
                corrected:"${cor_decode}/${dset}/text_ct"; do
            for _ref in teacher:"${_data}/text_ct" gt:"${_data}/text_gt"; do
                [ -f "${_ref#*:}" ] || continue
                ${python} -m sepalm_espnet.bin.score_wer --ref "${_ref#*:}" --hyp "${_hyp#*:}" \
                    --metric "wer_${_ref%%:*}" --output "${_dir}/${_hyp%%:*}_${_ref%%:*}/wer_summary.json"
            done
        done
        mark_done "${_dir}" "${signature}"
    done
fi

if runs 9; then
    if [ -n "${codec_config}" ]; then
        _codec_exp=$(dirname "${codec_file}")
        _train=${dumpdir}/raw/${train_set}
        _valid=${dumpdir}/raw/${valid_set}
        [ -f "${codec_config}" ] || fail "--codec_config ${codec_config}: file not found"
        signature="config=$(md5sum < "${codec_config}") args=${codec_args} data=$(done_sum "${_train}" "${_valid}")"
        if is_done "${_codec_exp}" "${signature}"; then
            log "Stage 9: ${_codec_exp} is trained, skipped"
        else
            log "Stage 9: train a DAC-architecture codec in ${_codec_exp} (${codec_config})"
            start_or_resume "${_codec_exp}" "${signature}"
            # Clean speech of every training speaker: the codec must code clean speech well.
            # shellcheck disable=SC2046,SC2086
            ${cuda_cmd} --gpu "${ngpu}" "${_codec_exp}/train.log" \
                ${python} -m sepalm_espnet.bin.codec_train --config "${codec_config}" --ngpu "${ngpu}" \
                    --wav_scp $(speaker_files "${_train}" "$(num_speakers "${_train}")" spk%n.scp) \
                    --valid_wav_scp "${_valid}/spk1.scp" --output_dir "${_codec_exp}" ${codec_args}
            mark_done "${_codec_exp}" "${signature}"
        fi
        codec_signature="codec=$(md5sum < "${codec_file}")"
    else
        codec_signature="codec=${codec}"
    fi
    for dset in $(all_sets); do
        _data=${dumpdir}/raw/${dset}
        _dec=$(sep_decode_of "${dset}")
        _dir=$(codec_tokens_of "${dset}")
        signature="${codec_signature} estimates=$(done_sum "${_dec}")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 9: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 9: DAC tokens of ${_dec} and of its references into ${_dir}"
        start_or_resume "${_dir}" "${signature}"
        n_spk=$(num_speakers "${_dec}")
        # One example per separated speaker; the reference is the one matched to it.
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files flatten \
            --input $(speaker_files "${_dec}" "${n_spk}" spk%n.scp) --output "${_dir}/est_wav.scp"
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files reorder --permutation "${_dec}/permutation" \
            --input $(speaker_files "${_data}" "${n_spk}" spk%n.scp) \
            --output $(speaker_files "${_dir}/logdir" "${n_spk}" ref_spk%n.scp)
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files flatten \
            --input $(speaker_files "${_dir}/logdir" "${n_spk}" ref_spk%n.scp) --output "${_dir}/ref_wav.scp"
        for _side in est ref; do
            _nj=$(split_keys "${_dir}/${_side}_wav.scp" "${_dir}/logdir/${_side}" "${inference_nj}")
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_dir}/logdir/${_side}_tokens.JOB.log" \
                ${python} -m sepalm_espnet.bin.codec_tokenize --codec "${codec_file}" --ngpu "${ngpu}" \
                    --wav_scp "${_dir}/${_side}_wav.scp" --key_file "${_dir}/logdir/${_side}/keys.JOB.scp" \
                    --output_dir "${_dir}" --output_name "${_side}_tokens.JOB"
            ${python} -m sepalm_espnet.bin.codec_tokenize --merge_jobs "${_nj}" \
                --wav_scp "${_dir}/${_side}_wav.scp" --output_dir "${_dir}" --output_name "${_side}_tokens"
        done
        mark_done "${_dir}" "${signature}"
    done

    # Phonemes of the corrected transcripts; the token list comes from the training set.
    _token_list=${cor_decode}/phoneme_token_list.txt
    for dset in $(all_sets); do
        _dir=${cor_decode}/${dset}
        [ -f "${_dir}/.done" ] || fail "${_dir} not found: run stage 8"
        if [ -f "${_dir}/phonemes" ] && [ "${_dir}/phonemes" -nt "${_dir}/.done" ]; then
            log "Stage 9: ${_dir}/phonemes is up to date, skipped"
            continue
        fi
        log "Stage 9: phonemes of ${_dir}/text_ct"
        _token_list_opt=()
        [ "${dset}" = "${train_set}" ] && _token_list_opt=(--token_list_out "${_token_list}")
        ${python} -m sepalm_espnet.bin.g2p --text "${_dir}/text_ct" --output "${_dir}/phonemes" "${_token_list_opt[@]}"
    done
fi

# The synthesizer's examples: DAC tokens of ŝ and of the matched reference, corrected phonemes.
syn_data_dir() { echo "${syn_exp}/data/$1"; }
make_syn_data() {
    local dset=$1 dir tokens signature
    dir=$(syn_data_dir "${dset}")
    tokens=$(codec_tokens_of "${dset}")
    [ -f "${cor_decode}/${dset}/phonemes" ] || fail "${cor_decode}/${dset}/phonemes not found: run stage 9"
    signature="tokens=$(done_sum "${tokens}") phonemes=$(md5sum < "${cor_decode}/${dset}/phonemes")"
    uses_semantic && signature="${signature} semantic=$(done_sum "$(units_of "${dset}")")"
    is_done "${dir}" "${signature}" && return 0
    start_or_resume "${dir}" "${signature}"
    cp "${tokens}/est_tokens.scp" "${tokens}/ref_tokens.scp" "${cor_decode}/${dset}/phonemes" "${dir}/"
    if uses_semantic; then
        # Teacher forcing on the units of the clean speech; stage 11 uses the T2S prediction.
        local units
        units=$(units_of "${dset}")
        [ -f "${units}/units_ref_spk1" ] || fail "${units}/units_ref_spk1 not found: rerun stage 6 (it makes them for condition: semantic)"
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files flatten --output "${dir}/semantic" \
            --input $(speaker_files "${units}" "$(num_speakers "$(sep_decode_of "${dset}")")" units_ref_spk%n)
    fi
    mark_done "${dir}" "${signature}"
}
syn_data_opts() {
    echo "--$1_data_path_and_name_and_type $2/est_tokens.scp,est_tokens,kaldi_ark"
    echo "--$1_data_path_and_name_and_type $2/ref_tokens.scp,ref_tokens,kaldi_ark"
    echo "--$1_data_path_and_name_and_type $2/phonemes,phonemes,text"
    [ ! -f "$2/semantic" ] || echo "--$1_data_path_and_name_and_type $2/semantic,semantic,text_int"
}
t2s_data_opts() {
    echo "--$1_data_path_and_name_and_type $2/phonemes,phonemes,text"
    echo "--$1_data_path_and_name_and_type $2/semantic,units,text_int"
}

if runs 10; then
    log "Stage 10: synthesizer (${syn_config})"
    for dset in ${train_set} ${valid_set}; do
        make_syn_data "${dset}"
    done
    _semantic_conf=""
    if uses_semantic; then
        log "Stage 10: text-to-semantic model (${t2s_config}) for the semantic condition"
        _n_units=$(${python} -c "import numpy, sys; print(len(numpy.load(sys.argv[1])))" "${kmeans_dir}/centers.npy")
        _semantic_conf="--model_conf semantic_vocab_size=${_n_units}"
        train_task t2s t2s_train "${t2s_config}" \
            "--token_list ${cor_decode}/phoneme_token_list.txt --model_conf unit_vocab_size=${_n_units} ${t2s_args}" \
            "${expdir}/t2s_stats_${t2s_tag}" "${t2s_exp}" "${t2s_inference_model}" \
            "$(syn_data_dir "${train_set}")" "$(syn_data_dir "${valid_set}")" t2s_data_opts phonemes phonemes
    fi
    train_task syn syn_train "${syn_config}" "--token_list ${cor_decode}/phoneme_token_list.txt ${_semantic_conf} ${syn_args}" \
        "${expdir}/syn_stats_${syn_tag}" "${syn_exp}" "${syn_inference_model}" \
        "$(syn_data_dir "${train_set}")" "$(syn_data_dir "${valid_set}")" syn_data_opts est_tokens.scp ref_tokens
fi

if runs 11; then
    [ -e "${syn_exp}/${syn_inference_model}" ] || fail "${syn_exp}/${syn_inference_model} not found: run stage 10"
    model_signature="model=$(md5sum < "${syn_exp}/${syn_inference_model}") args=${syn_inference_args}"
    # The aligner trains on refined speech of the training set, so every set is synthesized.
    for dset in $(all_sets); do
        _tokens=$(codec_tokens_of "${dset}")
        _dir=${syn_decode}/${dset}
        signature="${model_signature} tokens=$(done_sum "${_tokens}") phonemes=$(md5sum < "${cor_decode}/${dset}/phonemes")"
        _semantic=()
        if uses_semantic; then
            [ -e "${t2s_exp}/${t2s_inference_model}" ] || fail "${t2s_exp}/${t2s_inference_model} not found: run stage 10"
            signature="${signature} t2s=$(md5sum < "${t2s_exp}/${t2s_inference_model}")"
            _semantic=(--semantic "${syn_decode}/${dset}/semantic")
        fi
        if is_done "${_dir}" "${signature}"; then
            log "Stage 11: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 11: refined speech of ${_tokens} into ${_dir}"
        start_split "${_tokens}/est_tokens.scp" "${_dir}" "${signature}"
        if uses_semantic; then
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/t2s.JOB.log" \
                ${python} -m sepalm_espnet.bin.t2s_inference --train_config "${t2s_exp}/config.yaml" \
                    --model_file "${t2s_exp}/${t2s_inference_model}" --phonemes "${cor_decode}/${dset}/phonemes" \
                    --key_file "${_logdir}/keys.JOB.scp" --output "${_logdir}/semantic.JOB" --ngpu "${ngpu}"
            merge_jobs "${_dir}/semantic" "${_logdir}/semantic" "${_nj}"
        fi
        # shellcheck disable=SC2086
        ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/synthesize.JOB.log" \
            ${python} -m sepalm_espnet.bin.syn_inference --train_config "${syn_exp}/config.yaml" \
                --model_file "${syn_exp}/${syn_inference_model}" --codec "${codec_file}" \
                --est_tokens "${_tokens}/est_tokens.scp" --phonemes "${cor_decode}/${dset}/phonemes" \
                --wav_scp "${_tokens}/est_wav.scp" --key_file "${_logdir}/keys.JOB.scp" "${_semantic[@]}" \
                --output_dir "${_logdir}/output.JOB" --ngpu "${ngpu}" ${syn_inference_args}
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.syn_inference --output_dir "${_dir}" \
            --merge_dirs $(seq -f "${_logdir}/output.%g" 1 "${_nj}")
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files unflatten --input "${_dir}/speech.scp" \
            --output $(speaker_files "${_dir}" "$(num_speakers "$(sep_decode_of "${dset}")")" spk%n.scp)
        mark_done "${_dir}" "${signature}"
    done
fi

# The aligner's examples: ŝ, its refined s* and the matched clean reference.
ali_data_dir() { echo "${ali_exp}/data/$1"; }
make_ali_data() {
    local dset=$1 dir tokens signature
    dir=$(ali_data_dir "${dset}")
    tokens=$(codec_tokens_of "${dset}")
    signature="tokens=$(done_sum "${tokens}") refined=$(done_sum "${syn_decode}/${dset}")"
    is_done "${dir}" "${signature}" && return 0
    start_or_resume "${dir}" "${signature}"
    cp "${tokens}/est_wav.scp" "${dir}/speech_est.scp"
    cp "${syn_decode}/${dset}/speech.scp" "${dir}/speech_syn.scp"
    cp "${tokens}/ref_wav.scp" "${dir}/speech_ref.scp"
    mark_done "${dir}" "${signature}"
}
ali_data_opts() {
    local name
    for name in speech_est speech_syn speech_ref; do
        echo "--$1_data_path_and_name_and_type $2/${name}.scp,${name},sound"
    done
}

if runs 12; then
    log "Stage 12: aligner (${ali_config})"
    for dset in ${train_set} ${valid_set}; do
        make_ali_data "${dset}"
    done
    train_task ali ali_train "${ali_config}" "${ali_args}" "${expdir}/ali_stats_${ali_tag}" "${ali_exp}" \
        "${ali_inference_model}" "$(ali_data_dir "${train_set}")" "$(ali_data_dir "${valid_set}")" \
        ali_data_opts speech_est.scp speech_est
fi

if runs 13; then
    [ -e "${ali_exp}/${ali_inference_model}" ] || fail "${ali_exp}/${ali_inference_model} not found: run stage 12"
    model_signature="model=$(md5sum < "${ali_exp}/${ali_inference_model}")"
    for dset in ${test_sets}; do
        make_ali_data "${dset}"
        _data=$(ali_data_dir "${dset}")
        _dir=${ali_decode}/${dset}
        signature="${model_signature} data=$(done_sum "${_data}")"
        if is_done "${_dir}" "${signature}"; then
            log "Stage 13: ${_dir} is up to date, skipped"
            continue
        fi
        log "Stage 13: SepALM output of ${dset} (aligned ŝ and s*) into ${_dir}"
        start_split "${_data}/speech_est.scp" "${_dir}" "${signature}"
        ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/align.JOB.log" \
            ${python} -m sepalm_espnet.bin.ali_inference --train_config "${ali_exp}/config.yaml" \
                --model_file "${ali_exp}/${ali_inference_model}" --est_scp "${_data}/speech_est.scp" \
                --syn_scp "${_data}/speech_syn.scp" --key_file "${_logdir}/keys.JOB.scp" \
                --output_dir "${_logdir}/output.JOB"
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.ali_inference --output_dir "${_dir}" \
            --merge_dirs $(seq -f "${_logdir}/output.%g" 1 "${_nj}")
        # shellcheck disable=SC2046
        ${python} -m sepalm_espnet.bin.speaker_files unflatten --input "${_dir}/speech.scp" \
            --output $(speaker_files "${_dir}" "$(num_speakers "$(sep_decode_of "${dset}")")" spk%n.scp)
        mark_done "${_dir}" "${signature}"
    done
fi

# Rows of RESULTS.md, "name=score dir with {test_set}" (a name given twice merges its dirs).
# Each run's rows are added to ${expdir}/results_systems, so ablations run with other options
# (paper Table 3) stay side by side. Separated speech systems are scored here; transcripts by stage 8.
current_systems() {
    local infer=""
    [ "${cor_inference_tag}" = default ] || infer="/${cor_inference_tag}"
    echo "Whisper on SepFormer output (${asr_backend} ${asr_model##*/}): transcript=${cor_decode}/{test_set}/score_text/teacher_teacher"
    echo "Whisper on SepFormer output (${asr_backend} ${asr_model##*/}): transcript=${cor_decode}/{test_set}/score_text/teacher_gt"
    echo "Corrector ${cor_tag}${infer}: preliminary transcript=${cor_decode}/{test_set}/score_text/preliminary_teacher"
    echo "Corrector ${cor_tag}${infer}: preliminary transcript=${cor_decode}/{test_set}/score_text/preliminary_gt"
    echo "Corrector ${cor_tag}${infer}: corrected transcript=${cor_decode}/{test_set}/score_text/corrected_teacher"
    echo "Corrector ${cor_tag}${infer}: corrected transcript=${cor_decode}/{test_set}/score_text/corrected_gt"
    echo "SepFormer (${sep_tag})=${sep_exp}/decode/{test_set}/score"
    echo "SepALM without aligner (${cor_tag}${infer}, ${syn_tag})=${syn_decode}/{test_set}/score"
    echo "SepALM (${cor_tag}${infer}, ${syn_tag}, ${ali_tag})=${ali_decode}/{test_set}/score"
}

# pack_model options of every component this run trained (separator only if stages 5-13 were
# skipped); paths hold no spaces (they are made from tags).
packed_components() {
    echo "--separator_config ${sep_exp}/config.yaml --separator_model ${sep_exp}/${sep_inference_model}"
    [ -e "${ali_exp}/${ali_inference_model}" ] || return 0
    echo "--component kmeans:centers=${kmeans_dir}/centers.npy,kmeans=${kmeans_dir}/kmeans.yaml"
    echo "--component corrector:config=${cor_exp}/config.yaml,model=${cor_exp}/${cor_inference_model}"
    echo "--component codec:codec=${codec_file}"
    echo "--component synthesizer:config=${syn_exp}/config.yaml,model=${syn_exp}/${syn_inference_model}"
    echo "--component aligner:config=${ali_exp}/config.yaml,model=${ali_exp}/${ali_inference_model}"
    if uses_semantic; then
        echo "--component t2s:config=${t2s_exp}/config.yaml,model=${t2s_exp}/${t2s_inference_model}"
    fi
}

if { runs 14 || runs 15; } && [ -e "${ali_exp}/${ali_inference_model}" ] && [ ! -f "${codec_file}" ]; then
    # A release tag: packing needs the weights file, which dac keeps in its cache.
    codec_file=$(${python} -c 'import sys, dac.utils; print(dac.utils.download(model_type=sys.argv[1]))' "${codec}") \
        || fail "--codec ${codec}: no DAC weights file to pack (give a local .pth with --codec)"
fi

if runs 14; then
    _registry=${expdir}/results_systems
    touch "${_registry}"
    current_systems | while read -r _system; do
        grep -qxF "${_system}" "${_registry}" || echo "${_system}" >> "${_registry}"
    done
    _asr_device=$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)
    while read -r _system; do
        case "${_system}" in *"/score_text/"*) continue ;; esac
        for dset in ${test_sets}; do
            _data=${dumpdir}/raw/${dset}
            _dir=$(echo "${_system#*=}" | sed "s|{test_set}|${dset}|")
            _est=$(dirname "${_dir}")
            if [ ! -f "${_est}/.done" ] || [ ! -f "${_est}/spk1.scp" ]; then
                log "Stage 14: ${_est} not found: ${_system%%=*} is not scored on ${dset}"
                continue
            fi
            signature="estimates=$(done_sum "${_est}") teacher=${asr_backend}:${asr_model}"
            if is_done "${_dir}" "${signature}"; then
                log "Stage 14: ${_dir} is up to date, skipped"
                continue
            fi
            log "Stage 14: score ${_est} against ${_data}"
            start_split "${_data}/wav.scp" "${_dir}" "${signature}"
            _perm=$(sep_decode_of "${dset}")/permutation
            ${decode_cmd} JOB=1:"${_nj}" "${_logdir}/score.JOB.log" \
                ${python} -m sepalm_espnet.bin.score_separation --ref_dir "${_data}" --est_dir "${_est}" \
                    --permutation "${_perm}" --key_file "${_logdir}/keys.JOB.scp" --out_dir "${_logdir}/split.JOB"
            # shellcheck disable=SC2046
            ${python} -m sepalm_espnet.bin.score_separation --out_dir "${_dir}" \
                --merge_dirs $(seq -f "${_logdir}/split.%g" 1 "${_nj}")
            # WER of the output speech (Whisper, as the paper) and SIM (speaker embeddings).
            _n_spk=$(num_speakers "${_est}")
            # shellcheck disable=SC2046
            ${decode_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${_logdir}/score_speech.JOB.log" \
                ${python} -m sepalm_espnet.bin.score_speech --ref_dir "${_data}" --permutation "${_perm}" \
                    --speech_scps $(speaker_files "${_est}" "${_n_spk}" spk%n.scp) \
                    --teacher_texts $(speaker_files "$(teacher_of "${dset}")" "${_n_spk}" text_ct_spk%n) \
                    --asr_backend "${asr_backend}" --asr_model "${asr_model}" --sim_backend "${sim_backend}" \
                    $([ -n "${sim_model}" ] && echo "--sim_model ${sim_model}") --device "${_asr_device}" \
                    --key_file "${_logdir}/keys.JOB.scp" --out_dir "${_logdir}/speech.JOB"
            # shellcheck disable=SC2046
            ${python} -m sepalm_espnet.bin.score_speech --out_dir "${_dir}" \
                --merge_dirs $(seq -f "${_logdir}/speech.%g" 1 "${_nj}")
            mark_done "${_dir}" "${signature}"
        done
    done < "${_registry}"
    # RTF per component on 5 s inputs (paper §4.3), of the system as packed: separator only,
    # without aligner, full SepALM. (The cascade of Table 3 (e) is not part of a packed system.)
    if [ -e "${ali_exp}/${ali_inference_model}" ] && [ -z "${cor_cascade_lm}" ]; then
        _rtf_opts=()
        case " ${cor_inference_args} " in *" --zero_shot "*) _rtf_opts=(--zero_shot) ;; esac
        _rtf_archive=${expdir}/rtf/sepalm.zip
        rm -f "${_rtf_archive}"
        for dset in ${test_sets}; do
            _modes=()
            _outs=()
            for _pair in "separator_only:$(sep_decode_of "${dset}")/score" "no_aligner:${syn_decode}/${dset}/score" \
                    "sepalm:${ali_decode}/${dset}/score"; do
                if [ ! -f "${_pair#*:}/rtf.json" ] || [ "${_pair#*:}/rtf.json" -ot "${_pair#*:}/.done" ]; then
                    _modes+=("${_pair%%:*}")
                    _outs+=("${_pair#*:}/rtf.json")
                fi
            done
            [ ${#_modes[@]} -gt 0 ] || continue
            if [ ! -f "${_rtf_archive}" ]; then
                # shellcheck disable=SC2046
                ${python} -m sepalm_espnet.bin.pack_model --out "${_rtf_archive}" $(packed_components) > /dev/null
            fi
            log "Stage 14: RTF of ${_modes[*]} on 5 s inputs of ${dset}"
            mkdir -p "${expdir}/rtf/logdir"
            ${decode_cmd} --gpu "${ngpu}" "${expdir}/rtf/logdir/rtf_${dset}.log" \
                ${python} -m sepalm_espnet.bin.measure_rtf --model "${_rtf_archive}" --modes "${_modes[@]}" \
                    --outputs "${_outs[@]}" --wav_scp "${dumpdir}/raw/${dset}/wav.scp" \
                    --utterances "${rtf_utterances}" --device "${_asr_device}" "${_rtf_opts[@]}"
        done
    fi
    _results_args=()
    while read -r _system; do
        # Rows whose scores do not exist (stages not run) are left out.
        for dset in ${test_sets}; do
            if compgen -G "$(echo "${_system#*=}" | sed "s|{test_set}|${dset}|")/*.json" > /dev/null; then
                _results_args+=(--system "${_system}")
                break
            fi
        done
    done < "${_registry}"
    # shellcheck disable=SC2086
    ${python} -m sepalm_espnet.bin.make_results --output "${expdir}/RESULTS.md" --test_sets ${test_sets} \
        "${_results_args[@]}" \
        --metadata "date=$(date '+%Y-%m-%d')" --metadata "separator config=${sep_config}" \
        --metadata "teacher and WER transcriber=${asr_backend} ${asr_model}"
    log "Stage 14: results in ${expdir}/RESULTS.md"
    cat "${expdir}/RESULTS.md" >&2
fi

if runs 15; then
    _archive=${expdir}/packed/${packed_name:-sepalm_${sep_tag}}.zip
    [ -f "${expdir}/RESULTS.md" ] || fail "${expdir}/RESULTS.md not found: run stage 14"
    _usage=SeparatorModel
    [ -e "${ali_exp}/${ali_inference_model}" ] && _usage=SepALM
    # shellcheck disable=SC2207
    _components=($(packed_components))
    log "Stage 15: pack ${_archive} (${_usage})"
    ${python} -m sepalm_espnet.bin.pack_model --out "${_archive}" "${_components[@]}" --results "${expdir}/RESULTS.md"
    log "Stage 15: load it with: python -c \"from sepalm_espnet.inference import ${_usage};" \
        "print(${_usage}.from_pretrained('${_archive}').separate('mixture.wav'))\""
fi

if runs 16; then
    _archive=${expdir}/packed/${packed_name:-sepalm_${sep_tag}}.zip
    [ -f "${_archive}" ] || fail "${_archive} not found: run stage 15"
    [ -n "${hf_repo}" ] || fail "stage 16 needs --hf_repo <user>/<name>"
    log "Stage 16: upload ${_archive} to ${hf_repo}$([ "${hf_dry_run}" = true ] && echo ' (dry run)')"
    ${python} -m sepalm_espnet.bin.upload_hf --src "${_archive}" --repo_id "${hf_repo}" \
        $([ "${hf_dry_run}" = true ] && echo --dry_run)
fi

log "Successfully finished stages ${stage}-${stop_stage}"
