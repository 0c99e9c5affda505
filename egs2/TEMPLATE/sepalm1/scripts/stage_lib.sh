# shellcheck shell=bash disable=SC2154  # the options are sepalm.sh's variables
# Bookkeeping of sepalm.sh, sourced after its options are parsed (the functions read ${python},
# ${ngpu}, ${num_nodes}, ${nj}, ${stage}, ${stop_stage}, ${skip_stages}, ${skip_upload_hf},
# ${cmd_backend}, ${train_cmd}, ${decode_cmd}, ${cuda_cmd}).
#
# Every step writes one directory and has one life cycle (step_needed ... step_done):
#   signature = options + checksums of every input file
#   -> skipped when <dir>/.done holds that signature
#   -> a directory made with another signature is moved aside (never deleted)
#   -> an interrupted run with the same signature resumes in place
#   -> work, then <dir>/.done.

# The stage gate: runs N is true when --stage <= N <= --stop_stage and N is not skipped
# (--skip_stages; 16 also while --skip_upload_hf true).
is_skipped() {
    case " ${skip_stages} " in *" $1 "*) return 0 ;; esac
    [ "$1" -eq 16 ] && [ "${skip_upload_hf}" = true ]
}
runs() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && ! is_skipped "$1"; }
# Experiment name of a config: its file name (through symlinks) without .yaml.
config_tag() { basename "$(readlink -f "$1")" .yaml; }

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
fail() { log "error: $*"; exit 1; }

# Checksum of the contents of input files, in the order given.
files_sum() {
    local file
    for file in "$@"; do
        [ -f "${file}" ] || fail "${file} not found: run the stage that makes it"
    done
    md5sum -- "$@" | cut -d' ' -f1 | md5sum | cut -c1-32
}
# Checksum of every file of a data directory, names included (a new table changes it).
dir_sum() {
    (cd "$1" && find . -maxdepth 1 -xtype f ! -name '.*' -print0 | LC_ALL=C sort -z | xargs -0 md5sum) \
        | md5sum | cut -c1-32
}

is_done() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }

# step_needed DIR SIGNATURE: false (and logged) when DIR is up to date; else prepares DIR.
# A step's DIR never holds a step made before it in the run: moved aside with DIR, it would be lost.
_step_dirs=()
step_needed() {
    local dir=$1 signature=$2 earlier
    for earlier in "${_step_dirs[@]}"; do
        case ${earlier} in "${dir}"/*) fail "${earlier}, made before ${dir}, is inside it: put it beside ${dir}" ;; esac
    done
    _step_dirs+=("${dir}")
    if is_done "${dir}" "${signature}"; then
        log "${dir} is up to date, skipped"
        return 1
    fi
    if [ -f "${dir}/.signature" ] && [ "$(cat "${dir}/.signature")" != "${signature}" ]; then
        move_aside "${dir}"
    fi
    rm -f "${dir}/.done"
    mkdir -p "${dir}/logdir"
    echo "${signature}" > "${dir}/.signature"
}
step_done() { echo "$2" > "$1/.done"; }
# move_aside PATH: a file or dir made from other inputs or options, kept as PATH.old.<time>.
move_aside() {
    local aside
    aside=$1.old.$(date '+%Y%m%d-%H%M%S')
    while [ -e "${aside}" ]; do aside=${aside}_; done
    log "$1 was made with other inputs or options: moved to ${aside}"
    mv "$1" "${aside}"
    # Its tables named its files where they were: a new run is about to write there.
    [ ! -d "${aside}" ] || "${python}" -m sepalm_espnet.bin.relocate_tables --old "$1" --new "${aside}"
}

# The inference/feature steps of a stage, one per set, run as ONE job array: each job pays the
# Python and ESPnet start-up once for all sets (per set, it was most of the mini recipe's time).
#   steps_begin NAME [NJ [GPUS]]
#   steps_add DIR SIGNATURE KEYS [ARGS...]   nothing to do when DIR is up to date
#   steps_run MODULE [ARGS...]               job n runs MODULE once per step: ARGS, the step's
#                                            ARGS, --key_file DIR/logdir/keys.n.scp, --output_dir
#                                            DIR/logdir/output.n; then merges each step into DIR
#                                            (its job logs are copied to DIR/logdir)
#   steps_done                               marks every step's DIR done
# (The merge refuses a key missing or written twice.)
steps_begin() {
    _steps_name=$1
    _steps_nj=${2:-${inference_nj}}
    _steps_gpus=${3:-${ngpu}}
    _steps_jobs=0
    _steps_dirs=()
    _steps_signatures=()
    _steps_counts=()
    _steps_plans=${expdir}/plans/${_steps_name}
    mkdir -p "${_steps_plans}"
    rm -f "${_steps_plans}"/plan.*
}
steps_add() {
    local dir=$1 signature=$2 keys=$3 n njobs key_files=()
    shift 3
    step_needed "${dir}" "${signature}" || return 0
    [ -s "${keys}" ] || fail "${keys}: no entries"
    njobs=$(wc -l < "${keys}")
    [ "${njobs}" -le "${_steps_nj}" ] || njobs=${_steps_nj}
    for ((n = 1; n <= njobs; n++)); do
        key_files+=("${dir}/logdir/keys.${n}.scp")
        local run=("$@" --key_file "${dir}/logdir/keys.${n}.scp" --output_dir "${dir}/logdir/output.${n}")
        (IFS=$'\t'; echo "${run[*]}") >> "${_steps_plans}/plan.${n}"
    done
    split_scp.sh "${keys}" "${key_files[@]}"
    [ "${njobs}" -le "${_steps_jobs}" ] || _steps_jobs=${njobs}
    _steps_dirs+=("${dir}")
    _steps_signatures+=("${signature}")
    _steps_counts+=("${njobs}")
}
steps_run() {
    [ "${#_steps_dirs[@]}" -gt 0 ] || return 0
    log "${_steps_name}: ${_steps_dirs[*]} (logs: ${_steps_plans})"
    local n
    for ((n = 1; n <= _steps_jobs; n++)); do touch "${_steps_plans}/plan.${n}"; done
    ${decode_cmd} --gpu "${_steps_gpus}" JOB=1:"${_steps_jobs}" "${_steps_plans}/${_steps_name}.JOB.log" \
        "${python}" -m sepalm_espnet.bin.run_many --plan "${_steps_plans}/plan.JOB" "$@"
    "${python}" -m sepalm_espnet.bin.merge_job_outputs --dirs "${_steps_dirs[@]}" --num_jobs "${_steps_counts[@]}"
    local i
    for i in "${!_steps_dirs[@]}"; do  # each step keeps the logs of the jobs that made it
        for ((n = 1; n <= _steps_counts[i]; n++)); do
            cp "${_steps_plans}/${_steps_name}.${n}.log" "${_steps_dirs[i]}/logdir/"
        done
    done
}
steps_done() {
    local i
    for i in "${!_steps_dirs[@]}"; do step_done "${_steps_dirs[i]}" "${_steps_signatures[i]}"; done
}
# job_step DIR SIGNATURE KEYS NAME MODULE ARGS...: a single step.
job_step() {
    steps_begin "$4"
    steps_add "$1" "$2" "$3"
    steps_run "${@:5}"
    steps_done
}

# One training job through ESPnet's distributed options: one process per GPU on one node, or
# (slurm, --num_nodes > 1) one task per node that ESPnet's --dist_launcher slurm expands.
launch_training() {
    local log=$1
    shift
    local dist_opts=(--ngpu "${ngpu}" --multiprocessing_distributed true)
    [ "${ngpu}" -eq 0 ] && dist_opts+=(--dist_backend gloo)
    if [ "${num_nodes}" -gt 1 ]; then
        [ "${cmd_backend}" = slurm ] || fail "--num_nodes ${num_nodes} needs cmd_backend=slurm (cmd.sh)"
        ${cuda_cmd} --gpu "${ngpu}" --num_threads "${train_num_threads}" --num_nodes "${num_nodes}" "${log}" srun --export=ALL "$@" \
            "${dist_opts[@]}" --dist_launcher slurm \
            --dist_init_method "file://$(readlink -m "$(dirname "${log}")")/.dist_init_$(date +%s)"
    else
        ${cuda_cmd} --gpu "${ngpu}" --num_threads "${train_num_threads}" "${log}" "$@" "${dist_opts[@]}"
    fi
}

# ESPnet data options of a split: data_options SPLIT path,name,type ...
data_options() {
    local split=$1 spec
    shift
    for spec in "$@"; do echo "--${split}_data_path_and_name_and_type=${spec}"; done
}

# train_task NAME BIN CONFIG STATS_DIR EXP MODEL SHAPE_NAME TRAIN_DATA VALID_DATA ARGS USER_ARGS:
# shape statistics, then training, of any of our ESPnet tasks. TRAIN_DATA, VALID_DATA and ARGS
# name arrays: "path,name,type" specs (the first one's keys are the examples; SHAPE_NAME is the
# data ESPnet batches by) and the recipe's training options; USER_ARGS is the user's --*_args.
train_task() {
    local name=$1 bin=$2 config=$3 stats_dir=$4 exp=$5 model=$6 shape_name=$7
    local -n train_specs=$8 valid_specs=$9 recipe_args=${10}
    local train_opts valid_opts paths=() spec arg signature train_args user_args
    read -ra user_args <<< "${11}"
    train_args=("${recipe_args[@]}" "${user_args[@]}")
    [ -f "${config}" ] || fail "--${name}_config ${config}: file not found"
    for spec in "${train_specs[@]}" "${valid_specs[@]}"; do paths+=("${spec%%,*}"); done
    for arg in "${recipe_args[@]}"; do  # a token list file, a tokenizer step dir: their contents sign too
        if [ -f "${arg}" ]; then paths+=("${arg}"); elif [ -f "${arg}/.done" ]; then paths+=("${arg}/.done"); fi
    done
    mapfile -t train_opts < <(data_options train "${train_specs[@]}")
    mapfile -t valid_opts < <(data_options valid "${valid_specs[@]}")
    signature="config=$(files_sum "${config}") data=$(files_sum "${paths[@]}") args=${train_args[*]}"

    if step_needed "${stats_dir}" "${signature}"; then
        log "${name}: collect shape statistics in ${stats_dir}"
        local logdir=${stats_dir}/logdir train_keys=${train_specs[0]%%,*} valid_keys=${valid_specs[0]%%,*}
        local njobs n inputs=() train_splits=() valid_splits=()
        njobs=$(wc -l < "${valid_keys}")
        [ "${njobs}" -le "${nj}" ] || njobs=${nj}
        for ((n = 1; n <= njobs; n++)); do
            train_splits+=("${logdir}/train.${n}.scp")
            valid_splits+=("${logdir}/valid.${n}.scp")
            inputs+=(--input_dir "${logdir}/stats.${n}")
        done
        split_scp.sh "${train_keys}" "${train_splits[@]}"
        split_scp.sh "${valid_keys}" "${valid_splits[@]}"
        ${train_cmd} JOB=1:"${njobs}" "${logdir}/stats.JOB.log" \
            "${python}" -m "sepalm_espnet.bin.${bin}" --collect_stats true --config "${config}" \
                "${train_opts[@]}" "${valid_opts[@]}" --train_shape_file "${logdir}/train.JOB.scp" \
                --valid_shape_file "${logdir}/valid.JOB.scp" --output_dir "${logdir}/stats.JOB" "${train_args[@]}"
        "${python}" -m espnet2.bin.aggregate_stats_dirs --output_dir "${stats_dir}" "${inputs[@]}"
        step_done "${stats_dir}" "${signature}"
    fi

    signature="${signature} stats=$(files_sum "${stats_dir}/.done")"
    step_needed "${exp}" "${signature}" || return 0
    log "${name}: train in ${exp} (log: ${exp}/train.log)"
    local shapes=() split shape
    for split in train valid; do
        shapes+=(--"${split}"_shape_file "${stats_dir}/${split}/${shape_name}_shape")
        for shape in "${stats_dir}/${split}"/*_shape; do
            [ "${shape}" = "${stats_dir}/${split}/${shape_name}_shape" ] || shapes+=(--"${split}"_shape_file "${shape}")
        done
    done
    # An interrupted training with the same signature continues (ESPnet --resume).
    launch_training "${exp}/train.log" \
        "${python}" -m "sepalm_espnet.bin.${bin}" --config "${config}" "${train_opts[@]}" "${valid_opts[@]}" \
            "${shapes[@]}" --resume true --output_dir "${exp}" "${train_args[@]}"
    [ -e "${exp}/${model}" ] || fail "training ended without ${exp}/${model} (see --${name}_inference_model)"
    step_done "${exp}" "${signature}"
}

# The systems manifest that stage 14 scores: register_system NAME MODE PATH ({set} in PATH
# stands for each test set). A name registered again with another mode or path replaces its line.
register_system() {
    local manifest=${expdir}/systems.tsv line
    line=$(printf '%s\t%s\t%s' "$1" "$2" "$3")
    touch "${manifest}"
    grep -qxF -- "${line}" "${manifest}" && return 0
    awk -F'\t' -v name="$1" '$1 != name' "${manifest}" > "${manifest}.tmp"
    echo "${line}" >> "${manifest}.tmp"
    mv "${manifest}.tmp" "${manifest}"
}
