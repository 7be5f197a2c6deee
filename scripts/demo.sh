#!/usr/bin/env bash
# Try ftpfs in one command: installs what is missing, builds, starts a local FTP server on
# 127.0.0.1 with sample files, mounts it, shows `ls -l` of the mount, and keeps it mounted
# until Ctrl-C (then unmounts and stops the server). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

MNT="${FTPFS_DEMO_MOUNTPOINT:-/tmp/ftpfs-demo}"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: run as root (it installs packages and starts FTP servers on 127.0.0.1)" >&2
    exit 1
fi
command -v cargo >/dev/null || { echo "demo.sh: cargo not found; install Rust (rustup) first" >&2; exit 1; }

say "installing packages (fuse3, FTP servers) if missing"
timeout 1800 bash scripts/testbed.sh install

say "building ftpfs (release)"
cargo build --release --quiet
BIN="$PWD/target/release/ftpfs"

say "starting a local FTP server (vsftpd on 127.0.0.1:2121)"
timeout 300 bash scripts/testbed.sh start >/dev/null
ENV_FILE="$(bash scripts/testbed.sh env)"
# shellcheck disable=SC1090
. "$ENV_FILE"
ROOT="$VSFTPD_ROOT/demo"
rm -rf "$ROOT"
mkdir -p "$ROOT/photos 2026" "$ROOT/docs"
echo "Hello from an FTP server, mounted by ftpfs." > "$ROOT/README.txt"
printf 'Ünïcödé names work too.\n' > "$ROOT/docs/ünïcödé.txt"
head -c 3145728 /dev/urandom > "$ROOT/photos 2026/big.bin"
seq 1 100000 > "$ROOT/docs/numbers.txt"
chown -R "$FTPFS_TEST_USER" "$ROOT"

cleanup() {
    say "unmounting and stopping the server"
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null || true
    [ -n "${DAEMON:-}" ] && wait "$DAEMON" 2>/dev/null || true
    bash scripts/testbed.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "mounting ftp://$FTPFS_TEST_USER@127.0.0.1:$VSFTPD_PORT/demo on $MNT"
mkdir -p "$MNT"
FTPFS_PASSWORD="$(cat "$(dirname "$ENV_FILE")/password")" \
    "$BIN" "ftp://$FTPFS_TEST_USER@127.0.0.1:$VSFTPD_PORT/demo" "$MNT" -f \
    -o "cafile=$FTPFS_TEST_CAFILE" &
DAEMON=$!
for _ in $(seq 1 200); do
    mountpoint -q "$MNT" && break
    kill -0 "$DAEMON" 2>/dev/null || { echo "demo.sh: ftpfs exited before mounting" >&2; exit 1; }
    sleep 0.05
done
mountpoint -q "$MNT" || { echo "demo.sh: mount did not appear" >&2; exit 1; }

say "ls -l $MNT"
ls -l "$MNT"
say "ls -l \"$MNT/photos 2026\" $MNT/docs"
ls -l "$MNT/photos 2026" "$MNT/docs"
say "cat $MNT/README.txt"
cat "$MNT/README.txt"

say "mounted at $MNT: try cp, rsync, an editor in another terminal. Ctrl-C to unmount."
wait "$DAEMON"
