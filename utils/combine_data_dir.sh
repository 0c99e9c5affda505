#!/usr/bin/env bash
# utils/combine_data_dir.sh [--prefix P1 ... --prefix PN] <dest-dir> <src-dir1> ... <src-dirN>
# See sepalm_espnet/bin/combine_data_dir.py (--help).
exec python -m sepalm_espnet.bin.combine_data_dir "$@"
