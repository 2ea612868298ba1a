#!/usr/bin/env bash
# Latchkey against node-oidc-provider, the same workload, alternating run by run, plus a bare hyper
# "hello" server as the ceiling for static documents. Everything listens on 127.0.0.1 and stops at
# the end. Results: a table on stdout, JSON lines and Markdown under artifacts/bench/, and the
# results section of BENCHMARKS.md rewritten (UPDATE_BENCHMARKS=0 to leave it alone).
#
#   bench/compare.sh                       # the published configuration (about 15 minutes)
#   USERS=20 CODES=400 LOGINS=20 RUNS=1 bench/compare.sh   # a quick look
#
# Latchkey also runs the account phases of issue 13 (a login with TOTP, a passkey sign-in, reset
# requests), which the peer has no counterpart of: TOTP_USERS, PASSKEY_USERS, ACCOUNT_LOGINS and
# RESETS size them (ACCOUNT_LOGINS=0 RESETS=0 leaves them out).
#
# Latchkey also runs the DPoP and PAR phases of issue 14 (DPoP twins of the code exchange, the
# refresh and userinfo; a pushed authorization request and the authorization that uses it), each
# beside its bearer counterpart; the peer's set-up enables neither, so its cells say "not
# measured". DPOP=0 PAR=0 leaves them out.
#
# Extra arguments go to `latchkey-bench run` (e.g. --no-warmup).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-1000}
CODES=${CODES:-20000}
CONNECTIONS=${CONNECTIONS:-64}
LOGINS=${LOGINS:-500}
RUNS=${RUNS:-3}
PORT_LATCHKEY=${PORT_LATCHKEY:-18080}
PORT_PEER=${PORT_PEER:-13000}
PORT_HELLO=${PORT_HELLO:-18090}
# Where Latchkey's mail goes: a port where nothing listens. A reset request only queues a job; the
# outbox worker's attempts then fail at once and are retried later, off the request path.
PORT_SMTP=${PORT_SMTP:-18025}
# A code works once per user and 30-second step: more TOTP users than sign-ins in any run.
ACCOUNT_LOGINS=${ACCOUNT_LOGINS:-$LOGINS}
TOTP_USERS=${TOTP_USERS:-$((2 * ACCOUNT_LOGINS))}
PASSKEY_USERS=${PASSKEY_USERS:-$ACCOUNT_LOGINS}
# Half for seeded addresses, each of which may be asked for 3 times an hour (the throttle).
RESETS=${RESETS:-$((2 * LOGINS))}
# Passkeys need a domain name: the issuer is localhost, served on 127.0.0.1.
ISSUER_LATCHKEY="http://localhost:$PORT_LATCHKEY"
DPOP=${DPOP:-1}
PAR=${PAR:-1}
UPDATE_BENCHMARKS=${UPDATE_BENCHMARKS:-1}
OUT=${OUT:-artifacts/bench}
# Where Latchkey's SQLite file lives: on a real disk, so that synchronous=FULL pays its fsyncs.
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/latchkey-bench.XXXXXX")
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits until FILE contains TEXT, for at most SECONDS.
wait_for() {
  local file=$1 text=$2 seconds=$3
  for _ in $(seq $((seconds * 10))); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "gave up waiting for '$text' in $file:" >&2
  cat "$file" >&2
  return 1
}

echo "== build (release)"
# Two invocations: built together, the bench's `test-util` feature of latchkey-core (the software
# passkey authenticator) would be unified into the server binary under test.
cargo build --release --locked -p latchkey
cargo build --release --locked -p latchkey-bench
BIN=${CARGO_TARGET_DIR:-target}/release

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT_SMTP") 2>/dev/null; then
  echo "something listens on 127.0.0.1:$PORT_SMTP; choose another PORT_SMTP" >&2
  exit 1
fi

echo "== the peer: node-oidc-provider from npm ($(node --version))"
(cd bench/peer && npm ci --no-audit --no-fund --loglevel=error)

echo "== seed Latchkey: the client, $USERS users, $TOTP_USERS with TOTP and $PASSKEY_USERS with a passkey (Argon2id)"
"$BIN/latchkey-bench" seed-latchkey --database "$WORK/latchkey.db" --users "$USERS" \
  --totp-users "$TOTP_USERS" --passkey-users "$PASSKEY_USERS" --issuer "$ISSUER_LATCHKEY" \
  --fixtures-out "$WORK/accounts.json"
cat >"$WORK/latchkey.toml" <<EOF
[smtp]
host = "127.0.0.1"
port = $PORT_SMTP
tls = "none"
from = "Latchkey bench <bench@bench.example>"
EOF

echo "== start the servers"
# Codes live 600 s (the RFC 6749 maximum) on both sides: N codes are issued first and exchanged
# after, which takes longer than Latchkey's 60 s default at N=20,000.
# Every registration of the registration phase comes from 127.0.0.1: lift the per-network
# ceiling (a flood guard, not a rate the benchmark should measure).
LATCHKEY_REGISTRATIONS_PER_MINUTE=100000000 LATCHKEY_CODE_LIFETIME=600 "$BIN/latchkey" serve --listen "127.0.0.1:$PORT_LATCHKEY" \
  --issuer "$ISSUER_LATCHKEY" --config "$WORK/latchkey.toml" \
  --database "$WORK/latchkey.db" >"$WORK/latchkey.out" 2>"$WORK/latchkey.log" &
PIDS+=($!)
LATCHKEY_PID=$!
PEER_PORT=$PORT_PEER PEER_USERS=$USERS PEER_CODE_TTL=600 node bench/peer/server.js >"$WORK/peer.out" 2>&1 &
PIDS+=($!)
PEER_PID=$!
"$BIN/latchkey-bench" hello --listen "127.0.0.1:$PORT_HELLO" --max-seconds 7200 >"$WORK/hello.out" 2>&1 &
PIDS+=($!)
HELLO_PID=$!
wait_for "$WORK/latchkey.out" "listening" 60
wait_for "$WORK/hello.out" "hello ready" 60
# The peer hashes its users' passwords before it listens.
wait_for "$WORK/peer.out" "peer ready" 600
cat "$WORK/peer.out"

echo "== benchmark"
mkdir -p "$OUT"
update=()
if [ "$UPDATE_BENCHMARKS" = 1 ]; then update=(--update BENCHMARKS.md); fi
issue14=()
if [ "$DPOP" = 1 ]; then issue14+=(--dpop); fi
if [ "$PAR" = 1 ]; then issue14+=(--par); fi
status=0
"$BIN/latchkey-bench" run \
  --target "latchkey=$ISSUER_LATCHKEY,pid=$LATCHKEY_PID" \
  --target "node-oidc-provider=http://127.0.0.1:$PORT_PEER,pid=$PEER_PID" \
  --hello "http://127.0.0.1:$PORT_HELLO/,pid=$HELLO_PID" \
  --users "$USERS" --codes "$CODES" --connections "$CONNECTIONS" --logins "$LOGINS" --runs "$RUNS" \
  --resource https://api.bench.example/mcp --registrations "${REGISTRATIONS:-2000}" \
  --account-fixtures "$WORK/accounts.json" --account-logins "$ACCOUNT_LOGINS" --resets "$RESETS" \
  --json-out "$OUT/results.jsonl" --markdown-out "$OUT/results.md" "${issue14[@]}" "${update[@]}" "$@" || status=$?
echo "JSON lines: $OUT/results.jsonl; Markdown: $OUT/results.md"
exit $status
