#!/usr/bin/env bash
# The pretrained-tower study of docs/results.md, on one GPU machine with ~16 cores:
#   1. the synthetic benchmark dataset (seed 0, preset demo) is generated and converted, in the background;
#   2. one captioned corpus of PEOPLE people (PROBE of them held out) is rendered, then the tower is pretrained on it
#      twice side by side, without and with colour jitter (configs/pretrain_synthetic.py, STEPS steps of BATCH);
#   3. the linear probe (studies/linear_probe.py) of each on the held-out people; the recipe whose "regions"
#      features read the two hand regions best (mean balanced accuracy) is kept;
#   4. the benchmark with that tower (configs/synthetic_pretrained.py: visual_only, full, full+extras, pose_only)
#      and, for comparison, visual_only from random initialisation (configs/synthetic.py), SEEDS, side by side.
#
#   bash studies/pretrained_tower.sh ROOT [RESULTS_DIR]
#
# RESULTS_DIR (default ROOT/results) gets, as they are made: probe_plain.txt, probe_jitter.txt, tower.tgz (the
# kept tower with its pretraining config and probe), results_pretrained.md, results_scratch.md, and at the end
# runs.tgz (every run's logs, config, metrics and results, and the sweeps' records; no checkpoints or data). LIMIT
# (seconds) bounds the whole study: the benchmark runs get what is left of it. On a 2-core CPU the same steps take
# many hours. The steps that read or pack the runs' folders are studies/pretrained_tower_prep.py's.
set -uo pipefail
root=${1:-runs/pretrained_tower}
results=${2:-$root/results}
PEOPLE=${PEOPLE:-408}
PROBE=${PROBE:-24}
STEPS=${STEPS:-4000}
BATCH=${BATCH:-256}
JITTER=${JITTER:-0.4}
BENCH_STEPS=${BENCH_STEPS:-250}
SEEDS=${SEEDS:-0,1,2}
CORES=$(nproc)
py=${PYTHON:-python3}
logs="$root/logs"
mkdir -p "$root" "$results" "$logs"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

# The benchmark's dataset as configs/synthetic.py makes it on first use, with more conversion workers.
data="$root/dataset"
$py -m studies.pretrained_tower_prep data "$data" $(( CORES / 2 )) > "$logs/data.log" 2>&1 &
data_pid=$!

plain="$root/pretrain_plain"
jitter="$root/pretrain_jitter"
stamp "rendering the corpus ($PEOPLE people)"
$py -m studies.pretrained_tower_prep corpus $PEOPLE $PROBE "$plain" "$jitter" > "$logs/corpus.log" 2>&1 \
  || { stamp "corpus failed"; tail -20 "$logs/corpus.log"; }

stamp "pretraining, both recipes side by side"
pre=(--config configs/pretrain_synthetic.py --config.corpus.num_subjects=$PEOPLE --config.corpus.probe_subjects=$PROBE
     --config.total_steps=$STEPS --config.batch_size=$BATCH --config.optimizer.warmup_steps=$(( STEPS / 20 ))
     --config.checkpoint.every_steps=$STEPS --config.log_every_steps=$(( STEPS / 20 )))
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.2
$py -m clipmg_jax.pretrain "${pre[@]}" --workdir "$plain" > "$logs/pretrain_plain.log" 2>&1 &
p1=$!
$py -m clipmg_jax.pretrain "${pre[@]}" --workdir "$jitter" --config.data.colour_jitter=$JITTER \
    > "$logs/pretrain_jitter.log" 2>&1 &
p2=$!
wait $p1 $p2

stamp "probes"
$py -m studies.linear_probe --pretrain_workdir "$plain" > "$results/probe_plain.txt" 2> "$logs/probe_plain.log" &
p1=$!
$py -m studies.linear_probe --pretrain_workdir "$jitter" > "$results/probe_jitter.txt" 2> "$logs/probe_jitter.log" &
p2=$!
wait $p1 $p2
best=$($py -m studies.pretrained_tower_prep best "$plain" "$jitter")
stamp "kept: ${best:-none}"
[ -n "$best" ] && $py -m studies.pretrained_tower_prep keep "$best" "$results/tower.tgz"
wait $data_pid || { stamp "data preparation failed"; tail -20 "$logs/data.log"; }
stamp "benchmark data ready"

left=$(( ${LIMIT:-100000} - ($(date +%s) - t0) - 25 ))
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.05
if [ -n "$best" ]; then
  timeout $left $py -m studies.ablations --config configs/synthetic_pretrained.py \
      --root "$root/ablations_pretrained" --pretrain_workdir "$best" --data_dir "$data" \
      --variants visual_only,full,full+extras,pose_only --seeds "$SEEDS" --steps $BENCH_STEPS \
      --eval_every $(( BENCH_STEPS / 2 )) --jobs 12 --output "$results/results_pretrained.md" \
      --marker ablations_pretrained > "$logs/ablations_pretrained.log" 2>&1 &
  a1=$!
fi
timeout $left $py -m studies.ablations --config configs/synthetic.py --root "$root/ablations_scratch" \
    --data_dir "$data" --variants visual_only --seeds "$SEEDS" --steps $BENCH_STEPS \
    --eval_every $(( BENCH_STEPS / 2 )) --jobs 3 --output "$results/results_scratch.md" \
    --marker ablations_scratch > "$logs/ablations_scratch.log" 2>&1
[ -n "${a1:-}" ] && wait $a1
stamp "done"
$py -m studies.pretrained_tower_prep pack "$root" "$results/runs.tgz" dataset results 2>/dev/null
ls -la "$results"
