# Bookkeeping and job helpers of sepalm.sh (sourced by it after its options are parsed: the
# functions read its options, e.g. ${nj}, ${train_cmd}, ${ngpu}, and its log/fail).

# A stage's outputs carry a .done marker holding the options they were made with; a rerun
# with the same options skips them, other options make the stage redo them.
is_done() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }
mark_done() { echo "$2" > "$1/.done"; }
# Signature of finished inputs: changes whenever one of them was redone.
done_sum() {
    local dir
    for dir in "$@"; do
        [ -f "${dir}/.done" ] || fail "${dir} is not finished: run the stage that makes it"
        cat "${dir}/.done"
    done | md5sum | cut -c1-32
}
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
# Joins the JOB pieces $2.1 ... $2.$3 of a Kaldi file into $1 (sorted; a duplicate key fails).
merge_jobs() {
    local out=$1 prefix=$2 n=$3
    # shellcheck disable=SC2046
    cat $(seq -f "${prefix}.%g" 1 "${n}") | LC_ALL=C sort > "${out}.tmp"
    local dup
    dup=$(cut -d' ' -f1 "${out}.tmp" | uniq -d | head -n 1)
    [ -z "${dup}" ] || fail "${out}: key ${dup} was written by two jobs"
    mv "${out}.tmp" "${out}"
}
num_speakers() { find "$1" -maxdepth 1 -name 'spk[0-9]*.scp' | wc -l; }
# "dir/spk1.scp dir/spk2.scp": $1 = dir, $2 = number of speakers, $3 = file pattern (%n = speaker).
speaker_files() {
    local n
    for n in $(seq "$2"); do echo "$1/${3//%n/${n}}"; done
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
        ${cuda_cmd} --gpu "${ngpu}" --num_nodes "${num_nodes}" "${log}" srun --export=ALL "$@" \
            "${dist_opts[@]}" --dist_launcher slurm \
            --dist_init_method "file://$(pwd)/$(dirname "${log}")/.dist_init_$(date +%s)"
    else
        ${cuda_cmd} --gpu "${ngpu}" "${log}" "$@" "${dist_opts[@]}"
    fi
}

# Collects ESPnet shape statistics, then trains, for any of our ESPnet tasks:
#   train_task NAME BIN CONFIG ARGS STATS_DIR EXP_DIR MODEL TRAIN_DIR VALID_DIR DATA_FN KEY_FILE FIRST_SHAPE
# DATA_FN prints the task's --<split>_data_path_and_name_and_type options of a data dir; KEY_FILE
# (in each data dir) lists the examples; FIRST_SHAPE is the data name ESPnet batches by.
train_task() {
    local name=$1 bin=$2 config=$3 args=$4 stats_dir=$5 exp=$6 model=$7 train_dir=$8 valid_dir=$9
    local data_fn=${10} key_file=${11} first_shape=${12}
    [ -f "${config}" ] || fail "--${name}_config ${config}: file not found"
    local signature
    signature="config=$(md5sum < "${config}") data=$(done_sum "${train_dir}" "${valid_dir}") args=${args}"
    if is_done "${stats_dir}" "${signature}"; then
        log "${name}: ${stats_dir} is up to date, skipped"
    else
        log "${name}: collect shape statistics in ${stats_dir}"
        start_or_resume "${stats_dir}" "${signature}"
        local logdir=${stats_dir}/logdir n
        # As many train as valid key files: each stats job takes one of each.
        local _nj
        _nj=$(min "${nj}" "$(wc -l < "${valid_dir}/${key_file}")")
        _nj=$(split_keys "${train_dir}/${key_file}" "${logdir}" "${_nj}")
        split_keys "${valid_dir}/${key_file}" "${logdir}/valid" "${_nj}" > /dev/null
        # shellcheck disable=SC2046,SC2086
        ${train_cmd} JOB=1:"${_nj}" "${logdir}/stats.JOB.log" \
            ${python} -m sepalm_espnet.bin.${bin} --collect_stats true --config "${config}" \
                $(${data_fn} train "${train_dir}") $(${data_fn} valid "${valid_dir}") \
                --train_shape_file "${logdir}/keys.JOB.scp" --valid_shape_file "${logdir}/valid/keys.JOB.scp" \
                --output_dir "${logdir}/stats.JOB" ${args}
        # shellcheck disable=SC2046
        ${python} -m espnet2.bin.aggregate_stats_dirs --output_dir "${stats_dir}" \
            $(for n in $(seq "${_nj}"); do echo "--input_dir ${logdir}/stats.${n}"; done)
        mark_done "${stats_dir}" "${signature}"
    fi

    signature="${signature} stats=$(md5sum < "${stats_dir}/.done")"
    if is_done "${exp}" "${signature}"; then
        log "${name}: ${exp} is trained, skipped"
        return
    fi
    log "${name}: train in ${exp} (log: ${exp}/train.log)"
    # No start_or_resume here: ESPnet's --resume continues from the last checkpoint.
    mkdir -p "${exp}"
    local shapes=() split shape
    for split in train valid; do
        shapes+=(--"${split}"_shape_file "${stats_dir}/${split}/${first_shape}_shape")
        for shape in "${stats_dir}/${split}"/*_shape; do
            [ "${shape}" = "${stats_dir}/${split}/${first_shape}_shape" ] || shapes+=(--"${split}"_shape_file "${shape}")
        done
    done
    # shellcheck disable=SC2046,SC2086
    launch_training "${exp}/train.log" \
        ${python} -m sepalm_espnet.bin.${bin} --config "${config}" \
            $(${data_fn} train "${train_dir}") $(${data_fn} valid "${valid_dir}") \
            "${shapes[@]}" --resume true --output_dir "${exp}" ${args}
    [ -e "${exp}/${model}" ] || fail "training ended without ${exp}/${model} (see --${name}_inference_model)"
    mark_done "${exp}" "${signature}"
}

# Starts (or resumes) a JOB-split step writing into $2 over the keys of $1: sets _logdir and _nj.
start_split() {
    start_or_resume "$2" "$3"
    _logdir=$2/logdir
    _nj=$(split_keys "$1" "${_logdir}" "${inference_nj}")
}
