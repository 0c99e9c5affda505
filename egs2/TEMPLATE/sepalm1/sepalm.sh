#!/usr/bin/env bash
# SepALM recipe: separate, correct in the text domain, re-synthesize, align. The one stage
# script of every egs2/<corpus>/sepalm1/run.sh; stage numbers are a public interface. Steps sign
# their options and input files (scripts/stage_lib.sh). Stage 4 writes one per-estimate Kaldi dir
# per set (keys <utt>_spk<n>: wav.scp, ref.scp, text); later stages read and write plain dirs.
set -euo pipefail

# General
stage=1                # first stage to run
stop_stage=15          # last stage to run (16 uploads and is skipped unless --skip_upload_hf false)
skip_stages=""         # stages not to run, e.g. "5 6 7"
pretrained_model=      # a packed archive: stage 14 scores it on --test_sets, stages 3-13 and 15-16 are skipped
nj=4                   # parallel jobs of CPU stages
inference_nj=4         # parallel jobs of inference stages
train_num_threads=1    # threads of each training job (OMP_NUM_THREADS; Slurm --cpus-per-task)
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
separator_type=enh              # enh: an ESPnet enh model (SepFormer, ...); slm_ss: SLM-SS, generative separation over codec tokens
sep_config=conf/train_sep.yaml  # training config: ESPnet enh (separator: sepformer) or, with slm_ss, model: slm_ss
sep_tag=                        # experiment name (default: the config file's name)
sep_args=                       # extra training options, e.g. "--max_epoch 1"
sep_inference_model=            # checkpoint that separates in stage 4 (empty: valid.si_snr_loss.ave.pth; slm_ss: valid.loss.ave.pth)
sep_inference_config=           # decoding options (segment_sec, hop_sec; slm_ss: temperature, max_length_ratio, ...)
sep_pretrained=                 # a SpeechBrain SepFormer (hub id or dir): stage 3 imports it instead of training
sep_init=                       # stage 3 starts training from these weights (ESPnet --init_param), e.g. an import's
system_tag=                     # a second separator refined in this expdir: names its own k-means, corrector, synthesizer,
                                # aligner dirs (<dir>_<tag>) and RESULTS rows ("... [<tag>]"), e.g. slm_ss; empty: none

# ASR teacher (stage 5): Whisper transcripts, the corrector's distillation targets
asr_backend=whisper             # whisper (openai-whisper) or faster_whisper (CTranslate2)
asr_model=tiny                  # whisper: name or .pt file; faster_whisper: model dir (paper: Whisper-tiny)

# Speech units (stage 6)
unit_feature=hubert             # hubert (paper: mHuBERT layer 11) or logmel (offline mini recipes)
unit_hubert=                    # hubert: transformers HubertModel dir or hub id
unit_layer=11                   # hubert: transformer layer the units are clustered from
unit_clusters=1000              # k-means clusters (paper: 1000)
unit_kmeans=                    # a fitted k-means dir (bin/fit_kmeans.py) instead of fitting on the train set
unit_kmeans_refit=false         # true: fit a new k-means although the corrector is SpeechGPT (which knows only its own units)

# Corrector (stages 7, 8)
cor_config=conf/train_cor.yaml  # corrector training config (model: audio_lm)
cor_tag=                        # experiment name (default: the config file's name)
cor_args=                       # extra training options
cor_base_tokenizer=             # the pretrained LM's tokenizer (dir or hub id); empty: SentencePiece on train transcripts
cor_vocab_size=500              # SentencePiece vocabulary when training one
cor_inference_model=valid.acc.ave.pth  # checkpoint that corrects in stage 8
cor_inference_config=           # decoding options (e.g. conf/tuning/decode_cor_zero_shot.yaml, Table 3 h)
cor_cascade_lm=                 # Table 3 (f): stage 8 runs Whisper N-best corrected by this causal LM dir instead
cor_cascade_config=             # Table 3 (e): stage 7 fine-tunes that LM (bin/ger_train config) on the N-best of ŝ, stage 8 uses it
cor_cascade_args=               # extra training options of the fine-tuned cascade LM
cor_cascade_inference_model=valid.loss.ave.pth  # its checkpoint that corrects in stage 8

# Codec and synthesizer (stages 9-11)
codec=16khz                     # DAC release tag or weights file (paper: DAC 16 kHz, 12 codebooks x 1024)
codec_config=                   # instead train a DAC-architecture codec with this config (offline mini recipes)
codec_args=                     # extra bin/codec_train.py options, e.g. "--max_steps 10"
syn_config=conf/train_syn.yaml  # synthesizer training config (model: ar_nar or masked)
syn_tag=                        # experiment name (default: the config file's name)
syn_args=                       # extra training options
syn_inference_model=valid.loss.ave.pth  # checkpoint that synthesizes in stage 11
syn_inference_config=           # decoding options (temperature, top_k, guidance_scale, ...)
t2s_config=                     # text-to-semantic config: set it for a synthesizer with `condition: semantic`
t2s_tag=                        # experiment name (default: the config file's name)
t2s_args=                       # extra training options
t2s_inference_model=valid.acc.ave.pth  # checkpoint that predicts semantic units in stage 11
resep_config=                   # Table 3 (a): stages 10-11 re-separate the mixture from each corrected transcript
resep_args=                     # extra training options of the re-separation model
resep_inference_model=valid.loss.ave.pth  # checkpoint that re-separates in stage 11

# Aligner (stages 12, 13)
ali_config=conf/train_ali.yaml  # aligner training config (model: stft_cnn)
ali_tag=                        # experiment name (default: the config file's name)
ali_args=                       # extra training options
ali_inference_model=valid.loss.ave.pth  # checkpoint that aligns in stage 13

# Scoring (stage 14)
sim_backend=resemblyzer         # speaker similarity: resemblyzer (GE2E, ships in its wheel) or wavlm
sim_model=                      # wavlm: WavLMForXVector dir or hub id (paper: WavLM speaker verification)
score_args=                     # extra bin/score_systems.py options, e.g. "--rtf_utterances 8"
demo_utterances=8               # mixtures per test set on the demo page (exp/demo/index.html)
mos_utterances=30               # segments of the NMOS/SMOS listening test pages (exp/mos/, paper: 30)

# Packing (stage 15) and upload (stage 16)
packed_name=                    # archive name (default: sepalm_<sep_tag>)
skip_upload_hf=true             # stage 16 only runs with --skip_upload_hf false
hf_repo=                        # Hugging Face model repo id of stage 16, e.g. user/sepalm_libri2mix
hf_dry_run=false                # stage 16 lists what it would upload and touches no network

help_message="Usage: $0 [options]

Stages:
   1  local/data.sh: Kaldi data dirs (wav.scp, spk1.scp, spk2.scp, noise1.scp, text_spk1/2)
   2  format: resample to --fs, downmix, dump to ${dumpdir}/raw/<set>, utt2num_samples
   3  separator: collect stats + train SepFormer (ESPnet enh task), or import one (--sep_pretrained);
      --separator_type slm_ss: the codec, its tokens of the references, then SLM-SS (its own task)
   4  separator inference on every set + the per-estimate data dirs
   5  ASR teacher transcripts (Whisper greedy) of separated and clean speech
   6  speech units (HuBERT or log-mel features + k-means) of separated speech
   7  corrector fine-tuning (audio LM, LoRA, chain-of-thought targets)
   8  corrector inference: preliminary + corrected transcripts (or the cascade, --cor_cascade_lm)
   9  DAC tokens of separated and clean speech (training a codec with --codec_config); G2P
  10  synthesizer training (AR+NAR or masked codec LM; + text-to-semantic with --t2s_config)
  11  synthesizer inference: refined speech
  12  aligner training
  13  SepALM output of the test sets (aligned separated and refined speech)
  14  scoring of every registered system: SI-SNRi SDRi PESQi ESTOIi WER SIM RTF -> RESULTS.md,
      demo page and NMOS/SMOS listening-test pages
  15  pack a model-zoo archive
  16  upload to the Hugging Face hub (skipped unless --skip_upload_hf false)
"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh
# shellcheck source=scripts/stage_lib.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/stage_lib.sh"

# Options are checked before any stage touches a file (parse_options.sh: integers are integers).
if [ "${nj}" -lt 1 ] || [ "${inference_nj}" -lt 1 ] || [ "${num_nodes}" -lt 1 ] || [ "${train_num_threads}" -lt 1 ] \
    || [ "${ngpu}" -lt 0 ]; then
    fail "--nj, --inference_nj, --num_nodes and --train_num_threads must be at least 1, --ngpu at least 0"
fi
if [ "${stage}" -lt 1 ] || [ "${stop_stage}" -gt 16 ] || [ "${stage}" -gt "${stop_stage}" ]; then
    fail "--stage ${stage} --stop_stage ${stop_stage}: stages run from 1 to 16, in order"
fi
case "${audio_format}" in wav | flac) ;; *) fail "--audio_format ${audio_format}: wav or flac" ;; esac
case "${separator_type}" in enh | slm_ss) ;; *) fail "--separator_type ${separator_type}: enh or slm_ss" ;; esac
[ "${separator_type}" = enh ] || [ -z "${sep_pretrained}${sep_init}" ] || fail "--sep_pretrained and --sep_init are for --separator_type enh"
case "${asr_backend}" in whisper | faster_whisper) ;; *) fail "--asr_backend ${asr_backend}: whisper or faster_whisper" ;; esac
case "${unit_feature}" in hubert | logmel) ;; *) fail "--unit_feature ${unit_feature}: hubert or logmel" ;; esac
case "${sim_backend}" in resemblyzer | wavlm) ;; *) fail "--sim_backend ${sim_backend}: resemblyzer or wavlm" ;; esac
for _config in "${sep_inference_config}" "${cor_inference_config}" "${syn_inference_config}" "${codec_config}" "${t2s_config}"; do
    [ -z "${_config}" ] || [ -f "${_config}" ] || fail "${_config}: config file not found"
done
[ -z "${pretrained_model}" ] || [ -e "${pretrained_model}" ] || fail "--pretrained_model ${pretrained_model}: not found"
[ -z "${sep_init}" ] || [ -f "${sep_init}" ] || fail "--sep_init ${sep_init}: not found"
[ -z "${sep_pretrained}" ] || [ -z "${sep_init}" ] || fail "--sep_pretrained imports a separator, --sep_init trains one: give one of them"
[ -z "${unit_kmeans}" ] || [ -f "${unit_kmeans}/kmeans.yaml" ] || fail "--unit_kmeans ${unit_kmeans}: no kmeans.yaml (bin/fit_kmeans.py makes one)"
if [ -z "${unit_kmeans}" ] && [[ ${cor_base_tokenizer,,} == *speechgpt* ]] && [ "${unit_kmeans_refit}" != true ]; then
    fail "--cor_base_tokenizer ${cor_base_tokenizer}: SpeechGPT understands only the units of its own mHuBERT k-means; give it as --unit_kmeans (egs2/libri2mix_wham/sepalm1/run.sh says how to convert it) or fit a new one with --unit_kmeans_refit true"
fi
[ -z "${pretrained_model}" ] || skip_stages+=" 3 4 5 6 7 8 9 10 11 12 13 15 16"
[ -z "${resep_config}" ] || [ -f "${resep_config}" ] || fail "--resep_config ${resep_config}: file not found"
[ -z "${cor_cascade_config}" ] || [ -f "${cor_cascade_config}" ] || fail "--cor_cascade_config ${cor_cascade_config}: file not found"
[ -z "${resep_config}" ] || skip_stages+=" 12 13 15 16"  # the ablation's row only: no aligner, nothing to pack
for _dir in "${dumpdir}" "${expdir}"; do
    [[ ${_dir} =~ ^[A-Za-z0-9_./-]+$ ]] || fail "'${_dir}': use a directory path without spaces or special characters"
done

read -ra test_set_list <<< "${test_sets}"
all_sets=("${train_set}" "${valid_set}" "${test_set_list[@]}")
device=cpu
[ "${ngpu}" -eq 0 ] || device=cuda

sep_tag=${sep_tag:-$(if [ -n "${sep_pretrained}" ]; then basename "${sep_pretrained}"; else config_tag "${sep_config}"; fi)}
if [ -z "${sep_inference_model}" ]; then  # what ESPnet names the average under each kind's best_model_criterion
    sep_inference_model=valid.si_snr_loss.ave.pth
    [ "${separator_type}" = enh ] || sep_inference_model=valid.loss.ave.pth
fi
cor_tag=${cor_tag:-$(config_tag "${cor_config}")}
syn_tag=${syn_tag:-$(config_tag "${syn_config}")}
ali_tag=${ali_tag:-$(config_tag "${ali_config}")}
cor_inference_tag=default
[ -z "${cor_inference_config}" ] || cor_inference_tag=$(config_tag "${cor_inference_config}")
[ -z "${cor_cascade_lm}" ] || cor_inference_tag=cascade_$(basename "${cor_cascade_lm}")
[ -z "${cor_cascade_config}" ] || cor_inference_tag=cascade_ft_$(config_tag "${cor_cascade_config}")
codec_tag=$(basename "${codec}" .pth)
[ -z "${codec_config}" ] || codec_tag=$(config_tag "${codec_config}")
codec_file=${codec}
[ -z "${codec_config}" ] || codec_file=${expdir}/codec_${codec_tag}/codec.pth
_sys=${system_tag:+_${system_tag}}  # downstream dirs and rows of a second separator's system
_of=${system_tag:+ [${system_tag}]}
kmeans_dir=${unit_kmeans:-${expdir}/kmeans_${unit_feature}${unit_clusters}${_sys}}
# A synthesizer with `condition: semantic` (the paper's masked one) learns from units of the
# clean speech and decodes from units a text-to-semantic model predicts.
uses_semantic() { [ -n "${t2s_config}" ]; }

sep_exp=${expdir}/sep_${sep_tag}
cor_exp=${expdir}/cor_${cor_tag}${_sys}
cor_tokenizer=${expdir}/tokenizer_${cor_tag}${_sys}
cor_decode=${cor_exp}/decode_${cor_inference_tag}
syn_exp=${expdir}/syn_${syn_tag}${_sys}
t2s_exp=${expdir}/t2s_${t2s_tag:-$([ -z "${t2s_config}" ] || config_tag "${t2s_config}")}${_sys}
syn_decode=${syn_exp}/decode_${cor_tag}_${cor_inference_tag}
t2s_decode=${t2s_exp}/decode_${cor_tag}_${cor_inference_tag}
ali_exp=${expdir}/ali_${ali_tag}${_sys}
ger_exp=${expdir}/ger_$([ -z "${cor_cascade_config}" ] || config_tag "${cor_cascade_config}")${_sys}
nbest_name=nbest_${asr_backend}_$(basename "${asr_model}")
resep_exp=${expdir}/resep_$([ -z "${resep_config}" ] || config_tag "${resep_config}")${_sys}
ali_decode=${ali_exp}/decode_${syn_tag}_${cor_tag}_${cor_inference_tag}
token_list=${cor_decode}/phoneme_token_list.txt
# Per-set dirs derived from the estimates live beside them: <decode>/<set>/{teacher,<units>,<tokens>}.
sep_decode=${sep_exp}/decode
units_name=units_$(basename "${kmeans_dir}")
tokens_name=codec_${codec_tag}
slm_ss_targets=${dumpdir}/${tokens_name}  # <set>/ref_tokens{1,2}.scp: SLM-SS's training targets
packed_archive=${expdir}/packed/${packed_name:-sepalm_${sep_tag}}.zip
# The rows of RESULTS.md this run's system makes (stage 14 times exactly these with its archive).
separator_row="Separator only (${sep_tag})"
no_aligner_row="SepALM without aligner (${cor_tag}/${cor_inference_tag}, ${syn_tag})${_of}"
sepalm_row="SepALM (${cor_tag}/${cor_inference_tag}, ${syn_tag}, ${ali_tag})${_of}"
read -ra codec_args_list <<< "${codec_args}"
read -ra score_args_list <<< "${score_args}"
# Training examples of a set (one per estimate) as train_task's "file,name,type" triples.
# Corrector: units of ŝ, the teacher's transcripts of ŝ and of s.
cor_data() {
    local teacher=${sep_decode}/$1/teacher
    echo "${sep_decode}/$1/${units_name}/units,units,text" "${teacher}/text_pt,text_pt,text" "${teacher}/text_ct,text_ct,text"
}
# Synthesizer: DAC tokens of ŝ and of s, corrected phonemes (and units of s for text-to-semantic).
syn_data() {
    local tokens=${sep_decode}/$1/${tokens_name}
    echo "${tokens}/est_tokens.scp,est_tokens,kaldi_ark" "${tokens}/ref_tokens.scp,ref_tokens,kaldi_ark" \
        "${cor_decode}/$1/g2p/phonemes,phonemes,text"
    ! uses_semantic || echo "${sep_decode}/$1/${units_name}/units_ref,semantic,text_int"
}
# The oracle ladder's text rungs: stage 11 also decodes the test sets' ŝ tokens with another text
# than the corrected one. "<name> <text under the estimates' dir> <title>", if every test set has it.
oracle_rungs() {
    local name text title dset
    while read -r name text title; do
        for dset in "${test_set_list[@]}"; do
            [ -f "${sep_decode}/${dset}/${text}" ] || { log "no ${sep_decode}/${dset}/${text}: no ${name} rung"; continue 2; }
        done
        echo "${name} ${text} ${title}"
    done <<< $'gt_text text ground-truth text\nteacher_s teacher/text_ct the teacher\'s transcript of s'
}
# Re-separation (Table 3 a): the mixture of each estimate, its corrected phonemes, its reference.
resep_data() {
    echo "${sep_decode}/$1/mixtures/mix.scp,speech_mix,sound" "${cor_decode}/$1/g2p/phonemes,phonemes,text" \
        "${sep_decode}/$1/ref.scp,speech_ref,sound"
}
# Aligner: ŝ, its refined s* and the matched reference s.
ali_data() {
    local est=${sep_decode}/$1
    echo "${est}/wav.scp,speech_est,sound" "${syn_decode}/$1/speech.scp,speech_syn,sound" "${est}/ref.scp,speech_ref,sound"
}

# The codec (stage 9; stage 3 too with --separator_type slm_ss, whose targets are its tokens):
# trained once with --codec_config, else the release or file --codec. Sets _codec_sum.
prepare_codec() {
    _codec_sum=${codec}
    [ -n "${codec_config}" ] || return 0
    local exp clean clean_valid signature
    exp=$(dirname "${codec_file}")
    clean=("${dumpdir}/raw/${train_set}/spk1.scp" "${dumpdir}/raw/${train_set}/spk2.scp")
    clean_valid=${dumpdir}/raw/${valid_set}/spk1.scp
    signature="config=$(files_sum "${codec_config}") args=${codec_args} data=$(files_sum "${clean[@]}" "${clean_valid}")"
    if step_needed "${exp}" "${signature}"; then
        log "Stage $1: train a DAC-architecture codec in ${exp} on clean speech (${codec_config})"
        ${cuda_cmd} --gpu "${ngpu}" --num_threads "${train_num_threads}" "${exp}/train.log" \
            "${python}" -m sepalm_espnet.bin.codec_train --config "${codec_config}" --device "${device}" \
                --wav_scp "${clean[@]}" --valid_wav_scp "${clean_valid}" \
                --output_dir "${exp}" "${codec_args_list[@]}"
        step_done "${exp}" "${signature}"
    fi
    _codec_sum=$(files_sum "${codec_file}")
}

if runs 1; then
    signature="script=$(files_sum local/data.sh) options=${local_data_opts}"
    if step_needed data "${signature}"; then
        log "Stage 1: data preparation: local/data.sh ${local_data_opts}"
        read -ra _opts <<< "${local_data_opts}"
        local/data.sh "${_opts[@]}"
        for dset in "${all_sets[@]}"; do validate_data_dir.sh --check_audio "data/${dset}"; done
        step_done data "${signature}"
    fi
fi

if runs 2; then
    log "Stage 2: format every set at ${fs} Hz (${audio_format}) into ${dumpdir}/raw, then check lengths"
    steps_begin format "${nj}" 0
    for dset in "${all_sets[@]}"; do
        signature="fs=${fs} audio_format=${audio_format} data=$(dir_sum "data/${dset}")"
        steps_add "${dumpdir}/raw/${dset}" "${signature}" "data/${dset}/wav.scp" --src_dir "data/${dset}"
    done
    steps_run sepalm_espnet.bin.format_data_dir shard --fs "${fs}" --audio_format "${audio_format}"
    for _dir in "${_steps_dirs[@]}"; do "${python}" -m sepalm_espnet.bin.format_data_dir finish --src_dir "data/${_dir##*/}" --dir "${_dir}"; done
    steps_done
fi

if runs 3 && [ -n "${sep_pretrained}" ]; then
    _files=hub
    [ ! -d "${sep_pretrained}" ] || _files=$(dir_sum "${sep_pretrained}")
    signature="source=${sep_pretrained} files=${_files} fs=${fs} model=${sep_inference_model}"
    if step_needed "${sep_exp}" "${signature}"; then
        log "Stage 3: import the SpeechBrain SepFormer ${sep_pretrained} into ${sep_exp}"
        "${python}" -m sepalm_espnet.bin.import_speechbrain_sepformer --src "${sep_pretrained}" --out "${sep_exp}" \
            --fs "${fs}" --model_name "${sep_inference_model}"
        step_done "${sep_exp}" "${signature}"
    fi
elif runs 3 && [ "${separator_type}" = slm_ss ]; then
    prepare_codec 3
    log "Stage 3, step 1: codec tokens of the speakers' references (SLM-SS's targets)"
    steps_begin slm_ss_targets
    for dset in "${train_set}" "${valid_set}"; do
        _data=${dumpdir}/raw/${dset}
        signature="codec=${_codec_sum} inputs=$(files_sum "${_data}/spk1.scp" "${_data}/spk2.scp")"
        steps_add "${slm_ss_targets}/${dset}" "${signature}" "${_data}/wav.scp" --wav_scp "${_data}/spk1.scp" "${_data}/spk2.scp"
    done
    steps_run sepalm_espnet.bin.codec_tokenize --codec "${codec_file}" --device "${device}" --output_names ref_tokens1 ref_tokens2
    steps_done
    log "Stage 3, step 2: SLM-SS (${sep_config})"
    _train=("${dumpdir}/raw/${train_set}/wav.scp,speech_mix,sound")
    _valid=("${dumpdir}/raw/${valid_set}/wav.scp,speech_mix,sound")
    for _n in 1 2; do
        _train+=("${slm_ss_targets}/${train_set}/ref_tokens${_n}.scp,ref_tokens${_n},kaldi_ark")
        _valid+=("${slm_ss_targets}/${valid_set}/ref_tokens${_n}.scp,ref_tokens${_n},kaldi_ark")
    done
    _args=(--codec "${codec_file}")
    train_task sep slm_ss_train "${sep_config}" "${expdir}/sep_stats_${sep_tag}_${fs}" "${sep_exp}" \
        "${sep_inference_model}" speech_mix _train _valid _args "${sep_args}"
elif runs 3; then
    log "Stage 3: separator (${sep_config})"
    _train=("${dumpdir}/raw/${train_set}/wav.scp,speech_mix,sound")
    _valid=("${dumpdir}/raw/${valid_set}/wav.scp,speech_mix,sound")
    for _n in 1 2 3 4 5 6 7 8 9; do
        [ -f "${dumpdir}/raw/${train_set}/spk${_n}.scp" ] || break
        _train+=("${dumpdir}/raw/${train_set}/spk${_n}.scp,speech_ref${_n},sound")
        _valid+=("${dumpdir}/raw/${valid_set}/spk${_n}.scp,speech_ref${_n},sound")
    done
    _args=(--sample_rate "${fs}")
    [ -z "${sep_init}" ] || _args+=(--init_param "${sep_init}")
    train_task sep sep_train "${sep_config}" "${expdir}/sep_stats_${sep_tag}_${fs}" "${sep_exp}" \
        "${sep_inference_model}" speech_mix _train _valid _args "${sep_args}"
fi

if runs 4; then
    log "Stage 4: separate every set with ${sep_exp}/${sep_inference_model}"
    steps_begin separate
    for dset in "${all_sets[@]}"; do
        _data=${dumpdir}/raw/${dset}
        signature="model=$(files_sum "${sep_exp}/${sep_inference_model}") config=${sep_inference_config} data=$(dir_sum "${_data}")"
        steps_add "${sep_decode}/${dset}" "${signature}" "${_data}/wav.scp" --data_dir "${_data}"
    done
    steps_run sepalm_espnet.bin.sep_inference --model_file "${sep_exp}/${sep_inference_model}" \
        --train_config "${sep_exp}/config.yaml" --fs "${fs}" --device "${device}" ${sep_inference_config:+--config "${sep_inference_config}"}
    steps_done
    register_system "${separator_row}" separator_only "${sep_exp}/decode/{set}/wav.scp"
fi

if runs 5; then
    log "Stage 5: ${asr_backend} ${asr_model} transcripts of the estimates (text_pt) and references (text_ct)"
    steps_begin teacher
    for dset in "${all_sets[@]}"; do
        _est=${sep_decode}/${dset}
        signature="teacher=${asr_backend}:${asr_model} inputs=$(files_sum "${_est}/wav.scp" "${_est}/ref.scp")"
        steps_add "${sep_decode}/${dset}/teacher" "${signature}" "${_est}/wav.scp" --wav_scp "${_est}/wav.scp" "${_est}/ref.scp"
    done
    steps_run sepalm_espnet.bin.asr_teacher --backend "${asr_backend}" --model "${asr_model}" --device "${device}" \
        --output_names text_pt text_ct
    steps_done
fi

if runs 6; then
    if [ -z "${unit_kmeans}" ]; then
        _train_scp=${sep_decode}/${train_set}/wav.scp
        _hubert=()
        [ "${unit_feature}" = logmel ] || _hubert=(--hubert_dir "${unit_hubert}" --layer "${unit_layer}")
        signature="feature=${unit_feature} ${_hubert[*]} clusters=${unit_clusters} train=$(files_sum "${_train_scp}")"
        if step_needed "${kmeans_dir}" "${signature}"; then
            log "Stage 6: fit ${unit_clusters}-means on ${unit_feature} features of ${_train_scp}"
            ${train_cmd} --gpu "${ngpu}" --num_threads "${train_num_threads}" "${kmeans_dir}/logdir/fit_kmeans.log" \
                "${python}" -m sepalm_espnet.bin.fit_kmeans --feature_type "${unit_feature}" "${_hubert[@]}" \
                    --n_clusters "${unit_clusters}" --wav_scp "${_train_scp}" --output_dir "${kmeans_dir}" --device "${device}"
            step_done "${kmeans_dir}" "${signature}"
        fi
    fi
    log "Stage 6: speech units of the estimates$(uses_semantic && echo ' (and of the train/valid references)')"
    steps_begin units
    for dset in "${all_sets[@]}"; do
        _est=${sep_decode}/${dset}
        _io=(--wav_scp "${_est}/wav.scp" --output_names units)
        if uses_semantic && { [ "${dset}" = "${train_set}" ] || [ "${dset}" = "${valid_set}" ]; }; then
            _io=(--wav_scp "${_est}/wav.scp" "${_est}/ref.scp" --output_names units units_ref)
        fi
        signature="kmeans=$(files_sum "${kmeans_dir}/centers.npy") inputs=$(files_sum "${_est}/wav.scp" "${_est}/ref.scp") ${_io[*]}"
        steps_add "${sep_decode}/${dset}/${units_name}" "${signature}" "${_est}/wav.scp" "${_io[@]}"
    done
    steps_run sepalm_espnet.bin.extract_units --kmeans_dir "${kmeans_dir}" --device "${device}" \
        ${unit_hubert:+--hubert_dir "${unit_hubert}"}
    steps_done
fi

if runs 7; then
    _teacher=${sep_decode}/${train_set}/teacher
    signature="base=${cor_base_tokenizer} vocab=${cor_vocab_size} kmeans=$(files_sum "${kmeans_dir}/centers.npy") text=$(files_sum "${_teacher}/text_pt" "${_teacher}/text_ct")"
    if step_needed "${cor_tokenizer}" "${signature}"; then
        log "Stage 7, step 1: corrector tokenizer into ${cor_tokenizer}"
        _source=(--text "${_teacher}/text_pt" "${_teacher}/text_ct" --vocab_size "${cor_vocab_size}")
        [ -z "${cor_base_tokenizer}" ] || _source=(--base_tokenizer "${cor_base_tokenizer}")
        # train_tokenizer replaces the whole directory: its log lives beside it.
        ${train_cmd} "${cor_tokenizer}.log" "${python}" -m sepalm_espnet.bin.train_tokenizer "${_source[@]}" \
            --kmeans_dir "${kmeans_dir}" --output_dir "${cor_tokenizer}"
        step_done "${cor_tokenizer}" "${signature}"
    fi
    if [ -z "${cor_cascade_config}" ]; then
        log "Stage 7, step 2: corrector (${cor_config})"
        read -ra _train <<< "$(cor_data "${train_set}")"
        read -ra _valid <<< "$(cor_data "${valid_set}")"
        _args=(--tokenizer_dir "${cor_tokenizer}")
        train_task cor cor_train "${cor_config}" "${expdir}/cor_stats_${cor_tag}${_sys}" "${cor_exp}" \
            "${cor_inference_model}" input_ids _train _valid _args "${cor_args}"
    else
        log "Stage 7, step 2: ${asr_backend} ${asr_model} 3-best of the train and valid estimates (Table 3 e)"
        steps_begin nbest
        for dset in "${train_set}" "${valid_set}"; do
            _est=${sep_decode}/${dset}/wav.scp
            steps_add "${sep_decode}/${dset}/${nbest_name}" "inputs=$(files_sum "${_est}")" "${_est}" --wav_scp "${_est}"
        done
        steps_run sepalm_espnet.bin.cascade_correct --nbest_only true --backend "${asr_backend}" --model "${asr_model}" \
            --device "${device}"
        steps_done
        log "Stage 7, step 3: the cascade's LM fine-tuned to write the teacher's transcript of s (${cor_cascade_config})"
        _train=("${sep_decode}/${train_set}/${nbest_name}/nbest,nbest,text" "${sep_decode}/${train_set}/teacher/text_ct,text_ct,text")
        _valid=("${sep_decode}/${valid_set}/${nbest_name}/nbest,nbest,text" "${sep_decode}/${valid_set}/teacher/text_ct,text_ct,text")
        _args=(--tokenizer_dir "${cor_tokenizer}")
        [ -z "${cor_cascade_lm}" ] || _args=(--tokenizer_dir "${cor_cascade_lm}" --model_conf "lm_name_or_path=${cor_cascade_lm}")
        train_task ger ger_train "${cor_cascade_config}" "${expdir}/ger_stats_$(config_tag "${cor_cascade_config}")${_sys}" \
            "${ger_exp}" "${cor_cascade_inference_model}" input_ids _train _valid _args "${cor_cascade_args}"
    fi
fi

if runs 8; then
    log "Stage 8: corrected transcripts of every set into ${cor_decode}"
    _cascade=()  # cascade_correct's LM (Table 3 e/f); none: the audio-LM corrector
    if [ -n "${cor_cascade_config}" ]; then
        _cascade=(--lm_train_config "${ger_exp}/config.yaml" --lm_model_file "${ger_exp}/${cor_cascade_inference_model}")
        _lm_sum=$(files_sum "${ger_exp}/${cor_cascade_inference_model}")
    elif [ -n "${cor_cascade_lm}" ]; then
        _cascade=(--lm "${cor_cascade_lm}")
        _lm_sum=$(files_sum "${cor_cascade_lm}/config.json")
    fi
    steps_begin correct
    for dset in "${all_sets[@]}"; do
        _units=${sep_decode}/${dset}/${units_name}/units
        _teacher=${sep_decode}/${dset}/teacher/text_pt
        _est=${sep_decode}/${dset}/wav.scp
        if [ ${#_cascade[@]} -eq 0 ]; then
            signature="model=$(files_sum "${cor_exp}/${cor_inference_model}") config=${cor_inference_config} inputs=$(files_sum "${_units}" "${_teacher}")"
            steps_add "${cor_decode}/${dset}" "${signature}" "${_units}" --units "${_units}" --teacher_text "${_teacher}"
        else
            signature="cascade=${asr_backend}:${asr_model}+${_lm_sum} inputs=$(files_sum "${_est}")"
            steps_add "${cor_decode}/${dset}" "${signature}" "${_est}" --wav_scp "${_est}"
        fi
    done
    if [ ${#_cascade[@]} -eq 0 ]; then
        steps_run sepalm_espnet.bin.cor_inference --train_config "${cor_exp}/config.yaml" \
            --model_file "${cor_exp}/${cor_inference_model}" --device "${device}" ${cor_inference_config:+--config "${cor_inference_config}"}
    else
        steps_run sepalm_espnet.bin.cascade_correct --backend "${asr_backend}" --model "${asr_model}" \
            "${_cascade[@]}" --device "${device}"
    fi
    steps_done
    register_system "Whisper on the separator's output (${asr_backend} ${asr_model##*/})${_of}" transcript "${sep_exp}/decode/{set}/teacher/text_pt"
    register_system "Corrector ${cor_tag}/${cor_inference_tag}: preliminary${_of}" transcript "${cor_decode}/{set}/text_pt"
    register_system "Corrector ${cor_tag}/${cor_inference_tag}: corrected${_of}" transcript "${cor_decode}/{set}/text_ct"
fi

if runs 9; then
    prepare_codec 9
    log "Stage 9, step 1: DAC tokens of the estimates and of their references"
    steps_begin tokenize
    for dset in "${all_sets[@]}"; do
        _est=${sep_decode}/${dset}
        signature="codec=${_codec_sum} inputs=$(files_sum "${_est}/wav.scp" "${_est}/ref.scp")"
        steps_add "${sep_decode}/${dset}/${tokens_name}" "${signature}" "${_est}/wav.scp" --wav_scp "${_est}/wav.scp" "${_est}/ref.scp"
    done
    steps_run sepalm_espnet.bin.codec_tokenize --codec "${codec_file}" --device "${device}" \
        --output_names est_tokens ref_tokens
    steps_done
    log "Stage 9, step 2: the codec's decoding of the test references' tokens (the oracle ladder's top rung)"
    steps_begin codec_resynthesis
    for dset in "${test_set_list[@]}"; do
        _ref=${sep_decode}/${dset}/ref.scp
        _tokens=${sep_decode}/${dset}/${tokens_name}/ref_tokens.scp
        signature="codec=${_codec_sum} inputs=$(files_sum "${_tokens}" "${_ref}")"
        steps_add "${sep_decode}/${dset}/${tokens_name}_resynthesis" "${signature}" "${_tokens}" \
            --tokens "${_tokens}" --wav_scp "${_ref}"
    done
    steps_run sepalm_espnet.bin.codec_resynthesis --codec "${codec_file}" --device "${device}"
    steps_done
    register_system "Codec resynthesis of s (oracle, ${codec_tag})${_of}" oracle "${sep_decode}/{set}/${tokens_name}_resynthesis/speech.scp"
    log "Stage 9, step 3: phonemes of the corrected transcripts and of the test sets' oracle texts (token list from ${train_set})"
    steps_begin g2p
    for dset in "${all_sets[@]}"; do
        _text=${cor_decode}/${dset}/text_ct
        steps_add "${cor_decode}/${dset}/g2p" "text=$(files_sum "${_text}")" "${_text}" --text "${_text}"
    done
    while read -r _rung _text _; do
        for dset in "${test_set_list[@]}"; do
            steps_add "${sep_decode}/${dset}/g2p_${_rung}" "text=$(files_sum "${sep_decode}/${dset}/${_text}")" \
                "${sep_decode}/${dset}/${_text}" --text "${sep_decode}/${dset}/${_text}"
        done
    done < <(oracle_rungs)
    steps_run sepalm_espnet.bin.g2p
    steps_done
    "${python}" -m sepalm_espnet.bin.g2p --token_list_from "${cor_decode}/${train_set}/g2p/phonemes" --token_list_out "${token_list}"
fi

if runs 10 && [ -n "${resep_config}" ]; then
    for dset in "${train_set}" "${valid_set}"; do
        signature="inputs=$(files_sum "${dumpdir}/raw/${dset}/wav.scp" "${sep_decode}/${dset}/wav.scp")"
        if step_needed "${sep_decode}/${dset}/mixtures" "${signature}"; then
            "${python}" -m sepalm_espnet.bin.estimate_mixtures --mixtures "${dumpdir}/raw/${dset}/wav.scp" \
                --estimates "${sep_decode}/${dset}/wav.scp" --output "${sep_decode}/${dset}/mixtures/mix.scp"
            step_done "${sep_decode}/${dset}/mixtures" "${signature}"
        fi
    done
    log "Stage 10: re-separation model (Table 3 a: ${resep_config})"
    read -ra _train <<< "$(resep_data "${train_set}")"
    read -ra _valid <<< "$(resep_data "${valid_set}")"
    _args=(--token_list "${token_list}")
    train_task resep resep_train "${resep_config}" "${expdir}/resep_stats_$(config_tag "${resep_config}")${_sys}" "${resep_exp}" \
        "${resep_inference_model}" speech_mix _train _valid _args "${resep_args}"
elif runs 10; then
    read -ra _train <<< "$(syn_data "${train_set}" | tr '\n' ' ')"
    read -ra _valid <<< "$(syn_data "${valid_set}" | tr '\n' ' ')"
    _args=(--token_list "${token_list}")
    if uses_semantic; then
        log "Stage 10, step 1: text-to-semantic model (${t2s_config})"
        _n_units=$("${python}" -m sepalm_espnet.bin.fit_kmeans --print_size "${kmeans_dir}")
        _t2s_train=("${_train[2]}" "${_train[3]/,semantic,/,units,}")
        _t2s_valid=("${_valid[2]}" "${_valid[3]/,semantic,/,units,}")
        _t2s_args=(--token_list "${token_list}" --model_conf "unit_vocab_size=${_n_units}")
        train_task t2s t2s_train "${t2s_config}" "${expdir}/t2s_stats_$(config_tag "${t2s_config}")${_sys}" "${t2s_exp}" \
            "${t2s_inference_model}" phonemes _t2s_train _t2s_valid _t2s_args "${t2s_args}"
        _args+=(--model_conf "semantic_vocab_size=${_n_units}")
    fi
    log "Stage 10: synthesizer (${syn_config})"
    train_task syn syn_train "${syn_config}" "${expdir}/syn_stats_${syn_tag}${_sys}" "${syn_exp}" \
        "${syn_inference_model}" ref_tokens _train _valid _args "${syn_args}"
fi

if runs 11 && [ -n "${resep_config}" ]; then
    log "Stage 11: the test sets re-separated from each corrected transcript (Table 3 a)"
    steps_begin reseparate
    for dset in "${test_set_list[@]}"; do
        _phonemes=${cor_decode}/${dset}/g2p/phonemes
        signature="model=$(files_sum "${resep_exp}/${resep_inference_model}") inputs=$(files_sum "${_phonemes}" "${dumpdir}/raw/${dset}/wav.scp")"
        steps_add "${resep_exp}/decode_${cor_tag}_${cor_inference_tag}/${dset}" "${signature}" "${_phonemes}" \
            --phonemes "${_phonemes}" --mix_scp "${dumpdir}/raw/${dset}/wav.scp"
    done
    steps_run sepalm_espnet.bin.resep_inference --train_config "${resep_exp}/config.yaml" \
        --model_file "${resep_exp}/${resep_inference_model}" --device "${device}"
    steps_done
    register_system "Re-separation from the corrected text (Table 3 a, ${resep_exp##*/resep_})${_of}" ablation \
        "${resep_exp}/decode_${cor_tag}_${cor_inference_tag}/{set}/speech.scp"
elif runs 11; then
    log "Stage 11: refined speech of every set into ${syn_decode}, of the test sets' oracle texts into ${syn_exp}/decode_oracle_*"
    # One decoding per set and text: "<set> <phonemes> <t2s dir> <output dir>".
    _decodings=()
    for dset in "${all_sets[@]}"; do
        _decodings+=("${dset} ${cor_decode}/${dset}/g2p/phonemes ${t2s_decode}/${dset} ${syn_decode}/${dset}")
    done
    while read -r _rung _; do
        for dset in "${test_set_list[@]}"; do
            _decodings+=("${dset} ${sep_decode}/${dset}/g2p_${_rung}/phonemes ${t2s_exp}/decode_oracle_${_rung}/${dset} ${syn_exp}/decode_oracle_${_rung}/${dset}")
        done
    done < <(oracle_rungs)
    if uses_semantic; then
        log "Stage 11, step 1: semantic units of the phonemes (${t2s_exp})"
        steps_begin t2s
        for _decoding in "${_decodings[@]}"; do
            read -r dset _phonemes _t2s _out <<< "${_decoding}"
            signature="model=$(files_sum "${t2s_exp}/${t2s_inference_model}") inputs=$(files_sum "${_phonemes}")"
            steps_add "${_t2s}" "${signature}" "${_phonemes}" --phonemes "${_phonemes}"
        done
        steps_run sepalm_espnet.bin.t2s_inference --train_config "${t2s_exp}/config.yaml" \
            --model_file "${t2s_exp}/${t2s_inference_model}" --device "${device}"
        steps_done
    fi
    steps_begin synthesize
    for _decoding in "${_decodings[@]}"; do
        read -r dset _phonemes _t2s _out <<< "${_decoding}"
        _inputs=("${sep_decode}/${dset}/${tokens_name}/est_tokens.scp" "${_phonemes}")
        ! uses_semantic || _inputs+=("${_t2s}/semantic")
        signature="model=$(files_sum "${syn_exp}/${syn_inference_model}") config=${syn_inference_config} inputs=$(files_sum "${_inputs[@]}")"
        steps_add "${_out}" "${signature}" "${_inputs[0]}" --est_tokens "${_inputs[0]}" \
            --phonemes "${_inputs[1]}" ${_inputs[2]:+--semantic "${_inputs[2]}"} --wav_scp "${sep_decode}/${dset}/wav.scp"
    done
    steps_run sepalm_espnet.bin.syn_inference --train_config "${syn_exp}/config.yaml" \
        --model_file "${syn_exp}/${syn_inference_model}" --codec "${codec_file}" --device "${device}" ${syn_inference_config:+--config "${syn_inference_config}"}
    steps_done
    while read -r _rung _ _title; do
        register_system "Synthesizer from ${_title} (oracle, ${syn_tag})${_of}" oracle "${syn_exp}/decode_oracle_${_rung}/{set}/speech.scp"
    done < <(oracle_rungs)
    register_system "${no_aligner_row}" no_aligner "${syn_decode}/{set}/speech.scp"
fi

if runs 12; then
    log "Stage 12: aligner (${ali_config})"
    read -ra _train <<< "$(ali_data "${train_set}")"
    read -ra _valid <<< "$(ali_data "${valid_set}")"
    _args=()
    train_task ali ali_train "${ali_config}" "${expdir}/ali_stats_${ali_tag}${_sys}" "${ali_exp}" \
        "${ali_inference_model}" speech_est _train _valid _args "${ali_args}"
fi

if runs 13; then
    log "Stage 13: SepALM output of the test sets (aligned ŝ and s*) into ${ali_decode}"
    steps_begin align
    for dset in "${test_set_list[@]}"; do
        _est=${sep_decode}/${dset}/wav.scp
        _syn=${syn_decode}/${dset}/speech.scp
        signature="model=$(files_sum "${ali_exp}/${ali_inference_model}") inputs=$(files_sum "${_est}" "${_syn}")"
        steps_add "${ali_decode}/${dset}" "${signature}" "${_est}" --est_scp "${_est}" --syn_scp "${_syn}"
    done
    steps_run sepalm_espnet.bin.ali_inference --train_config "${ali_exp}/config.yaml" \
        --model_file "${ali_exp}/${ali_inference_model}" --device "${device}"
    steps_done
    register_system "${sepalm_row}" sepalm "${ali_decode}/{set}/speech.scp"
fi

# pack_model options of every component this run trained (the separator alone if the aligner
# was never trained).
packed_components=(--separator_config "${sep_exp}/config.yaml" --separator_model "${sep_exp}/${sep_inference_model}")
if [ -e "${ali_exp}/${ali_inference_model}" ]; then
    packed_components+=(
        --component "kmeans:centers=${kmeans_dir}/centers.npy,kmeans=${kmeans_dir}/kmeans.yaml"
        --component "corrector:config=${cor_exp}/config.yaml,model=${cor_exp}/${cor_inference_model}"
        --component "codec:codec=${codec_file}"
        --component "synthesizer:config=${syn_exp}/config.yaml,model=${syn_exp}/${syn_inference_model}"
        --component "aligner:config=${ali_exp}/config.yaml,model=${ali_exp}/${ali_inference_model}")
    ! uses_semantic || packed_components+=(--component "t2s:config=${t2s_exp}/config.yaml,model=${t2s_exp}/${t2s_inference_model}")
fi

if runs 14 && [ -n "${pretrained_model}" ]; then
    _outdir=${expdir}/pretrained_$(basename "${pretrained_model}" .zip)
    log "Stage 14: score ${pretrained_model} (nothing trained) on ${test_sets} into ${_outdir}/RESULTS.md"
    ${decode_cmd} --gpu "${ngpu}" "${_outdir}.log" "${python}" -m sepalm_espnet.bin.sepalm_evaluate \
        --model "${pretrained_model}" --data_dirs "${test_set_list[@]/#/${dumpdir}/raw/}" --outdir "${_outdir}" \
        --asr_backend "${asr_backend}" --asr_model "${asr_model}" --sim_backend "${sim_backend}" \
        ${sim_model:+--sim_model "${sim_model}"} --device "${device}"
    cat "${_outdir}/RESULTS.md" >&2
elif runs 14; then
    log "Stage 14: score every system of ${expdir}/systems.tsv on ${test_sets}"
    _rtf=()
    if [ -e "${ali_exp}/${ali_inference_model}" ] && [ -z "${cor_cascade_lm}${cor_cascade_config}" ]; then
        # RTF per component on 5 s inputs (paper §4.3) of the system as it would be packed.
        mkdir -p "${expdir}/rtf"
        "${python}" -m sepalm_espnet.bin.pack_model --out "${expdir}/rtf/sepalm${_sys}.zip" "${packed_components[@]}" > /dev/null
        _rtf=(--rtf_archive "${expdir}/rtf/sepalm${_sys}.zip" --rtf_systems "${separator_row}" "${no_aligner_row}" "${sepalm_row}"
            ${cor_inference_config:+--rtf_corrector_config "${cor_inference_config}"})
    fi
    "${python}" -m sepalm_espnet.bin.score_systems --manifest "${expdir}/systems.tsv" --test_sets "${test_set_list[@]}" \
        --mixture_dir "${dumpdir}/raw/{set}" --reference_dir "${sep_exp}/decode/{set}" \
        --teacher_text "${sep_exp}/decode/{set}/teacher/text_ct" --asr_backend "${asr_backend}" \
        --asr_model "${asr_model}" --sim_backend "${sim_backend}" ${sim_model:+--sim_model "${sim_model}"} \
        --device "${device}" --nj "${inference_nj}" "${_rtf[@]}" --output "${expdir}/RESULTS.md" "${score_args_list[@]}" \
        --metadata "date=$(date '+%Y-%m-%d')" "separator config=${sep_config}" "teacher and WER transcriber=${asr_backend} ${asr_model}"
    cat "${expdir}/RESULTS.md" >&2
    # Pages made from the scores above, remade at every run: to hear and to rate the systems.
    _pages=(--manifest "${expdir}/systems.tsv" --test_sets "${test_set_list[@]}" --mixture_dir "${dumpdir}/raw/{set}"
        --reference_dir "${sep_exp}/decode/{set}" --overwrite true)
    "${python}" -m sepalm_espnet.bin.make_demo "${_pages[@]}" --outdir "${expdir}/demo" --num_utterances "${demo_utterances}"
    "${python}" -m sepalm_espnet.bin.make_mos "${_pages[@]}" --outdir "${expdir}/mos" --num_utterances "${mos_utterances}"
    log "demo page: ${expdir}/demo/index.html; listening tests: ${expdir}/mos/{nmos,smos}.html (results: bin/mos_aggregate.py)"
fi

if runs 15; then
    [ -f "${expdir}/RESULTS.md" ] || fail "${expdir}/RESULTS.md not found: run stage 14"
    log "Stage 15: pack ${packed_archive}"
    # An archive of other components (another synthesizer, checkpoint, ...) is kept, not replaced.
    _models=("${sep_exp}/${sep_inference_model}")
    [ ! -e "${ali_exp}/${ali_inference_model}" ] || _models+=("${cor_exp}/${cor_inference_model}" "${syn_exp}/${syn_inference_model}" "${ali_exp}/${ali_inference_model}")
    signature="components=${packed_components[*]} models=$(files_sum "${_models[@]}")"
    if [ -f "${packed_archive}" ] && [ "$(cat "${packed_archive}.signature" 2>/dev/null)" != "${signature}" ]; then
        move_aside "${packed_archive}"
    fi
    "${python}" -m sepalm_espnet.bin.pack_model --out "${packed_archive}" "${packed_components[@]}" --results "${expdir}/RESULTS.md"
    echo "${signature}" > "${packed_archive}.signature"
fi

if runs 16; then
    [ -f "${packed_archive}" ] || fail "${packed_archive} not found: run stage 15"
    [ -n "${hf_repo}" ] || fail "stage 16 needs --hf_repo <user>/<name>"
    log "Stage 16: upload ${packed_archive} to ${hf_repo} (dry run: ${hf_dry_run})"
    "${python}" -m sepalm_espnet.bin.upload_hf --src "${packed_archive}" --repo_id "${hf_repo}" --dry_run "${hf_dry_run}"
fi

log "Successfully finished stages ${stage}-${stop_stage}"
