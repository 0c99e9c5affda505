# shellcheck shell=bash
# Job backends, Kaldi style: every stage runs `${cmd} JOB=1:N log.JOB.log command ...`.
# cmd_backend=local runs jobs on this machine; slurm submits them with sbatch (see
# conf/slurm.conf, read when present: `key value` lines for partition, gpu, mem, time,
# num_threads, account, qos, max_jobs_run). Export cmd_backend to switch.
cmd_backend=${cmd_backend:-local}
# shellcheck disable=SC2034  # the *_cmd variables are read by sepalm.sh

case "${cmd_backend}" in
    local)
        train_cmd="utils/run.sh"
        cuda_cmd="utils/run.sh"
        decode_cmd="utils/run.sh"
        ;;
    slurm)
        train_cmd="utils/slurm.sh"
        cuda_cmd="utils/slurm.sh"
        decode_cmd="utils/slurm.sh"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        return 1
        ;;
esac
