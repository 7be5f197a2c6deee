#!/usr/bin/env bash
# ftpfs benchmark (issue #4 §1): ftpfs side by side with the raw protocol (curl) and rclone mount
# (ftp backend, --vfs-cache-mode off = its default, and full), against the test bed's proftpd
# on 127.0.0.1, in one run, with ratios.
#
#   scripts/bench.sh                 default: 1 GiB seq read, 256 MiB write, 10,000-entry ls -l,
#                                    1,000 x 4 KiB small files, 200 random reads, 200-file tree;
#                                    3 repetitions, median shown (about 6 minutes here; 10 with
#                                    --rtt-ms 20)
#   scripts/bench.sh --quick         small sizes (64 MiB, 32 MiB, 1,000 entries, 100 files, 50
#                                    reads, 50-file tree), 1 repetition: for development (~1 min)
#   options:
#     --reps N          repetitions per figure (default 3; --quick: 1)
#     --only LIST       comma list of figures: seq-read,seq-write,ls,small,random,tree
#     --tools LIST      comma list of: ftpfs,curl,rclone-off,rclone-full (default all)
#     --rtt-ms MS       also run the metadata (ls) and small-file figures through ftpfs-proxy
#                       with MS/2 ms one-way delay (figures named ls-cold@rttMS, ...). Needs the
#                       proxy binary: $FTPFS_PROXY, else target/release/ftpfs-proxy; skipped with
#                       a warning when it does not exist. Small files use 200 files there.
#     --tls             explicit FTPS for everyone (ftpfs tls=required, curl --ssl-reqd,
#                       rclone explicit_tls) instead of plain FTP. Against proftpd (TLS session
#                       reuse required on data connections) curl -Z and rclone fail the parallel
#                       small-file figure (curl 18 / EOF), so a --tls run exits 1 (curl) by design
#     --ftpfs-opts OPTS extra -o options for ftpfs (e.g. connections=8)
#
# What it does: reads the test bed's state (/run/ftpfs-testbed/env); runs `scripts/testbed.sh
# install` + `start` ONLY when the state file is missing or proftpd does not answer (start wipes
# the server roots, and says so), and never stops a test bed. Data lives in
# /srv/ftpfs-test/proftpd/bench/{full,quick}/ and is reused between runs when its manifest
# matches (big.bin, dir/, small/, tree/); uploads go to .../up/ and are deleted after checking.
# Every figure mounts ftpfs (-f, in the background, so we have its PID) and rclone afresh, drops
# the kernel page cache before cold runs and then re-reads the server-side input so no tool pays
# for the disk; rclone's full-mode cache dir is new for every mount.
#
# Output: a table on stdout (median per figure, ratios within this run, target, verdict) and the
# raw per-repetition numbers in target/bench/bench-<time>.csv (+ .txt table, .log). Exit 0 when
# everything ran and every byte read or written checked out, however slow ftpfs was; exit 1 when
# ftpfs or curl failed or returned wrong data (checksums: cksum for big files, md5 for small
# files and trees, line counts for listings, every random read compared with the server's file);
# exit 3 when only rclone did (rclone 1.60's full cache mode fails reading the 1 GiB file from
# proftpd with EIO after 426 aborts); 2 on usage errors. Failed repetitions show as FAIL.
#
# Measurement notes:
# - seq-read: `dd bs=1M | cksum` of big.bin from a fresh mount; curl: `curl URL | cksum`.
# - seq-write: `cp` of a local file into the mount, timed until cp returns AND the server-side
#   file has the full size (rclone full uploads after close, with its 5 s write-back delay);
#   curl: `curl -T`. The server copy is checksummed afterwards.
# - ls-cold: `ls -l` of dir/ on a fresh mount (includes the first LIST/MLSD); curl: one LIST of
#   the same directory (minus connect, see curl_t); curl -X MLSD is timed too (in the CSV and
#   an extra "vs MLSD" row: ftpfs lists with MLSD, which proftpd serves ~1.7x slower than LIST). ls-warm: the same `ls -l` again right away; local: `ls
#   -l` of the server's own directory.
# - small-seq / small-p8: `xargs -n1 [-P8] md5sum` over the files in name order (one process
#   per file, like `cat *` one after another, and the sums check the data); curl: one curl process fetching all
#   URLs over one connection (-K config), and with -Z --parallel-max 8 (first repetition only:
#   a reference, not a target; curl 7.88 stalls ~1 s on about 5% of its EPSV data connections
#   here, so its small-file rate is low).
# - random-read: randread.py (os.pread of 4 KiB at seeded offsets on a freshly opened file of a
#   fresh mount); curl: one process, a `range` per URL (curl closes the connection after each
#   ranged transfer, so it reconnects per read; 50 reads). A tool slower than RAND_CAP seconds
#   (default 10; rclone without cache) is measured on the reads it completed.
# - tree-out: `cp -r` of tree/ out of a fresh mount; tree-in: `rsync -a` of it into the mount,
#   timed until the server has every byte.
# - peak RSS: VmHWM of each daemon just before its unmount; the maximum is reported.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPERS="$REPO/scripts/bench"
QUICK=0; REPS=""; ONLY="seq-read,seq-write,ls,small,random,tree"; RTT=0; TLS=0; FTPFS_XOPTS=""
TOOLS_SEL="ftpfs,curl,rclone-off,rclone-full"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --reps) REPS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --tools) TOOLS_SEL=$2; shift ;;
        --rtt-ms) RTT=$2; shift ;;
        --tls) TLS=1 ;;
        --ftpfs-opts) FTPFS_XOPTS=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench: unknown argument $1" >&2; usage 2 ;;
    esac
    shift
done
[[ "$RTT" =~ ^[0-9]+$ ]] || { echo "bench: --rtt-ms needs a number" >&2; exit 2; }

if [ "$QUICK" = 1 ]; then
    SET=quick; BIG_MIB=64; WRITE_MIB=32; NDIR=1000; NSMALL=100; NRAND=50; NTREE=50; REPS=${REPS:-1}
else
    SET=full; BIG_MIB=1024; WRITE_MIB=256; NDIR=10000; NSMALL=1000; NRAND=200; NTREE=200; REPS=${REPS:-3}
fi
RAND_CAP=${RAND_CAP:-10}   # seconds: a tool slower than that is measured on the reads it did
NSMALL_RTT=$(( NSMALL < 200 ? NSMALL : 200 ))
SMALL_SIZE=4096

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }
want_tool() { [[ ",$TOOLS_SEL," == *",$1,"* ]]; }

[ "$(id -u)" = 0 ] || die "run as root (drop_caches, FUSE mounts, server data ownership)"
for t in curl rsync python3 fusermount3 cksum md5sum timeout; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/testbed.sh install provides it)"
done
if ! command -v rclone >/dev/null; then
    log "rclone missing: apt-get install rclone"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >&2 || die "cannot install rclone"
fi

# ---------------------------------------------------------------- test bed
ENV_FILE=/run/ftpfs-testbed/env
proftpd_up() {
    [ -r "$ENV_FILE" ] || return 1
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    # the password goes through a netrc on a pipe, never on a command line
    curl -s -m 5 -o /dev/null "ftp://127.0.0.1:${PROFTPD_PORT:-2122}/" \
        --netrc-file <(printf 'machine 127.0.0.1 login %s password %s\n' "$FTPFS_TEST_USER" "$(cat /run/ftpfs-testbed/password)") 2>/dev/null
}
if ! proftpd_up; then
    log "test bed state missing or proftpd not answering: running scripts/testbed.sh install + start"
    log "(start restarts every instance and EMPTIES their data roots)"
    "$REPO/scripts/testbed.sh" install >&2 || die "testbed install failed"
    "$REPO/scripts/testbed.sh" start >&2 || die "testbed start failed"
    proftpd_up || die "proftpd still not answering after testbed start"
fi
# shellcheck disable=SC1090
. "$ENV_FILE"
HOST=127.0.0.1
PORT=$PROFTPD_PORT
FUSER=$FTPFS_TEST_USER
PW=$(cat /run/ftpfs-testbed/password)
ROOT="$PROFTPD_ROOT/bench/$SET"     # server-side path of the data
RPATH="bench/$SET"                  # the same, as seen by FTP clients (proftpd chroots to its root)

FTPFS_BIN="$REPO/target/release/ftpfs"
if [ ! -x "$FTPFS_BIN" ]; then
    log "building ftpfs (cargo build --release)"
    (cd "$REPO" && cargo build --release >&2) || die "cargo build failed"
fi
PROXY_BIN=${FTPFS_PROXY:-$REPO/target/release/ftpfs-proxy}

# ---------------------------------------------------------------- run state, cleanup
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT="$REPO/target/bench"; mkdir -p "$OUT"
CSV="$OUT/bench-$STAMP.csv"; LOGF="$OUT/bench-$STAMP.log"
echo "figure,tool,rep,seconds,work,unit,status" > "$CSV"
TMP=$(mktemp -d /tmp/ftpfs-bench.XXXXXX)
chmod 700 "$TMP"
MNT="$TMP/mnt"; mkdir -p "$MNT"
FAILED=0; REF_FAILED=0
CUR_PID=""; CUR_TOOL=""; PROXY_PID=""

cleanup() {
    set +e
    if mountpoint -q "$MNT" 2>/dev/null; then fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; fi
    if [ -n "$CUR_PID" ] && kill -0 "$CUR_PID" 2>/dev/null; then kill "$CUR_PID"; wait "$CUR_PID" 2>/dev/null; fi
    if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null; fi
    rm -rf "$TMP"
    rm -rf "$ROOT/up" 2>/dev/null
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# credentials: a netrc for curl, an rclone config (obscured password) only in $TMP (mode 700)
NETRC="$TMP/netrc"
( umask 077; printf 'machine %s login %s password %s\n' "$HOST" "$FUSER" "$PW" > "$NETRC" )
export RCLONE_CONFIG="$TMP/rclone.conf"
RC_PASS=$(printf '%s' "$PW" | rclone obscure -) || die "rclone obscure failed"
write_rclone_conf() {  # $1 = port
    ( umask 077; {
        echo "[bench]"; echo "type = ftp"; echo "host = $HOST"; echo "port = $1"
        echo "user = $FUSER"; echo "pass = $RC_PASS"
        if [ "$TLS" = 1 ]; then echo "explicit_tls = true"; echo "no_check_certificate = true"; fi
    } > "$RCLONE_CONFIG" )
}
CURL_TLS=(); CURL_TLS_CFG=()
FTPFS_TLS="tls=off"
if [ "$TLS" = 1 ]; then
    CURL_TLS=(--ssl-reqd --cacert "$FTPFS_TEST_CAFILE")
    CURL_TLS_CFG=("ssl-reqd" "cacert = \"$FTPFS_TEST_CAFILE\"")
    FTPFS_TLS="tls=required,cafile=$FTPFS_TEST_CAFILE"
fi
CUR_PORT=$PORT
write_rclone_conf "$CUR_PORT"
url() { echo "ftp://$HOST:$CUR_PORT/$RPATH/$1"; }
curl_() { curl -sS --netrc-file "$NETRC" "${CURL_TLS[@]}" "$@"; }
# curl's run time minus its TCP connect + server greeting (time_connect of the first transfer):
# a mount pays that once, at mount time, so the ratios compare protocol work with protocol work.
# The raw wall time is kept in the CSV as tool "curl+connect".
curl_t() {  # curl args...; stdout = curl's; connect time -> $TMP/curl.conn (we may be in a subshell)
    local rc
    curl_ -w '%{stderr}@conn %{time_connect}\n' "$@" 2> "$TMP/curl.err"
    rc=$?
    awk '/^@conn / { c = $2; exit } END { print c + 0 }' "$TMP/curl.err" > "$TMP/curl.conn"
    grep -v '^@conn ' "$TMP/curl.err" >> "$LOGF"
    return $rc
}
# record_curl FIGURE REP T0 T1 WORK UNIT STATUS
record_curl() {
    local raw conn; raw=$(elapsed "$3" "$4"); conn=$(cat "$TMP/curl.conn" 2>/dev/null || echo 0)
    echo "$1,curl+connect,$2,$raw,$5,$6,$7" >> "$CSV"
    record "$1" curl "$2" "$(awk -v a="$raw" -v c="$conn" 'BEGIN { printf "%.6f", a - c }')" "$5" "$6" "$7"
}

# ---------------------------------------------------------------- helpers
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
# record FIGURE TOOL REP SECONDS WORK UNIT STATUS
record() {
    echo "$1,$2,$3,$4,$5,$6,$7" >> "$CSV"
    local shown=$4
    if [ "$7" != ok ]; then
        shown="$4 ($7)"
        case "$2" in rclone-*) REF_FAILED=1 ;; *) FAILED=1 ;; esac
    fi
    log "  $1 $2 rep $3: ${shown}s work=$5 $6"
}
fail() { log "FAIL: $*"; }

# drop the page cache, then fault the tools and the server's code back in (one tiny curl
# transfer, the client programs), so the next timed step pays for none of that
drop_caches() {
    sync; echo 3 > /proc/sys/vm/drop_caches
    curl_ -o /dev/null "$(url .manifest)" 2>/dev/null
    md5sum /dev/null > /dev/null; cksum < /dev/null > /dev/null; dd if=/dev/null of=/dev/null status=none
    ls -l / > /dev/null; cp --version > /dev/null; rsync --version > /dev/null; xargs --version > /dev/null
    python3 -c 'import hashlib, random, subprocess, tempfile' 2>/dev/null
}
warm_server() { for p in "$@"; do find "$p" -type f -exec cat {} + > /dev/null 2>&1; ls -l "$p" > /dev/null 2>&1; done; }

wait_mounted() {  # $1 = pid
    local i
    for i in $(seq 1 200); do
        if mountpoint -q "$MNT" && stat "$MNT/." >/dev/null 2>&1; then return 0; fi
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# mount TOOL: ftpfs | rclone-off | rclone-full, fresh; sets CUR_PID
mount_tool() {
    CUR_TOOL=$1
    case "$1" in
        ftpfs)
            FTPFS_PASSWORD="$PW" "$FTPFS_BIN" "ftp://$FUSER@$HOST:$CUR_PORT/$RPATH" "$MNT" -f \
                -o "$FTPFS_TLS${FTPFS_XOPTS:+,$FTPFS_XOPTS}" >> "$LOGF" 2>&1 &
            CUR_PID=$! ;;
        rclone-off|rclone-full)
            local mode=${1#rclone-}
            rm -rf "$TMP/rc-cache"
            rclone mount "bench:$RPATH" "$MNT" --vfs-cache-mode "$mode" --cache-dir "$TMP/rc-cache" \
                >> "$LOGF" 2>&1 &
            CUR_PID=$! ;;
    esac
    wait_mounted "$CUR_PID" || { fail "$1 did not mount (see $LOGF)"; umount_tool; return 1; }
}

# unmount the current tool, record its peak RSS under FIGURE
umount_tool() {  # $1 = figure (optional)
    [ -n "$CUR_PID" ] || return 0
    local hwm
    hwm=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$CUR_PID/status" 2>/dev/null)
    if [ -n "$hwm" ] && [ -n "${1:-}" ]; then echo "memory,$CUR_TOOL,$1,,$hwm,MiB,ok" >> "$CSV"; fi
    fusermount3 -u "$MNT" 2>/dev/null || { sleep 0.5; fusermount3 -u "$MNT" 2>/dev/null; } || fusermount3 -uz "$MNT" 2>/dev/null
    local i
    for i in $(seq 1 100); do kill -0 "$CUR_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$CUR_PID" 2>/dev/null; then log "$CUR_TOOL (pid $CUR_PID) still running after unmount: SIGTERM"; kill "$CUR_PID"; fi
    wait "$CUR_PID" 2>/dev/null
    CUR_PID=""; rm -rf "$TMP/rc-cache"
}

# wait until server-side file(s) under $1 total $2 bytes in $3 files (bounded); 0 if so
wait_server_bytes() {
    local path=$1 want=$2 nfiles=$3 i got
    for i in $(seq 1 6000); do
        got=$(find "$path" -type f ! -name '.*' -printf '%s\n' 2>/dev/null | awk -v n="$nfiles" '{ s += $1; c++ } END { print (c == n ? s : -1) }')
        [ "$got" = "$want" ] && return 0
        sleep 0.01
    done
    return 1
}

# ---------------------------------------------------------------- data
prepare_data() {
    local man="$ROOT/.manifest" want
    want="big=$BIG_MIB dir=$NDIR small=$NSMALL x $SMALL_SIZE tree=$NTREE v1"
    if [ -f "$man" ] && [ "$(head -1 "$man")" = "$want" ] \
        && [ "$(stat -c %s "$ROOT/big.bin" 2>/dev/null)" = $((BIG_MIB << 20)) ] \
        && [ "$(find "$ROOT/dir" -type f | wc -l)" = "$NDIR" ] \
        && [ "$(find "$ROOT/small" -type f | wc -l)" = "$NSMALL" ] \
        && [ "$(find "$ROOT/tree" -type f | wc -l)" = "$NTREE" ]; then
        log "reusing data in $ROOT"
    else
        log "generating data in $ROOT ($BIG_MIB MiB file, $NDIR entries, $NSMALL small files, $NTREE-file tree)"
        rm -rf "$ROOT"; mkdir -p "$ROOT"
        head -c $((BIG_MIB << 20)) /dev/urandom > "$ROOT/big.bin"
        python3 "$HELPERS/gendata.py" dir "$ROOT/dir" "$NDIR" || die "gendata dir"
        python3 "$HELPERS/gendata.py" small "$ROOT/small" "$NSMALL" "$SMALL_SIZE" 1 > "$ROOT/.small.md5" || die "gendata small"
        python3 "$HELPERS/gendata.py" tree "$ROOT/tree" "$NTREE" 2 > "$ROOT/.tree.md5" || die "gendata tree"
        cksum < "$ROOT/big.bin" > "$ROOT/.big.cksum"
        echo "$want" > "$man"
        chown -R "$FUSER:" "$PROFTPD_ROOT/bench"
    fi
    BIG_CKSUM=$(cat "$ROOT/.big.cksum")
    rm -rf "$ROOT/up"; mkdir -p "$ROOT/up"; chown "$FUSER:" "$ROOT/up"
    # local inputs: the file to upload and the tree to rsync in
    head -c $((WRITE_MIB << 20)) /dev/urandom > "$TMP/write.bin"
    WRITE_CKSUM=$(cksum < "$TMP/write.bin")
    cp -r "$ROOT/tree" "$TMP/tree-src"   # owned by us (root), as a user's own files are
    TREE_BYTES=$(find "$TMP/tree-src" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
}

# md5 of a copied tree, in md5sum format, relative paths sorted
tree_md5() { (cd "$1" && find . -type f -printf '%P\n' | sort | xargs -d '\n' md5sum); }

# ---------------------------------------------------------------- figures
fig_seq_read() {
    local rep t0 t1 sum
    log "seq-read: dd bs=1M of $BIG_MIB MiB from a fresh mount"
    for rep in $(seq 1 "$REPS"); do
        for tool in ftpfs curl rclone-off rclone-full; do
            want_tool "$tool" || continue
            drop_caches; warm_server "$ROOT/big.bin"
            if [ "$tool" = curl ]; then
                t0=$(now); sum=$(curl_t "$(url big.bin)" | cksum); t1=$(now)
            else
                mount_tool "$tool" || { record seq-read "$tool" "$rep" 0 "$BIG_MIB" MiB FAIL; continue; }
                t0=$(now); sum=$(timeout 600 dd if="$MNT/big.bin" bs=1M status=none 2>>"$LOGF" | cksum; exit "${PIPESTATUS[0]}"); rc=$?; t1=$(now)
                [ $rc = 0 ] || sum="$sum (dd exit $rc, see $LOGF)"
                umount_tool seq-read
            fi
            if [ "$sum" = "$BIG_CKSUM" ]; then st=ok; else st=FAIL; fail "seq-read $tool: cksum '$sum' != '$BIG_CKSUM'"; fi
            if [ "$tool" = curl ]; then record_curl seq-read "$rep" "$t0" "$t1" "$BIG_MIB" MiB "$st"
            else record seq-read "$tool" "$rep" "$(elapsed "$t0" "$t1")" "$BIG_MIB" MiB "$st"; fi
        done
    done
}

fig_seq_write() {
    local rep t0 t1 st dst rc
    log "seq-write: cp of $WRITE_MIB MiB into the mount until the server has it all"
    cat "$TMP/write.bin" > /dev/null
    # Tools take turns within each repetition (a fresh mount each time), so that the
    # machine's drifting speed affects them alike.
    for rep in $(seq 1 "$REPS"); do
        for tool in ftpfs curl rclone-off rclone-full; do
            want_tool "$tool" || continue
            if [ "$tool" != curl ]; then mount_tool "$tool" || { record seq-write "$tool" "$rep" 0 "$WRITE_MIB" MiB FAIL; continue; }; fi
            dst="w-$tool-$rep.bin"
            sync
            t0=$(now)
            if [ "$tool" = curl ]; then
                curl_t -T "$TMP/write.bin" "$(url "up/$dst")"; rc=$?
            else
                timeout 600 cp "$TMP/write.bin" "$MNT/up/$dst"; rc=$?
            fi
            if [ $rc = 0 ]; then
                local i=0
                while [ "$(stat -c %s "$ROOT/up/$dst" 2>/dev/null)" != $((WRITE_MIB << 20)) ] && [ $i -lt 12000 ]; do sleep 0.01; i=$((i + 1)); done
            fi
            t1=$(now)
            st=ok
            if [ $rc != 0 ]; then st=FAIL; fail "seq-write $tool: exit $rc"
            elif [ "$(cksum < "$ROOT/up/$dst" 2>/dev/null)" != "$WRITE_CKSUM" ]; then st=FAIL; fail "seq-write $tool: server copy differs"; fi
            if [ "$tool" = curl ]; then record_curl seq-write "$rep" "$t0" "$t1" "$WRITE_MIB" MiB "$st"
            else record seq-write "$tool" "$rep" "$(elapsed "$t0" "$t1")" "$WRITE_MIB" MiB "$st"; fi
            rm -f "$ROOT/up/$dst"
            [ "$tool" = curl ] || umount_tool seq-write
        done
    done
}

# ls -l cold (fresh mount) and warm; curl: one LIST; local: ls -l of the server dir
fig_ls() {  # $1 = figure suffix ("" or @rttN)
    local sfx=$1 rep t0 t1 n st
    log "ls$sfx: ls -l of $NDIR entries, cold (fresh mount) and warm"
    for rep in $(seq 1 "$REPS"); do
        for tool in ftpfs curl local rclone-off rclone-full; do
            [ "$tool" = local ] || want_tool "$tool" || continue
            drop_caches; warm_server "$ROOT/dir"
            case "$tool" in
                curl)
                    t0=$(now); n=$(curl_t "$(url dir/)" | wc -l); t1=$(now)
                    if [ "$n" -ge "$NDIR" ]; then st=ok; else st=FAIL; fail "curl LIST: $n lines"; fi
                    record_curl "ls-cold$sfx" "$rep" "$t0" "$t1" 1 listing "$st"
                    # the same with MLSD (what ftpfs sends; proftpd's MLSD costs more than LIST)
                    t0=$(now); n=$(curl_t -X MLSD "$(url dir/)" | wc -l); t1=$(now)
                    if [ "$n" -ge "$NDIR" ]; then st=ok; else st=FAIL; fail "curl MLSD: $n lines"; fi
                    echo "ls-cold$sfx,curl-mlsd,$rep,$(awk -v a="$(elapsed "$t0" "$t1")" -v c="$(cat "$TMP/curl.conn")" 'BEGIN { printf "%.6f", a - c }'),1,listing,$st" >> "$CSV"
                    [ "$st" = ok ] || FAILED=1 ;;
                local)
                    [ -z "$sfx" ] || continue
                    ls -l "$ROOT/dir" > /dev/null
                    t0=$(now); n=$(ls -l "$ROOT/dir" | wc -l); t1=$(now)
                    record ls-warm local "$rep" "$(elapsed "$t0" "$t1")" 1 listing ok ;;
                *)
                    mount_tool "$tool" || { record "ls-cold$sfx" "$tool" "$rep" 0 1 listing FAIL; continue; }
                    t0=$(now); n=$(timeout 300 ls -l "$MNT/dir" | wc -l); t1=$(now)
                    if [ "$n" = $((NDIR + 1)) ]; then st=ok; else st=FAIL; fail "$tool ls -l cold: $n lines"; fi
                    record "ls-cold$sfx" "$tool" "$rep" "$(elapsed "$t0" "$t1")" 1 listing "$st"
                    t0=$(now); n=$(timeout 300 ls -l "$MNT/dir" | wc -l); t1=$(now)
                    if [ "$n" = $((NDIR + 1)) ]; then st=ok; else st=FAIL; fail "$tool ls -l warm: $n lines"; fi
                    record "ls-warm$sfx" "$tool" "$rep" "$(elapsed "$t0" "$t1")" 1 listing "$st"
                    umount_tool "ls$sfx" ;;
            esac
        done
    done
}

fig_small() {  # $1 = suffix, $2 = number of files
    local sfx=$1 n=$2 rep t0 t1 st par figure
    log "small$sfx: $n files of $SMALL_SIZE bytes, one after another and xargs -P8, fresh mount"
    # In name order, as `cat *`, `cp -r` and `xargs` over `ls` read them.
    head -n "$n" "$ROOT/.small.md5" | sort -k2 > "$TMP/small.want"
    awk '{ print $2 }' "$TMP/small.want" > "$TMP/small.list"
    for rep in $(seq 1 "$REPS"); do
        for par in 1 8; do
            figure=small-seq$sfx; [ $par = 8 ] && figure=small-p8$sfx
            for tool in ftpfs curl rclone-off rclone-full; do
                want_tool "$tool" || continue
                [ "$tool" = curl ] && [ "$rep" -gt 1 ] && continue   # a reference only: one repetition
                drop_caches; warm_server "$ROOT/small"
                if [ "$tool" = curl ]; then
                    rm -rf "$TMP/cs"; mkdir -p "$TMP/cs"
                    while read -r f; do printf 'url = "%s"\noutput = "%s"\n' "$(url "small/$f")" "$TMP/cs/$f"; done < "$TMP/small.list" > "$TMP/curl.cfg"
                    local zopt=(); [ $par = 8 ] && zopt=(-Z --parallel-max 8)
                    t0=$(now); curl_t "${zopt[@]}" -K "$TMP/curl.cfg"; t1=$(now)
                    (cd "$TMP/cs" && md5sum -- $(cat "$TMP/small.list")) 2>/dev/null | sort -k2 > "$TMP/small.got"
                else
                    mount_tool "$tool" || { record "$figure" "$tool" "$rep" 0 "$n" files FAIL; continue; }
                    t0=$(now)
                    (cd "$MNT/small" && timeout 600 xargs -d '\n' -n1 -P$par md5sum < "$TMP/small.list") 2>>"$LOGF" | sort -k2 > "$TMP/small.got"
                    t1=$(now)
                    umount_tool "$figure"
                fi
                if cmp -s "$TMP/small.want" "$TMP/small.got"; then st=ok; else st=FAIL; fail "$figure $tool: wrong or missing files"; fi
                if [ "$tool" = curl ]; then record_curl "$figure" "$rep" "$t0" "$t1" "$n" files "$st"
                else record "$figure" "$tool" "$rep" "$(elapsed "$t0" "$t1")" "$n" files "$st"; fi
            done
        done
    done
}

fig_random() {
    local rep out rc secs cnt conn st
    log "random-read: $NRAND x 4 KiB at random offsets of big.bin, freshly opened, fresh mount (cap ${RAND_CAP}s)"
    for rep in $(seq 1 "$REPS"); do
        for tool in ftpfs curl rclone-off rclone-full; do
            want_tool "$tool" || continue
            drop_caches; warm_server "$ROOT/big.bin"
            if [ "$tool" = curl ]; then
                # curl reconnects after every ranged transfer (it closes the control connection
                # after ABOR): its rate is steady, 50 reads are enough
                out=$(python3 "$HELPERS/randread.py" curl "$(url big.bin)" "$ROOT/big.bin" $((NRAND < 50 ? NRAND : 50)) "$rep" "$RAND_CAP" "$NETRC" "${CURL_TLS_CFG[@]}" 2>>"$LOGF"); rc=$?
            else
                mount_tool "$tool" || { record random-read "$tool" "$rep" 0 "$NRAND" reads FAIL; continue; }
                out=$(timeout 600 python3 "$HELPERS/randread.py" pread "$MNT/big.bin" "$ROOT/big.bin" "$NRAND" "$rep" "$RAND_CAP" 2>>"$LOGF"); rc=$?
                umount_tool random-read
            fi
            read -r secs cnt conn <<< "$out"
            if [ $rc = 0 ] && [ -n "$cnt" ]; then st=ok; else st=FAIL; secs=0; cnt=$NRAND; conn=0; fail "random-read $tool: error or wrong data (see $LOGF)"; fi
            [ "$cnt" = "$NRAND" ] || [ "$tool" = curl ] || log "  ($tool stopped after $cnt reads: ${RAND_CAP}s cap)"
            if [ "$tool" = curl ]; then
                echo "random-read,curl+connect,$rep,$secs,$cnt,reads,$st" >> "$CSV"
                secs=$(awk -v a="$secs" -v c="$conn" 'BEGIN { printf "%.6f", a - c }')
            fi
            record random-read "$tool" "$rep" "$secs" "$cnt" reads "$st"
        done
    done
}

fig_tree() {
    local rep t0 t1 st dst rc
    log "tree: cp -r of a $NTREE-file tree out of a fresh mount, rsync -a of it in"
    tree_md5 "$TMP/tree-src" > "$TMP/tree.want"
    for rep in $(seq 1 "$REPS"); do
        for tool in rclone-off rclone-full ftpfs; do
            want_tool "$tool" || continue
            drop_caches; warm_server "$ROOT/tree"
            mount_tool "$tool" || { record tree-out "$tool" "$rep" 0 "$NTREE" files FAIL; continue; }
            rm -rf "$TMP/tree-out"
            t0=$(now); timeout 600 cp -r "$MNT/tree" "$TMP/tree-out"; rc=$?; t1=$(now)
            if [ $rc = 0 ] && tree_md5 "$TMP/tree-out" | cmp -s - "$TMP/tree.want"; then st=ok; else st=FAIL; fail "tree-out $tool: rc=$rc or wrong data"; fi
            record tree-out "$tool" "$rep" "$(elapsed "$t0" "$t1")" "$NTREE" files "$st"
            dst="t-$tool-$rep"
            t0=$(now)
            timeout 600 rsync -a "$TMP/tree-src/" "$MNT/up/$dst/"; rc=$?
            [ $rc = 0 ] && { wait_server_bytes "$ROOT/up/$dst" "$TREE_BYTES" "$NTREE" || rc=99; }
            t1=$(now)
            if [ $rc = 0 ] && tree_md5 "$ROOT/up/$dst" | cmp -s - "$TMP/tree.want"; then st=ok; else st=FAIL; fail "tree-in $tool: rc=$rc or wrong data on the server"; fi
            record tree-in "$tool" "$rep" "$(elapsed "$t0" "$t1")" "$NTREE" files "$st"
            umount_tool tree
            rm -rf "${ROOT:?}/up/$dst" "$TMP/tree-out"
        done
    done
}

# ---------------------------------------------------------------- main
T_START=$(now)
log "ftpfs $("$FTPFS_BIN" -V 2>/dev/null) vs curl $(curl -V | head -1 | awk '{ print $2 }') vs $(rclone version | head -1); set=$SET reps=$REPS tls=$TLS; raw data: $CSV"
prepare_data

want seq-read && fig_seq_read
want seq-write && fig_seq_write
want ls && fig_ls ""
want small && fig_small "" "$NSMALL"
want random && fig_random
want tree && fig_tree

if [ "$RTT" -gt 0 ]; then
    if [ -x "$PROXY_BIN" ]; then
        log "rtt: starting $PROXY_BIN with --delay-ms $((RTT / 2)) in front of proftpd"
        "$PROXY_BIN" --listen 127.0.0.1:0 --upstream "$HOST:$PORT" --delay-ms $((RTT / 2)) > "$TMP/proxy.out" 2>>"$LOGF" &
        PROXY_PID=$!
        for _ in $(seq 1 100); do [ -s "$TMP/proxy.out" ] && break; sleep 0.05; done
        paddr=$(head -1 "$TMP/proxy.out")
        if [ -n "$paddr" ]; then
            CUR_PORT=${paddr##*:}; write_rclone_conf "$CUR_PORT"
            want ls && fig_ls "@rtt$RTT"
            want small && fig_small "@rtt$RTT" "$NSMALL_RTT"
            CUR_PORT=$PORT; write_rclone_conf "$CUR_PORT"
        else
            fail "ftpfs-proxy printed no address"; FAILED=1
        fi
        kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null; PROXY_PID=""
    else
        log "WARNING: --rtt-ms $RTT given but $PROXY_BIN does not exist (build ftpfs-proxy, or set FTPFS_PROXY): rtt figures skipped"
    fi
fi

log "done in $(awk -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
echo
echo "ftpfs bench ($SET: seq read ${BIG_MIB} MiB, write ${WRITE_MIB} MiB, ls ${NDIR}, small ${NSMALL}x4KiB, random ${NRAND}, tree ${NTREE}; median of $REPS; tls=$TLS)"
python3 "$HELPERS/report.py" "$CSV" | tee "$OUT/bench-$STAMP.txt"
echo "raw: $CSV"
if [ "$FAILED" != 0 ]; then
    log "ftpfs or curl failed or returned wrong data (see FAIL lines above and $LOGF)"
    exit 1
fi
if [ "$REF_FAILED" != 0 ]; then
    log "rclone failed or returned wrong data (see FAIL lines above and $LOGF); ftpfs and curl were fine"
    exit 3
fi
exit 0
