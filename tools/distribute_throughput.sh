#!/usr/bin/env bash
# Training throughput of one process against two workers on this machine
# (tf.distribute, docs/training.md): the default model, global batch 8 of
# 128x128, soft phase in bfloat16. Prints the ms/step of each run's second
# epoch of 20 steps (the first includes tracing).
#
#   tools/distribute_throughput.sh 'TRAIN_GLOB' [SCRATCH_DIR]
set -euo pipefail
glob=${1:?give a glob of training photos}
scratch=${2:-$(mktemp -d)}
tfc_sth="$(dirname "$0")/../.venv/bin/tfc-sth"
flags=(--model=mean_scale_hyperprior --strategy=noise --soft_steps=40
  --hard_steps=0 --mixed_precision --batch_size=8 --patch_size=128
  --steps_per_epoch=20 "--train_glob=$glob")
echo "one process:"
"$tfc_sth" train "${flags[@]}" --train_dir="$scratch/one" 2>&1 |
  grep "ms/step" | tail -1
read -r port0 port1 < <(python3 -c "
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(('127.0.0.1', 0))
print(*(x.getsockname()[1] for x in s))")
# A worker whose peer never comes waits for ever: bound both, kill both on exit.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
pids=()
for i in 0 1; do
  TF_CONFIG="{\"cluster\": {\"worker\": [\"127.0.0.1:$port0\", \"127.0.0.1:$port1\"]}, \"task\": {\"type\": \"worker\", \"index\": $i}}" \
    timeout 1800 "$tfc_sth" train "${flags[@]}" --distribute=multi_worker \
    --train_dir="$scratch/two" > "$scratch/worker$i.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid" || { echo "a worker failed: see $scratch/worker*.log"; exit 1; }
done
echo "two workers:"
grep "ms/step" "$scratch/worker0.log" | tail -1
