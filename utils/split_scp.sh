#!/usr/bin/env bash
# Kaldi split_scp.pl interface: utils/split_scp.sh in.scp out.1.scp ... out.N.scp
# Writes contiguous pieces of in.scp, in its order, line counts differing by at most one;
# an error when there are more outputs than lines. See sepalm_espnet/utils/split_scp.py.
exec python -m sepalm_espnet.bin.split_scp "$@"
