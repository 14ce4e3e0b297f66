#!/usr/bin/env bash
# Starts N training processes on this machine, joined through jax.distributed (a coordinator on 127.0.0.1), to try a
# multi-host run without a cluster. Each process sees DEVICES host-platform CPU devices (default 2).
#
#   bash scripts/launch_local.sh N -- <arguments of python -m clipmg_jax.train>
#   bash scripts/launch_local.sh 2 -- --config configs/synthetic.py --workdir runs/two_hosts
#
# Environment: DEVICES (per process, default 2), PORT (coordinator port, default: a free one), MODULE (default
# clipmg_jax.train; clipmg_jax.evaluate works the same way). Process i writes its output to
# <workdir>/process_<i>.log when --workdir is given, else to ./process_<i>.log; process 0's also goes to the
# terminal. The script waits for all of them and exits with the first non-zero status, naming each process that
# failed and the command that resumes. Ctrl-C (or SIGTERM to the script) asks every process to save a checkpoint
# and stop (exit 143); GRACE (default 120 s) bounds the wait before they are killed. A process that fails stops the
# others the same way.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
[[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]] && usage 0
[[ $# -ge 2 && "$1" =~ ^[1-9][0-9]*$ && "$2" == "--" ]] || usage 2
N="$1"; shift 2

source "$(dirname "$0")/_venv.sh"
PORT="${PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
LOGDIR="."
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --workdir) LOGDIR="${args[$((i + 1))]}" ;;
    --workdir=*) LOGDIR="${args[$i]#--workdir=}" ;;
  esac
done
mkdir -p "$LOGDIR"

export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES:-2}"
export JAX_COORDINATOR_ADDRESS="127.0.0.1:${PORT}" JAX_NUM_PROCESSES="$N"
# The Python processes' own PIDs (process 0's output reaches the terminal through a tee that is not in the pipeline,
# so $! is python's, and a tee that ignores Ctrl-C keeps logging while the processes save).
pids=()
stopping=""
stop() {
  # Every process gets SIGTERM, the preemption path: they agree on a step, save a checkpoint there and exit 143.
  # Background processes of a script ignore SIGINT, so Ctrl-C is forwarded as SIGTERM; after GRACE seconds
  # (default 120) the survivors are killed.
  [[ -n "$stopping" ]] && return
  stopping="$1"
  echo "launch_local: $1: asking the $N processes to save a checkpoint and stop (SIGTERM)" >&2
  kill -TERM "${pids[@]}" 2>/dev/null || true
  # (its output away from ours: a sleeping child holding our stdout would keep a reader waiting)
  ( sleep "${GRACE:-120}"; kill -KILL "${pids[@]}" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
  killer=$!
}
killer=""
trap 'stop "interrupted (Ctrl-C)"' INT
trap 'stop "terminated (SIGTERM)"' TERM
for ((i = 0; i < N; i++)); do
  if [[ $i -eq 0 ]]; then
    JAX_PROCESS_ID=$i python -m "${MODULE:-clipmg_jax.train}" "$@" --config.distributed=True \
      > >(tee -i "$LOGDIR/process_$i.log") 2>&1 &
  else
    JAX_PROCESS_ID=$i python -m "${MODULE:-clipmg_jax.train}" "$@" --config.distributed=True \
      > "$LOGDIR/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
declare -A rank status
for ((i = 0; i < N; i++)); do rank[${pids[$i]}]=$i; done
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  done_pid="" rc=0
  wait -n -p done_pid "${running[@]}" || rc=$?
  [[ -z "${done_pid:-}" ]] && continue  # a trapped signal woke the wait: the trap ran, keep waiting
  status[$done_pid]=$rc
  still=()
  for pid in "${running[@]}"; do [[ $pid != "$done_pid" ]] && still+=("$pid"); done
  running=("${still[@]+"${still[@]}"}")
  # One process gone wrong: the others would wait for it at their next collective until the heartbeat timeout.
  if ((rc != 0)) && ((${#running[@]} > 0)); then stop "process ${rank[$done_pid]} exited with status $rc"; fi
done
[[ -n "$killer" ]] && kill "$killer" 2>/dev/null
sleep 0.2  # process 0's tee flushes the last lines before the summary
first=0
for ((i = 0; i < N; i++)); do
  rc=${status[${pids[$i]}]}
  ((rc == 0)) && continue
  how="status $rc"
  ((rc == 143)) && how="status 143 (stopped by SIGTERM after saving a checkpoint)"
  ((rc > 128 && rc != 143)) && how="signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))) (status $rc)"
  echo "launch_local: process $i (pid ${pids[$i]}) ended with $how; log: $LOGDIR/process_$i.log" >&2
  ((first == 0)) && first=$rc
done
if ((first != 0)); then
  echo "launch_local: resume with: bash $0 $N -- $*" >&2
fi
exit "$first"
