#!/bin/sh
# runpod-hybrid job runner, version 2. Generated and copied next to each job; POSIX sh only.
# Layout: $JOB_DIR/{spec.env,command.sh,status,pid,supervisor.pid,log,log.1,heartbeat,outputs.sha256,run.sh}
# `pid` holds the job's pid and start time: after a container restart its pid may be another process's.
#   run.sh start      start the job detached (idempotent: a live job is reported, not started twice)
#   run.sh resume     at boot: restart a job that was RUNNING when the pod stopped (attempt + 1)
#   run.sh cancel [S] SIGTERM the job's process group, SIGKILL after S seconds, record CANCELLED
#   run.sh status     print the status file
#   run.sh follow N S print the log from byte N as it grows, until the job ends or S seconds pass: a client
#                     follows a job over one SSH session instead of polling
#   run.sh watchdog   (started with the job when RPH_IDLE_STOP_S > 0) stop the pod when the job's heartbeat
#                     is older than RPH_IDLE_STOP_S while it should be RUNNING: a dead-man timer
# on_finish `keep` leaves the pod up; with RPH_KEEP_WARM_S > 0 the pod watchdog stops it that long after the
# job ends unless another job runs then (the idle stop).
# The pod is stopped through the pod watchdog's `stop` (runpodctl, else RunPod's API with the pod's key).
set -u
JOB_DIR=$(cd "$(dirname "$0")" && pwd)
. "$JOB_DIR/spec.env"
STATUS="$JOB_DIR/status"
LOG="$JOB_DIR/log"

now() { date +%s; }
field() { sed -n "s/^$1=//p" "$STATUS" 2>/dev/null | tail -n 1; }
write_status() {
  # state attempt started finished exit_code
  tmp="$STATUS.tmp.$$"
  printf 'runner_version=1\nstate=%s\nattempt=%s\nstarted_at=%s\nfinished_at=%s\nexit_code=%s\n' \
    "$1" "$2" "$3" "$4" "$5" > "$tmp" && mv -f "$tmp" "$STATUS"
}
# A process is its pid AND its start time, so a live process that merely got the recorded pid (pid reuse in a
# fresh container) is not taken for the job; the pod watchdog script says what a process's identity is.
identity() { sh "$RPH_POD_GUARD" identity "$1"; }
alive() {
  recorded=$(cat "$JOB_DIR/pid" 2>/dev/null) && [ -n "$recorded" ] || return 1
  pid=${recorded%% *}
  kill -0 "$pid" 2>/dev/null && [ "$(identity "$pid")" = "$recorded" ]
}

rotate() {
  size=$(wc -c < "$LOG" 2>/dev/null || echo 0)
  if [ "$size" -gt "$RPH_LOG_MAX_BYTES" ]; then
    # copy-truncate: the job keeps its O_APPEND descriptor, so truncating in place loses nothing
    # after this point; log.1 keeps the previous part.
    cp "$LOG" "$LOG.1" && : > "$LOG"
  fi
}

checksums() {
  : > "$JOB_DIR/outputs.sha256.tmp"
  for out in $RPH_OUTPUTS; do
    ( cd "$RPH_WORKDIR" && find "$out" -type f -exec sha256sum {} + 2>/dev/null ) >> "$JOB_DIR/outputs.sha256.tmp"
  done
  mv -f "$JOB_DIR/outputs.sha256.tmp" "$JOB_DIR/outputs.sha256"
}

supervise() {
  attempt=$1
  echo $$ > "$JOB_DIR/supervisor.pid"
  mkdir -p "$RPH_CHECKPOINT_DIR"
  cd "$RPH_WORKDIR" || { write_status FAILED "$attempt" "$(now)" "$(now)" 125; exit 0; }
  RPH_ATTEMPT=$attempt RPH_CHECKPOINT_DIR=$RPH_CHECKPOINT_DIR RPH_JOB_ID=$RPH_JOB_ID \
    setsid sh "$JOB_DIR/command.sh" >> "$LOG" 2>&1 < /dev/null &
  child=$!
  identity "$child" > "$JOB_DIR/pid"
  # Heartbeat and log rotation beside the job; it ends with this supervisor ($$ in a subshell).
  ( while kill -0 $$ 2>/dev/null; do now > "$JOB_DIR/heartbeat"; rotate; sleep "$RPH_HEARTBEAT_S"; done ) &
  beat=$!
  wait "$child"
  code=$?
  kill "$beat" 2>/dev/null
  [ "$(field state)" = CANCELLING ] && { write_status CANCELLED "$attempt" "$(field started_at)" "$(now)" "$code"; exit 0; }
  checksums
  if [ "$code" -eq 0 ]; then state=SUCCEEDED; else state=FAILED; fi
  write_status "$state" "$attempt" "$(field started_at)" "$(now)" "$code"
  rm -f "$JOB_DIR/pid"
  if [ "${RPH_KEEP_WARM_S:-0}" -gt 0 ]; then
    sh "$RPH_POD_GUARD" idle "$RPH_KEEP_WARM_S" > /dev/null 2>&1  # it logs to its own log
  fi
  # Nobody watching and the policy says stop: stop our own pod (outputs are on the volume already).
  case "$RPH_ON_FINISH" in none | keep) ;; *)
    [ -e "$JOB_DIR/client-watching" ] || stop_own_pod "job $RPH_JOB_ID ended and on_finish is $RPH_ON_FINISH" ;;
  esac
}

stop_own_pod() { sh "$RPH_POD_GUARD" stop "$1" >> "$LOG" 2>&1; }

watchdog() {
  while :; do
    sleep "$RPH_HEARTBEAT_S"
    case "$(field state)" in RUNNING) ;; *) exit 0;; esac
    last=$(cat "$JOB_DIR/heartbeat" 2>/dev/null || echo 0)
    if [ $(( $(now) - last )) -gt "$RPH_IDLE_STOP_S" ]; then
      echo "rph watchdog: no heartbeat for over ${RPH_IDLE_STOP_S}s; stopping the pod" >> "$LOG"
      stop_own_pod "job $RPH_JOB_ID has not heartbeat for over ${RPH_IDLE_STOP_S}s"
      exit 0
    fi
  done
}

launch() {
  attempt=$1
  write_status RUNNING "$attempt" "$(now)" "" ""
  [ "${RPH_KEEP_WARM_S:-0}" -gt 0 ] && sh "$RPH_POD_GUARD" busy 2>/dev/null
  now > "$JOB_DIR/heartbeat"
  setsid nohup sh "$JOB_DIR/run.sh" _supervise "$attempt" > /dev/null 2>&1 < /dev/null &
  if [ "${RPH_IDLE_STOP_S:-0}" -gt 0 ]; then
    setsid nohup sh "$JOB_DIR/run.sh" watchdog > /dev/null 2>&1 < /dev/null &
  fi
  # Wait until the job's pid is known, so `status` right after `start` is exact.
  i=0
  while [ ! -s "$JOB_DIR/pid" ] && [ "$(field state)" = RUNNING ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}

case "${1:-status}" in
  start)
    if alive; then echo "already running: attempt $(field attempt)"; exit 0; fi
    case "$(field state)" in SUCCEEDED|FAILED|CANCELLED) echo "already finished: $(field state)"; exit 0;; esac
    rm -f "$JOB_DIR/pid"
    previous=$(field attempt)
    launch $(( ${previous:-0} + 1 ))
    echo "started: attempt $(field attempt)"
    ;;
  resume)
    if [ "$(field state)" = RUNNING ] && ! alive; then
      rm -f "$JOB_DIR/pid"
      launch $(( $(field attempt) + 1 ))
      echo "resumed: attempt $(field attempt)"
    fi
    ;;
  cancel)
    grace=${2:-10}
    if alive; then
      attempt=$(field attempt)
      write_status CANCELLING "$attempt" "$(field started_at)" "" ""
      # "-PID" is the job's process group (setsid made it a group leader); dash's kill takes no "--".
      kill -TERM "-$pid" 2>/dev/null
      i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt $((grace * 20)) ]; do sleep 0.05; i=$((i + 1)); done
      kill -KILL "-$pid" 2>/dev/null
      i=0
      while [ "$(field state)" = CANCELLING ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    fi
    if [ "$(field state)" = RUNNING ] || [ "$(field state)" = CANCELLING ]; then
      write_status CANCELLED "$(field attempt)" "$(field started_at)" "$(now)" ""
    fi
    cat "$STATUS"
    ;;
  _supervise) supervise "$2" ;;
  watchdog) watchdog ;;
  status) cat "$STATUS" 2>/dev/null || echo "state=UNKNOWN" ;;
  follow)
    : > "$JOB_DIR/client-watching"  # the client stops the pod itself after it has fetched the outputs
    tail -c "+${2:-1}" -F "$LOG" 2>/dev/null &
    tailer=$!
    # Bounded, so a follower whose client went away (its SSH channel closed) does not outlive it by long.
    i=0
    while [ $i -lt $((${3:-120} * 5)) ]; do
      case "$(field state)" in SUCCEEDED | FAILED | CANCELLED) break ;; esac
      sleep 0.2
      i=$((i + 1))
    done
    kill "$tailer" 2>/dev/null
    ;;
esac
