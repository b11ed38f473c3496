#!/bin/sh
# Alternate fastpost-only accept runs between built trees: paired A/B measurements on a
# noisy machine (compare each round's pair, not the absolute figures).
#
#   benchmarks/ab_pairs.sh ROUNDS SESSIONS LABEL=TREE [LABEL=TREE ...]
#   e.g. benchmarks/ab_pairs.sh 8 20 main=/work/main exp=/tmp/exp
#
# Each TREE (a path without spaces) is a checkout where ./dev build has run; each
# round runs, in each tree in
# turn, its own benchmarks/accept_pipeline.py --messages 5000 --runs 1 --sessions
# SESSIONS --only fastpost (run as root, as accept_pipeline.py needs) and prints
# "ROUND LABEL <its result line>" (msgs/s and CPU ms/msg, smtpd and cleanup).
#
# A TREE may end in ":VAR=VALUE" to run that side with VAR=VALUE in its environment
# (one tree, two settings: main=/work/x:FASTPOST_INDEX_INLINE=0 inline=/work/x:FASTPOST_INDEX_INLINE=1),
# and AB_DIR=DIR in the environment passes --dir DIR (where the instances are made,
# e.g. the journalled /var/tmp/jfs; docs/accept.md, "Session 7: the file system under
# the benchmark").
# AB_ARGS in the environment is added to every accept_pipeline.py command line, e.g.
# AB_ARGS="--fs journal" (a fresh journalled ext4 per run; each tree's own
# accept_pipeline.py must know the options).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 ROUNDS SESSIONS LABEL=TREE [LABEL=TREE ...]" >&2; exit 64; }
rounds=$1; sessions=$2; shift 2
# The order alternates from round to round (A B, B A, ...): the tree that runs second
# in a round was seen to win more often (session 6), so neither may always go second.
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 0 ]; then
        order=""; for pair in "$@"; do order="$pair $order"; done
    else
        order="$*"
    fi
    for pair in $order; do
        label=${pair%%=*}; tree=${pair#*=}; setting=FASTPOST_AB_NONE=1
        case $tree in *:*=*) setting=${tree#*:}; tree=${tree%%:*} ;; esac
        line=$(cd "$tree" && env "$setting" PATH="$tree/.venv/bin:$PATH" .venv/bin/python benchmarks/accept_pipeline.py \
            --messages 5000 --runs 1 --sessions "$sessions" --only fastpost ${AB_DIR:+--dir "$AB_DIR"} ${AB_ARGS:-} 2>&1 | grep "run 1") ||
            { echo "$tree: the run failed (is it built? run as root?)" >&2; exit 1; }
        echo "$r $label $line"
    done
done
