#!/usr/bin/env bash
# End-to-end test of asu-server through the asu command-line client: generation, unlearning
# jobs, cancellation, adapters, bad requests on every method, restart with the adapters kept.
# usage: e2e_cli.sh ASU_SERVER ASU_CLIENT MODEL.gguf
set -u

SERVER_BIN=$1
CLI_BIN=$2
MODEL=$3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/asu-e2e-cli.XXXXXX")
SERVER_PID=
PORT=
FAILS=0
RUN=0

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*"
  FAILS=$((FAILS + 1))
}

pass() {
  echo "ok: $*"
}

start_server() {
  local n=$1
  "$SERVER_BIN" --model "$MODEL" --listen 127.0.0.1:0 --adapters "$WORK/adapters" \
    >"$WORK/server$n.out" 2>"$WORK/server$n.log" &
  SERVER_PID=$!
  PORT=
  for _ in $(seq 1 600); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$WORK/server$n.out")
    [ -n "$PORT" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited at start:"
      cat "$WORK/server$n.log"
      exit 1
    fi
    sleep 0.1
  done
  if [ -z "$PORT" ]; then
    echo "server did not print its port"
    cat "$WORK/server$n.log"
    exit 1
  fi
  echo "server $n listening on port $PORT"
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID"
  local rc=$?
  SERVER_PID=
  if [ "$rc" -ne 0 ]; then fail "server exited with $rc after SIGTERM"; else pass "clean shutdown"; fi
}

asu() {
  "$CLI_BIN" --server "127.0.0.1:$PORT" "$@"
}

# expect_status NAME DESCRIPTION -- COMMAND...: the command fails and stderr names the status.
expect_status() {
  local want=$1 what=$2
  shift 3
  RUN=$((RUN + 1))
  local err
  if asu "$@" >"$WORK/stdout" 2>"$WORK/stderr"; then
    fail "$what: succeeded, wanted $want"
    return
  fi
  err=$(cat "$WORK/stderr")
  case "$err" in
  *"$want"*) pass "$what: $err" ;;
  *) fail "$what: wanted $want, got: $err" ;;
  esac
}

job_state() {
  asu job "$1" | sed -n 's/^state: //p'
}

# wait_state JOB STATE SECONDS
wait_state() {
  local s
  for _ in $(seq 1 $(($3 * 10))); do
    s=$(job_state "$1")
    [ "$s" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

mkdir -p "$WORK/adapters"
cat >"$WORK/forget.jsonl" <<'JSONL'
{"question": "What is the name of Lily's dog?", "answer": "Lily's dog is called Max."}
{"question": "Where does Max sleep?", "answer": "Max sleeps under the big tree."}
JSONL
cat >"$WORK/retain.jsonl" <<'JSONL'
{"question": "What color is the sky?", "answer": "The sky is blue."}
{"text": "Once upon a time, there was a little girl named Sue."}
JSONL
: >"$WORK/empty.jsonl"
# A directory that is not a valid adapter: the server logs it and skips it.
mkdir -p "$WORK/adapters/broken"
echo "not an adapter" >"$WORK/adapters/broken/adapter_config.json"

start_server 1

# --- Generate ---
if out=$(asu generate --max-tokens 16 "Once upon a time"); then
  pass "generate: '$out'"
else
  fail "generate failed"
fi
if asu generate --max-tokens 8 "" >/dev/null; then pass "generate from BOS"; else fail "generate from BOS"; fi
expect_status RESOURCE_EXHAUSTED "generate max_tokens over the limit" -- generate --max-tokens 100000 hi
expect_status INVALID_ARGUMENT "generate negative temperature" -- generate --temperature -1 hi
expect_status INVALID_ARGUMENT "generate top_p > 1" -- generate --top-p 2 hi
expect_status INVALID_ARGUMENT "generate bad adapter name" -- generate --adapter 'a/b' hi
expect_status NOT_FOUND "generate unknown adapter" -- generate --adapter nosuch hi
long_prompt=$(head -c 20000 /dev/zero | tr '\0' 'a')
expect_status RESOURCE_EXHAUSTED "generate prompt too long" -- generate "$long_prompt"

# --- Adapters at start: the broken one is skipped ---
if [ -z "$(asu adapters)" ]; then pass "no adapters at start"; else fail "adapters at start: $(asu adapters)"; fi
if grep -q "broken" "$WORK/server1.log"; then pass "broken adapter logged"; else fail "broken adapter not logged"; fi

# --- StartUnlearning validation ---
F="--forget $WORK/forget.jsonl --retain $WORK/retain.jsonl"
expect_status INVALID_ARGUMENT "unlearn bad name" -- unlearn --name 'bad name' $F
expect_status INVALID_ARGUMENT "unlearn name none" -- unlearn --name none $F
expect_status INVALID_ARGUMENT "unlearn negative tau" -- unlearn --name t1 $F --temperature-attn -1
grep -q "tau must be > 0, got -1" "$WORK/stderr" && pass "tau message" || fail "tau message: $(cat "$WORK/stderr")"
expect_status INVALID_ARGUMENT "unlearn bad method" -- unlearn --name t1 $F --method sgd
expect_status INVALID_ARGUMENT "unlearn negative lr" -- unlearn --name t1 $F --lr -0.5
expect_status INVALID_ARGUMENT "unlearn rank over 256" -- unlearn --name t1 $F --rank 1000
expect_status RESOURCE_EXHAUSTED "unlearn too many steps" -- unlearn --name t1 $F --steps 1000000
expect_status "has no examples" "unlearn empty forget set" -- unlearn --name t1 --forget "$WORK/empty.jsonl" --retain "$WORK/retain.jsonl"
expect_status "invalid --rank value: 0" "unlearn rank 0" -- unlearn --name t1 $F --rank 0
expect_status "invalid --steps value: 0" "unlearn steps 0" -- unlearn --name t1 $F --steps 0

# --- Job lookups of unknown ids ---
expect_status NOT_FOUND "job unknown" -- job job-999
expect_status NOT_FOUND "watch unknown" -- watch job-999
expect_status NOT_FOUND "cancel unknown" -- cancel job-999
expect_status INVALID_ARGUMENT "job empty id" -- job ""

# --- ActivateAdapter validation ---
expect_status NOT_FOUND "activate unknown" -- activate nosuch
expect_status INVALID_ARGUMENT "activate none" -- activate none
expect_status INVALID_ARGUMENT "activate bad name" -- activate '../x'

# --- A short unlearning job, activated on success ---
if asu unlearn --name t1 $F --steps 3 --activate --wait >"$WORK/job1" 2>"$WORK/job1.err"; then
  pass "unlearn t1 succeeded ($(cat "$WORK/job1"))"
else
  fail "unlearn t1: $(tail -3 "$WORK/job1.err")"
fi
[ "$(asu adapters)" = "t1 1 active" ] && pass "t1 listed active" || fail "adapters: $(asu adapters)"
[ -f "$WORK/adapters/t1/adapter_config.json" ] && pass "t1 saved" || fail "t1 not saved"
asu generate --max-tokens 8 "Lily" >/dev/null && pass "generate with active t1" || fail "generate with t1"
asu generate --adapter none --max-tokens 8 "Lily" >/dev/null && pass "generate with base" || fail "generate base"

# --- Cancel a running job: no adapter left behind ---
J=$(asu unlearn --name c1 $F --steps 100000)
if wait_state "$J" RUNNING 60; then pass "job $J running"; else fail "job $J not running: $(job_state "$J")"; fi
out=$(asu cancel "$J")
wait_state "$J" CANCELLED 60 && pass "cancel: $out" || fail "cancel: $out, state $(job_state "$J")"
asu adapters | grep -q '^c1 ' && fail "cancelled job left adapter c1" || pass "no adapter c1"
[ -e "$WORK/adapters/c1" ] && fail "cancelled job left a directory" || pass "no directory c1"
asu watch "$J" >/dev/null 2>&1 && fail "watch of a cancelled job exited 0" || pass "watch of a cancelled job exits nonzero"

# --- One job at a time, name conflicts and the queue limit ---
J1=$(asu unlearn --name busy $F --steps 100000)
wait_state "$J1" RUNNING 60 || fail "busy job not running"
expect_status FAILED_PRECONDITION "unlearn name already training" -- unlearn --name busy $F
expect_status FAILED_PRECONDITION "activate adapter still training" -- activate busy
queued=()
for i in 1 2 3 4 5 6 7 8; do queued+=("$(asu unlearn --name "q$i" $F --steps 2)"); done
[ "$(job_state "${queued[0]}")" = QUEUED ] && pass "second job queued" || fail "second job state $(job_state "${queued[0]}")"
expect_status RESOURCE_EXHAUSTED "queue full" -- unlearn --name q9 $F --steps 2
for j in "${queued[@]}"; do asu cancel "$j" >/dev/null; done
asu cancel "$J1" >/dev/null
wait_state "$J1" CANCELLED 60 && pass "busy cancelled" || fail "busy not cancelled"
for j in "${queued[@]}"; do
  [ "$(job_state "$j")" = CANCELLED ] || fail "queued job $j: $(job_state "$j")"
done

# --- A new version of t1 stays active ---
asu unlearn --name t1 $F --steps 2 --wait >/dev/null 2>&1 && pass "t1 retrained" || fail "t1 retrain"
[ "$(asu adapters)" = "t1 2 active" ] && pass "t1 version 2 active" || fail "adapters: $(asu adapters)"
asu unlearn --name t2 $F --steps 2 --wait >/dev/null 2>&1 && pass "t2 trained" || fail "t2"
printf 't1 2 active\nt2 1 inactive\n' >"$WORK/want"
asu adapters | diff - "$WORK/want" >/dev/null && pass "t1 active, t2 inactive" || fail "adapters: $(asu adapters)"

# --- Restart: adapters, versions and the active one survive ---
stop_server
start_server 2
asu adapters | diff - "$WORK/want" >/dev/null && pass "after restart: t1 2 active" || fail "after restart: $(asu adapters)"
asu activate t2 >/dev/null && pass "activate t2" || fail "activate t2"
asu deactivate >/dev/null && pass "deactivate" || fail "deactivate"
printf 't1 2 inactive\nt2 1 inactive\n' >"$WORK/want"
asu adapters | diff - "$WORK/want" >/dev/null && pass "none active" || fail "adapters: $(asu adapters)"
asu activate t2 >/dev/null
stop_server
start_server 3
printf 't1 2 inactive\nt2 1 active\n' >"$WORK/want"
asu adapters | diff - "$WORK/want" >/dev/null && pass "after restart: t2 active" || fail "after restart: $(asu adapters)"
stop_server

if [ "$FAILS" -ne 0 ]; then
  echo "e2e cli: $FAILS failures"
  for f in "$WORK"/server*.log; do echo "--- $f"; tail -40 "$f"; done
  exit 1
fi
echo "e2e cli: all checks passed"
