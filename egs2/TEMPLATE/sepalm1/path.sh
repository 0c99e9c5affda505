# shellcheck shell=bash
# Sourced by sepalm.sh: activates the toolkit's venv and puts utils/ on PATH.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
export MAIN_ROOT
sepalm_venv=${SEPALM_VENV:-${MAIN_ROOT}/tools/venv}
if [ ! -f "${sepalm_venv}/bin/activate" ]; then
    echo "path.sh: no environment at ${sepalm_venv}; run 'make install' in ${MAIN_ROOT}" >&2
    return 1
fi
# shellcheck disable=SC1091
. "${sepalm_venv}/bin/activate"
export PATH=${MAIN_ROOT}/utils:${PATH}
# One thread per job: parallelism comes from --nj (2 threads per job were slower on small CPUs).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# glibc keeps freed memory in the heap for the next step instead of unmapping it: PyTorch and
# CTranslate2 allocate the same large buffers every step, and fresh pages cost page faults
# (bench/malloc_speed.py). 1 GiB thresholds; a job's memory then stays at its peak.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1073741824}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-1073741824}
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-268435456}
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
# Whisper base in CTranslate2 format, assembled from PyPI wheels by tools/install.sh.
export SEPALM_WHISPER_BASE=${SEPALM_WHISPER_BASE:-${MAIN_ROOT}/tools/models/whisper-base-ct2}
