#!/usr/bin/env bash
# Starts N training processes on this machine, joined through jax.distributed (a coordinator on 127.0.0.1), to try a
# multi-host run without a cluster. Each process sees DEVICES host-platform CPU devices (default 2).
#
#   bash scripts/launch_local.sh N -- <arguments of python -m clipmg_jax.train>
#   bash scripts/launch_local.sh 2 -- --config configs/synthetic.py --workdir runs/two_hosts
#
# Environment: DEVICES (per process, default 2), PORT (coordinator port, default: a free one), MODULE (default
# clipmg_jax.train; clipmg_jax.evaluate works the same way). Process i writes its output to
# <workdir>/process_<i>.log when --workdir is given, else to ./process_<i>.log; process 0's is also shown on the
# terminal. Ctrl-C (or SIGTERM to the script) asks every process to save a checkpoint and stop (exit 143); GRACE
# (default 120 s) bounds the wait before they are killed. A process that fails (an error, a kill) stops the others:
# they cannot save without it, so they are killed FAIL_GRACE (default 10 s) after a SIGTERM, and what they print
# then stays in their logs. At the end: one line per process that did not succeed (how it ended, its log), the
# command that resumes, and the exit status of the process that failed first.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
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
pids=()  # the Python processes' own PIDs: every process writes straight to its log
stopping="" cause="" killer="" shown="" said=""
say() {
  # The launcher's own line, on a line of its own: process 0's progress bar on the terminal ends in no newline.
  if [[ -z "$said" ]]; then
    said=1
    [[ -n "$(tail -c 1 "$LOGDIR/process_0.log" 2>/dev/null)" ]] && echo >&2
  fi
  echo "launch_local: $*" >&2
}
stop() {
  # $1: why; $2: seconds the processes get after SIGTERM before they are killed. SIGTERM is the preemption path:
  # they agree on a step, save a checkpoint there and exit 143. Background processes of a script ignore SIGINT, so
  # Ctrl-C is forwarded as SIGTERM.
  [[ -n "$stopping" ]] && return
  stopping="$1"
  say "$1"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  # (its output away from ours: a sleeping child holding our stdout would keep a reader waiting)
  ( sleep "$2"; kill -KILL "${pids[@]}" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
  killer=$!
}
trap 'stop "interrupted (Ctrl-C): asking the $N processes to save a checkpoint and stop (SIGTERM)" "${GRACE:-120}"' INT
trap 'stop "terminated (SIGTERM): asking the $N processes to save a checkpoint and stop (SIGTERM)" "${GRACE:-120}"' TERM
for ((i = 0; i < N; i++)); do
  : > "$LOGDIR/process_$i.log"
  JAX_PROCESS_ID=$i python -m "${MODULE:-clipmg_jax.train}" "$@" --config.distributed=True \
    > "$LOGDIR/process_$i.log" 2>&1 &
  pids+=($!)
done
# Process 0's log on the terminal through a reader of the file, which can be stopped without touching the process
# (a tee in its output would take it down with a SIGPIPE); it ends by itself once process 0 has ended.
tail -n +1 -f --pid="${pids[0]}" "$LOGDIR/process_0.log" 2>/dev/null &
shown=$!

how() {  # how a process ended, from its exit status
  local rc=$1
  if ((rc == 143)) && [[ -n "$stopping" && -z "$cause" ]]; then
    echo "status 143 (stopped by SIGTERM after saving a checkpoint)"
  elif ((rc > 128)); then
    echo "signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))) (status $rc)"
  else
    echo "status $rc"
  fi
}

declare -A rank status
for ((i = 0; i < N; i++)); do rank[${pids[$i]}]=$i; done
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  done_pid="" rc=0
  # (its stderr away from ours: bash reports a job ended by a signal there, "Killed" and the whole command line)
  wait -n -p done_pid "${running[@]}" 2>/dev/null || rc=$?
  [[ -z "${done_pid:-}" ]] && continue  # a trapped signal woke the wait: the trap ran, keep waiting
  status[$done_pid]=$rc
  still=()
  for pid in "${running[@]}"; do [[ $pid != "$done_pid" ]] && still+=("$pid"); done
  running=("${still[@]+"${still[@]}"}")
  # One process gone wrong: the others would wait for it at their next collective until the heartbeat timeout, and
  # then abort; they cannot save a checkpoint without it. What they print from here on is only for their logs.
  if ((rc != 0)) && [[ -z "$stopping" ]] && ((${#running[@]} > 0)); then
    cause=${rank[$done_pid]}
    ((cause != 0)) && { kill "$shown" 2>/dev/null || true; }
    stop "process $cause ended with $(how "$rc"): stopping the others (they cannot save without it)" \
      "${FAIL_GRACE:-10}"
  fi
done
[[ -n "$killer" ]] && { kill "$killer" 2>/dev/null || true; }
wait "$shown" 2>/dev/null || true  # the last lines of process 0's log before the summary
first=0
order=($(seq 0 $((N - 1))))
[[ -n "$cause" ]] && order=("$cause" $(seq 0 $((N - 1)) | grep -vx "$cause"))  # the cause first
for i in "${order[@]}"; do
  rc=${status[${pids[$i]}]}
  ((rc == 0)) && continue
  ended="ended with $(how "$rc")"
  [[ -n "$cause" && $i != "$cause" ]] && ended="was stopped after process $cause ended: $(how "$rc")"
  say "process $i (pid ${pids[$i]}) $ended; log: $LOGDIR/process_$i.log"
  ((first == 0)) && first=$rc
done
[[ -n "$cause" ]] && first=${status[${pids[$cause]}]}
if ((first != 0)); then
  say "resume with: bash $0 $N -- $*"
fi
exit "$first"
