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
# terminal. The script waits for all of them and exits with the first non-zero status.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
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
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < N; i++)); do
  if [[ $i -eq 0 ]]; then
    JAX_PROCESS_ID=$i python -m "${MODULE:-clipmg_jax.train}" "$@" --config.distributed=True \
      2>&1 | tee "$LOGDIR/process_$i.log" &
  else
    JAX_PROCESS_ID=$i python -m "${MODULE:-clipmg_jax.train}" "$@" --config.distributed=True \
      > "$LOGDIR/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || { rc=$?; [[ $status -eq 0 ]] && status=$rc; }
done
exit "$status"
