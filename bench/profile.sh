#!/usr/bin/env bash
# Profiles Latchkey phase by phase: perf record (dwarf call graphs) for a few seconds at the start
# of each phase, triggered by latchkey-bench's progress lines, and perf stat (fsync, futex, context
# switches) over the whole run. Needs the release build (bench/compare.sh builds it) and perf
# (apt-get install linux-perf). Everything listens on 127.0.0.1 and stops by itself.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUTDIR:-artifacts/profile}; USERS=${USERS:-200}; CODES=${CODES:-20000}
rm -rf $OUTDIR; mkdir -p $OUTDIR
BIN=${BIN:-target/release}
$BIN/latchkey-bench seed-latchkey --database $OUTDIR/lk.db --users $USERS >/dev/null
LATCHKEY_CODE_LIFETIME=600 $BIN/latchkey serve --listen 127.0.0.1:18180 --database $OUTDIR/lk.db >$OUTDIR/lk.out 2>$OUTDIR/lk.log &
LK=$!
sleep 2
$BIN/latchkey-bench run --target latchkey=http://127.0.0.1:18180,pid=$LK --users $USERS --codes $CODES --connections 64 --logins 200 --runs 1 --no-warmup --max-phase-seconds 40 --json-out $OUTDIR/run.jsonl > $OUTDIR/table.txt 2> $OUTDIR/progress.txt &
B=$!
rec() { # name trigger seconds
  while ! grep -q "$2" $OUTDIR/progress.txt; do sleep 0.05; done
  perf record -q -F 299 --call-graph dwarf,16384 -p $LK -o $OUTDIR/$1.data -- sleep $3 2>/dev/null
}
perf stat -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_futex,context-switches' -p $LK -o $OUTDIR/stat.txt &
PS=$!
rec authorize "users logged in" 5
rec exchange "authorization with a session" 12
rec refresh "code exchange" 12
rec userinfo "refresh (rotation)" 3
rec login "JWKS" 6
wait $B
kill -INT $PS; sleep 1
kill $LK
echo "perf data, perf stat and the run in $OUTDIR; e.g. perf report -i $OUTDIR/exchange.data --no-children -g none --sort dso,sym"
echo done
