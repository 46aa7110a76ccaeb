#!/bin/sh
# runpod-hybrid pod watchdog, version 1. RunPod enforces no pod deadline (it accepts terminateAfter and ignores
# it), so this stops the pod at its deadline itself, with the pod's own key, as RunPod documents:
# `runpodctl stop pod $RUNPOD_POD_ID` (that key may stop its pod, not delete it). POSIX sh only. It lives on the
# volume, beside what it enforces: <root>/.rph/watchdog.sh, deadline.<pod> (UTC epoch s), watchdog.<pod>.pid, log.
#   watchdog.sh arm EPOCH     at an SSH contact: EPOCH (the deadline in the pod's name) becomes the deadline on
#                             the volume, and the loop starts unless it runs already
#   watchdog.sh boot EPOCH    at container start: the deadline on the volume stands (EPOCH only when there is
#                             none, at the first start), and the loop starts. A deadline already past at boot
#                             waits RPH_BOOT_GRACE_S (600) first, so a client that extended the pod can re-arm it
#   watchdog.sh run           the loop (arm and boot start it detached, so no SSH session or start script holds it)
#   watchdog.sh stop REASON   stop this pod now: runpodctl, else RunPod's API with the same key (curl): REST v2,
#                             then GraphQL (which RunPod retires in 2027)
#   watchdog.sh idle SECONDS  a job that keeps its pod warm ended: stop the pod SECONDS from now unless a job
#                             runs then (the idle stop; the deadline holds too)
#   watchdog.sh busy          a job starts: no idle stop is due any more (the next keep-warm job sets one)
#   watchdog.sh status        deadline=EPOCH, idle_until=EPOCH (or empty), busy=yes|no and running=yes|no
#   watchdog.sh identity PID  "PID START-TIME" of a live process (nothing for a dead one): how this script and
#                             the job runner recognise their own processes
set -u
DIR=$(cd "$(dirname "$0")" && pwd)
POD=${RUNPOD_POD_ID:-}
DEADLINE="$DIR/deadline.$POD"
PIDFILE="$DIR/watchdog.$POD.pid"
IDLE_UNTIL="$DIR/idle_until.$POD"
LOG="$DIR/watchdog.log"
POLL_S=${RPH_WATCHDOG_POLL_S:-60}

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) pod ${POD:-?}: $*" >> "$LOG"; }
number() { case "$1" in '' | *[!0-9]*) return 1 ;; esac; }
# A process is its pid AND its start time (field 22 of /proc/PID/stat): after a container restart, the pid
# written before it may belong to another process.
identity() {
  stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)
  # A zombie has ended (only its pid entry waits to be reaped); no entry: no process (where /proc exists).
  case "$stat" in Z*) return 1 ;; '') [ -d /proc/self ] && return 1 ;; esac
  printf '%s %s\n' "$1" "$(echo "$stat" | cut -d' ' -f20)"
}
running() {
  recorded=$(cat "$PIDFILE" 2>/dev/null) && [ -n "$recorded" ] || return 1
  kill -0 "${recorded%% *}" 2>/dev/null && [ "$(identity "${recorded%% *}")" = "$recorded" ]
}

stop_pod() {
  log "stopping the pod: $1"
  if command -v runpodctl >/dev/null 2>&1; then
    runpodctl stop pod "$POD" >> "$LOG" 2>&1 && return 0
    log "runpodctl could not stop it; trying RunPod's API"
  fi
  command -v curl >/dev/null 2>&1 || { log "cannot stop: neither runpodctl nor curl is installed"; return 1; }
  rest=${RPH_REST_URL:-https://api.runpod.io/v2}
  answer=$(post "$rest/pods/$POD/action" '{"action":"stop"}')
  case "$answer" in "200 "*) log "stopped through the API (REST v2)"; return 0 ;; esac
  log "REST v2 did not stop it: $answer"
  body='{"operationName":"StopPod","variables":{"input":{"podId":"'"$POD"'"}},"query":"mutation StopPod($input: PodStopInput!) { podStop(input: $input) { id desiredStatus } }"}'
  answer=$(post "${RPH_GRAPHQL_URL:-https://api.runpod.io/graphql}" "$body")
  case "$answer" in *'"errors"'*) ;; "200 "*'"desiredStatus"'*) log "stopped through the API (GraphQL)"; return 0 ;; esac
  log "GraphQL did not stop it: $answer"
  return 1
}

# POST JSON with the pod's key; prints the HTTP status, a space, and the answer (or curl's error).
post() {
  case "$1" in
    https://* | http://127.0.0.1:* | http://localhost:*) ;;
    *) echo "refusing to send the pod's key to $1: https only"; return 0 ;;
  esac
  # The key travels in a header read from stdin (-K -), never on a command line that `ps` shows.
  printf 'header = "Authorization: Bearer %s"\n' "${RUNPOD_API_KEY:-}" |
    curl -sS --max-time 60 -K - -H 'Content-Type: application/json' -A runpod-hybrid-watchdog/1 \
      -w '%{http_code} ' -o "$DIR/.answer.$$" --data "$2" "$1" 2>&1
  cat "$DIR/.answer.$$" 2>/dev/null
  rm -f "$DIR/.answer.$$"
}

# A job of this pod is running (or being cancelled): the pod is not idle.
busy() { grep -qs -e '^state=RUNNING$' -e '^state=CANCELLING$' "$DIR"/jobs/*/status; }

loop() {
  running && { log "a watchdog runs already (pid ${recorded%% *})"; exit 0; }
  identity $$ > "$PIDFILE"
  log "watching: deadline $(cat "$DEADLINE" 2>/dev/null) (epoch s)"
  not_before=${RPH_NOT_BEFORE:-0}
  seen_busy=
  while :; do
    deadline=$(cat "$DEADLINE" 2>/dev/null)
    number "$deadline" || { log "no deadline on the volume: the watchdog ends"; rm -f "$PIDFILE"; exit 0; }
    [ "$deadline" -lt "$not_before" ] && due=$not_before || due=$deadline
    now=$(date +%s)
    if [ "$now" -ge "$due" ]; then
      if stop_pod "its deadline $deadline (epoch s) has passed"; then rm -f "$PIDFILE"; exit 0; fi
      sleep "$POLL_S"
      continue
    fi
    # The idle stop: a keep-warm job ended at least its keep-warm time ago and no job has started since.
    idle_until=$(cat "$IDLE_UNTIL" 2>/dev/null)
    if number "$idle_until"; then
      if [ "$now" -lt "$idle_until" ]; then
        [ "$idle_until" -lt "$due" ] && due=$idle_until
      elif busy; then
        [ "$seen_busy" = "$idle_until" ] || log "keep-warm time is up but a job runs: the pod stays up"
        seen_busy=$idle_until
      elif stop_pod "idle since its last job, past its keep-warm time ($idle_until epoch s)"; then
        rm -f "$PIDFILE" "$IDLE_UNTIL"
        exit 0
      fi
    fi
    # Wake at the deadline or the idle stop, or sooner to read both again (`rph pods extend` moves the
    # deadline; a job that ends sets the idle stop): a new one is seen within POLL_S.
    left=$((due - now))
    [ "$left" -gt "$POLL_S" ] && left=$POLL_S
    sleep "$left"
  done
}

start_loop() {
  running && return 0
  RPH_NOT_BEFORE=${1:-0} setsid nohup sh "$DIR/watchdog.sh" run > /dev/null 2>&1 < /dev/null &
  i=0
  while ! running && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}

status() {
  printf 'deadline=%s\n' "$(cat "$DEADLINE" 2>/dev/null)"
  printf 'idle_until=%s\n' "$(cat "$IDLE_UNTIL" 2>/dev/null)"
  if busy; then echo busy=yes; else echo busy=no; fi
  if running; then echo running=yes; else echo running=no; fi
}

if [ "${1:-}" = identity ]; then identity "${2:-}"; exit; fi
case "$POD" in
  '' | *[!A-Za-z0-9_-]*) echo "watchdog: RUNPOD_POD_ID is not set (or not a pod id): not on a RunPod pod" >&2; exit 2 ;;
esac
case "${1:-status}" in
  arm)
    number "${2:-}" || { echo "usage: watchdog.sh arm EPOCH" >&2; exit 2; }
    echo "$2" > "$DEADLINE.tmp" && mv -f "$DEADLINE.tmp" "$DEADLINE"
    start_loop
    status
    ;;
  boot)
    number "${2:-}" || { echo "usage: watchdog.sh boot EPOCH" >&2; exit 2; }
    [ -s "$DEADLINE" ] || echo "$2" > "$DEADLINE"
    deadline=$(cat "$DEADLINE")
    now=$(date +%s)
    not_before=0
    if number "$deadline" && [ "$deadline" -le "$now" ]; then
      not_before=$((now + ${RPH_BOOT_GRACE_S:-600}))
      log "started after its deadline: stopping it at $not_before unless a client moves the deadline first"
    fi
    start_loop "$not_before"
    status
    ;;
  idle)
    number "${2:-}" || { echo "usage: watchdog.sh idle SECONDS" >&2; exit 2; }
    echo $(($(date +%s) + $2)) > "$IDLE_UNTIL.tmp" && mv -f "$IDLE_UNTIL.tmp" "$IDLE_UNTIL"
    log "idle: stopping the pod in $2 s unless a job starts"
    start_loop
    status
    ;;
  busy) rm -f "$IDLE_UNTIL" ;;
  run) loop ;;
  stop) stop_pod "${2:-asked to}" ;;
  status) status ;;
  *) echo "usage: watchdog.sh arm EPOCH | boot EPOCH | idle SECONDS | busy | run | stop REASON | status | identity PID" >&2; exit 2 ;;
esac
