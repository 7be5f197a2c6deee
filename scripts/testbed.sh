#!/usr/bin/env bash
# ftpfs test bed: real FTP servers side by side on 127.0.0.1.
#
#   scripts/testbed.sh install   apt-get the tools and the servers' libraries, download and
#                                extract vsftpd, proftpd and pure-ftpd (idempotent, quick when done)
#   scripts/testbed.sh start     (re)start every instance with empty data roots, write the state file
#   scripts/testbed.sh stop      stop what start started (PID files), verify it is gone
#   scripts/testbed.sh status    show each instance and whether it answers
#   scripts/testbed.sh env       print the state file path (KEY=VALUE lines)
#   scripts/testbed.sh capture   record FEAT/LIST/MLSD samples into tests/fixtures/servers/
#   scripts/testbed.sh serve SOFTWARE PORT ROOT [PASV_MIN]
#                                one private server (vsftpd|proftpd|pure-ftpd) in the foreground
#                                (exec: the caller's child *is* the server), for fault tests that
#                                kill or stop it. Same user, password and certificates as the test
#                                bed (which must be started); explicit TLS optional; passive ports
#                                PASV_MIN..PASV_MIN+19 (default derived from PORT). Config, log and
#                                PID files go to $STATE/serve/PORT. pure-ftpd only: the env var
#                                FTPFS_SERVE_PASSWORD sets a password of its own.
#
# Instances (all on 127.0.0.1, each with its own config, PID file, log, root and passive range):
#   vsftpd    2121  explicit TLS optional  /srv/ftpfs-test/vsftpd     pasv 30000-30099
#   proftpd   2122  explicit TLS optional  /srv/ftpfs-test/proftpd    pasv 30100-30199
#   pure-ftpd 2123  explicit TLS optional  /srv/ftpfs-test/pure-ftpd  pasv 30200-30299
#   implicit  2990  implicit TLS (vsftpd)  /srv/ftpfs-test/implicit   pasv 30300-30399
#   limited   2124  explicit TLS optional, at most 2 connections per IP (pure-ftpd -C 2)
#                                          /srv/ftpfs-test/limited    pasv 30400-30499
#
# Facts found while building this (Debian 12: vsftpd 3.0.3, proftpd 1.3.8, pure-ftpd 1.0.50):
# - The three server packages conflict (ftp-server); `apt-get download` + `dpkg-deb -x` into
#   /opt/ftpfs-testbed/pkgs/<pkg> and installing only their lib* dependencies lets all three run
#   from those folders. proftpd needs libhiredis0.14, libmemcached11, libmemcachedutil2 and
#   libpcre2-posix3 even for a plain config; vsftpd needs libwrap0.
# - vsftpd 3.0.3 has no ssl_tlsv1_1/ssl_tlsv1_2/ssl_tlsv1_3 options (an unknown option is a fatal
#   config error): ssl_tlsv1 only switches TLS 1.0; TLS 1.1, 1.2 and 1.3 are always on.
#   Its ssl_ciphers default is not usable with OpenSSL 3, so we set ssl_ciphers=HIGH.
# - vsftpd local users go through PAM service `vsftpd` (pam_shells: the user's shell must be in
#   /etc/shells). With local_root + chroot_local_user the chroot is local_root, which must be
#   allowed to be writable (allow_writeable_chroot=YES). ftp_username/nopriv_user must name a user
#   whose home exists; secure_chroot_dir (/var/run/vsftpd/empty) must exist.
# - pure-ftpd chroots (-A) into the user's *home*, so one unix user cannot have a different root
#   per pure-ftpd instance. We use a PureDB file per instance (-l puredb:FILE) mapping the same
#   user name and password to that instance's root, with the test user's uid/gid.
#   pure-ftpd logs to syslog only (no syslog daemon here): its log file holds only its stderr.
#   -C 2 limits *connections* per IP (the 3rd is refused with 421 before USER), not logins.
# - proftpd: mod_tls lives in proftpd-mod-crypto (LoadModule from the extracted folder);
#   it requires TLS session reuse on data connections by default (TLSOptions without
#   NoSessionReuseRequired). Its default Scoreboard/PID/DelayTable paths are under /run; we move
#   them to the state dir so the instance owns its files.
# - TLS session reuse, measured (TLS 1.2 and 1.3 alike): a data connection that does not resume
#   the control connection's session gets `522 SSL connection failed: session reuse required`
#   from vsftpd and `425 Unable to build data connection: Operation not permitted` from proftpd
#   (after the 150); pure-ftpd accepts it. All three negotiate TLS 1.3 with OpenSSL 3.
# - vsftpd advertises `AUTH TLS` in FEAT only when ssl_tlsv1=YES (it accepts AUTH TLS either
#   way), so we keep ssl_tlsv1=YES as a stock config would. vsftpd has no MLSD/MLST/MFMT.
# - Listings (see tests/fixtures/servers/): vsftpd's LIST shows numeric uid and gid; pure-ftpd's
#   a numeric owner and a group name; proftpd names. MLSD symlinks: proftpd
#   `type=OS.unix=symlink` with the `unique` fact of the *target*, pure-ftpd `type=OS.unix=slink:`
#   (empty target); pure-ftpd gives directories `sizd=` instead of `size=`. pure-ftpd's FEAT ends
#   with `211 End.` and its LIST ends with `226 N matches total`.
# - PID 1 on these machines does not reap orphans, and vsftpd session processes call setsid():
#   each server runs under `tini -s -g` (subreaper), and `stop` signals the process groups of all
#   of tini's descendants, so sessions of a stopped vsftpd do not linger.
set -euo pipefail

PREFIX=${FTPFS_TESTBED_PREFIX:-/opt/ftpfs-testbed}
PKGS="$PREFIX/pkgs"
DEBS="$PREFIX/debs"
STATE=${FTPFS_TESTBED_STATE:-/run/ftpfs-testbed}
ENV_FILE="$STATE/env"
DATA=${FTPFS_TESTBED_DATA:-/srv/ftpfs-test}
TEST_USER=${FTPFS_TEST_USER:-ftpfs-test}
HOST=127.0.0.1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SERVER_PKGS=(vsftpd proftpd-core proftpd-mod-crypto pure-ftpd)
TOOL_PKGS=(fuse3 curl openssl rsync rclone python3 procps tini)
INSTANCES=(vsftpd proftpd pure-ftpd implicit limited)

# instance -> software, port, tls kind, passive range
declare -A SOFT=([vsftpd]=vsftpd [proftpd]=proftpd [pure-ftpd]=pure-ftpd [implicit]=vsftpd [limited]=pure-ftpd)
declare -A PORT=([vsftpd]=2121 [proftpd]=2122 [pure-ftpd]=2123 [implicit]=2990 [limited]=2124)
declare -A TLS=([vsftpd]=explicit [proftpd]=explicit [pure-ftpd]=explicit [implicit]=implicit [limited]=explicit)
declare -A PASV_MIN=([vsftpd]=30000 [proftpd]=30100 [pure-ftpd]=30200 [implicit]=30300 [limited]=30400)
# A second test bed can run beside the first (e.g. a CI dry run on a developer machine) with its
# own FTPFS_TESTBED_STATE, FTPFS_TESTBED_DATA, FTPFS_TEST_USER and this port offset.
PORT_OFFSET=${FTPFS_TESTBED_PORT_OFFSET:-0}
for _i in "${INSTANCES[@]}"; do
    PORT[$_i]=$((PORT[$_i] + PORT_OFFSET))
    PASV_MIN[$_i]=$((PASV_MIN[$_i] + PORT_OFFSET))
done
# passive range size, and data root when not $DATA/<instance> (both only set by `serve`)
declare -A PASV_COUNT=()
declare -A ROOT=()

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }
var_name() { local n=${1^^}; echo "${n//-/_}"; }

# ---------------------------------------------------------------- install
lib_deps() { # lib* packages a .deb depends on (first alternative, no versions)
    dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/([^)]*)//g; s/|.*//; s/[[:space:]]//g' |
        grep -E '^lib' | grep -v '^libc6$' || true
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

cmd_install() {
    [ "$(id -u)" = 0 ] || die "install must run as root"
    export DEBIAN_FRONTEND=noninteractive
    local missing=() p
    for p in "${TOOL_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
    local need_download=0
    for p in "${SERVER_PKGS[@]}"; do
        [ -f "$PKGS/$p/.extracted" ] || need_download=1
    done
    if [ ${#missing[@]} -eq 0 ] && [ $need_download = 0 ] && [ -f "$PKGS/.libs-ok" ]; then
        log "install: everything already installed"
        return 0
    fi
    log "install: apt-get update"
    timeout 600 apt-get update -qq
    mkdir -p "$DEBS" "$PKGS"
    if [ $need_download = 1 ] || [ ! -f "$PKGS/.libs-ok" ]; then
        rm -f "$DEBS"/*.deb
        # _apt needs to write where it downloads, or apt warns and falls back to root
        chown _apt:root "$DEBS" 2>/dev/null || true
        (cd "$DEBS" && timeout 600 apt-get download -qq "${SERVER_PKGS[@]}")
        chown root:root "$DEBS"
        local libs=() deb
        for deb in "$DEBS"/*.deb; do
            mapfile -t -O "${#libs[@]}" libs < <(lib_deps "$deb")
        done
        log "install: libraries: $(printf '%s\n' "${libs[@]}" | sort -u | tr '\n' ' ')"
        mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
        timeout 900 apt-get install -y -qq --no-install-recommends "${libs[@]}" "${missing[@]}" >/dev/null
        for p in "${SERVER_PKGS[@]}"; do
            deb=$(ls "$DEBS/${p}_"*.deb)
            rm -rf "${PKGS:?}/$p"
            mkdir -p "$PKGS/$p"
            dpkg-deb -x "$deb" "$PKGS/$p"
            basename "$deb" >"$PKGS/$p/.extracted"
        done
        touch "$PKGS/.libs-ok"
    elif [ ${#missing[@]} -gt 0 ]; then
        timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    for p in "${TOOL_PKGS[@]}"; do installed "$p" || die "package $p did not install"; done
    log "install: done ($(cat "$PKGS"/*/.extracted | tr '\n' ' '))"
}

# ---------------------------------------------------------------- helpers
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

wait_port() { # port seconds
    timeout "$2" bash -c "until exec 3<>/dev/tcp/$HOST/$1; do sleep 0.2; done" 2>/dev/null
}

# PID 1 on these machines does not reap orphans, so every server runs under `tini -s -g`
# (a subreaper that reaps the server's finished session processes and forwards signals to the
# process group). An exited process may linger as a zombie: zombies count as dead here.
pid_alive() { # pid
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}

group_alive() { # does any live (non-zombie) process remain in a process group in $PGIDS_WANTED?
    local f s
    for f in /proc/[0-9]*/stat; do
        s=$(cat "$f" 2>/dev/null) || continue
        s=${s##*) }
        # shellcheck disable=SC2086
        set -- $s
        [ "$1" != Z ] && [[ " $PGIDS_WANTED " == *" $3 "* ]] && return 0
    done
    return 1
}

wait_until() { # seconds command...: poll (bounded) until command succeeds
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

not() { ! "$@"; }

descendants() { # pid: all descendants, recursively
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

pgid_of() { # pid
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo "$3"
}

# A PID from our PID file that is still our tini running one of our extracted servers.
our_pid() { # pidfile
    local pid
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && pid_alive "$pid" || return 1
    # (servers rewrite their own argv, so check tini's command line, or the server's binary)
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in
    "$PKGS"/*) ;;
    */tini) tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$PKGS/" || return 1 ;;
    *) return 1 ;;
    esac
    echo "$pid"
}

password() { cat "$STATE/password"; }

ensure_user() {
    if ! getent passwd "$TEST_USER" >/dev/null; then
        log "creating system user $TEST_USER"
        useradd --system --user-group --home-dir "$DATA" --no-create-home \
            --shell /bin/bash --comment "ftpfs test bed" "$TEST_USER"
    fi
    grep -qx /bin/bash /etc/shells || echo /bin/bash >>/etc/shells
    mkdir -p "$DATA"
    chown "$TEST_USER:$TEST_USER" "$DATA"
    chmod 755 "$DATA"
    if [ ! -s "$STATE/password" ]; then
        (umask 077; openssl rand -hex 12 >"$STATE/password")
    fi
    chmod 600 "$STATE/password"
    echo "$TEST_USER:$(password)" | chpasswd
    # PAM service for vsftpd (the package is only extracted, not installed)
    if [ ! -f /etc/pam.d/vsftpd ]; then
        cp "$PKGS/vsftpd/etc/pam.d/vsftpd" /etc/pam.d/vsftpd
    fi
}

ensure_certs() {
    local d="$STATE/tls"
    mkdir -p "$d"
    if [ -f "$d/ca.pem" ] && [ -f "$d/leaf.pem" ] && [ -f "$d/leaf.key" ] &&
        openssl x509 -checkend 86400 -noout -in "$d/leaf.pem" >/dev/null 2>&1; then
        return 0
    fi
    log "making test CA and leaf certificate for localhost/127.0.0.1"
    (
        cd "$d"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -keyout ca.key -out ca.pem -subj "/CN=ftpfs test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -sha256 -keyout leaf.key -out leaf.csr \
            -subj "/CN=localhost" 2>/dev/null
        cat >leaf.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 825 -sha256 -extfile leaf.ext -out leaf.pem 2>/dev/null
        cat leaf.pem ca.pem >leaf-chain.pem
        cat leaf.key leaf.pem ca.pem >leaf-combined.pem
        chmod 644 ca.pem leaf.pem leaf-chain.pem
        rm -f leaf.csr leaf.ext ca.srl
    )
}

# ---------------------------------------------------------------- configs
root_of() { echo "${ROOT[$1]:-$DATA/$1}"; }
pasv_max() { echo $((PASV_MIN[$1] + ${PASV_COUNT[$1]:-100} - 1)); }

write_vsftpd_conf() { # instance conf
    local i=$1 lo=${PASV_MIN[$1]} implicit=NO force=NO
    if [ "${TLS[$i]}" = implicit ]; then implicit=YES; force=YES; fi
    cat >"$2" <<EOF
# generated by scripts/testbed.sh for instance $i
listen=YES
listen_ipv6=NO
listen_address=$HOST
listen_port=${PORT[$i]}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
local_root=$(root_of "$i")
pam_service_name=vsftpd
ftp_username=$TEST_USER
nopriv_user=$TEST_USER
secure_chroot_dir=/var/run/vsftpd/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
mdtm_write=YES
use_localtime=NO
utf8_filesystem=YES
pasv_enable=YES
pasv_min_port=$lo
pasv_max_port=$(pasv_max "$i")
pasv_promiscuous=NO
port_enable=YES
port_promiscuous=NO
connect_from_port_20=NO
max_clients=64
max_per_ip=0
xferlog_enable=YES
log_ftp_protocol=YES
vsftpd_log_file=$STATE/log/$i.log
dual_log_enable=NO
ssl_enable=YES
implicit_ssl=$implicit
allow_anon_ssl=NO
force_local_logins_ssl=$force
force_local_data_ssl=NO
require_ssl_reuse=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
ssl_ciphers=HIGH
rsa_cert_file=$STATE/tls/leaf-chain.pem
rsa_private_key_file=$STATE/tls/leaf.key
EOF
}

write_proftpd_conf() { # instance conf
    local i=$1 lo=${PASV_MIN[$1]}
    cat >"$2" <<EOF
# generated by scripts/testbed.sh for instance $i
ServerType standalone
ServerName "ftpfs test proftpd"
DefaultServer on
UseIPv6 off
DefaultAddress $HOST
SocketBindTight on
Port ${PORT[$i]}
User nobody
Group nogroup
Umask 022
MaxInstances 64
PidFile $STATE/$i.pid.proftpd
ScoreboardFile $STATE/$i.scoreboard
DelayTable $STATE/$i.delay
ControlsEngine off
WtmpLog off
UseReverseDNS off
UseFtpUsers off
RequireValidShell off
AuthPAM off
AuthOrder mod_auth_unix.c
DefaultRoot $(root_of "$i")
PassivePorts $lo $(pasv_max "$i")
AllowOverwrite on
AllowStoreRestart on
AllowRetrieveRestart on
TimesGMT on
SystemLog $STATE/log/$i.log
TransferLog $STATE/log/$i.xfer
ModulePath $PKGS/proftpd-mod-crypto/usr/lib/proftpd
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSLog $STATE/log/$i.tls.log
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRequired off
  TLSRSACertificateFile $STATE/tls/leaf.pem
  TLSRSACertificateKeyFile $STATE/tls/leaf.key
  TLSCertificateChainFile $STATE/tls/ca.pem
  TLSVerifyClient off
  TLSRenegotiate none
</IfModule>
EOF
}

write_puredb() { # instance
    # pure-pw hashes with argon2id t=511: ~5 s of CPU per login on this machine. A SHA-512
    # crypt hash (checked by pure-ftpd with crypt(3)) makes a login take milliseconds.
    local i=$1 uid gid hash
    uid=$(id -u "$TEST_USER"); gid=$(id -g "$TEST_USER")
    hash=$(openssl passwd -6 "$(password)")
    rm -f "$STATE/$i.passwd" "$STATE/$i.pdb"
    (umask 077; printf '%s:%s:%s:%s::%s/./::::::::::::\n' "$TEST_USER" "$hash" "$uid" "$gid" \
        "$(root_of "$i")" >"$STATE/$i.passwd")
    "$PKGS/pure-ftpd/usr/bin/pure-pw" mkdb "$STATE/$i.pdb" -f "$STATE/$i.passwd" >/dev/null
    chmod 600 "$STATE/$i.passwd" "$STATE/$i.pdb"
}

# ---------------------------------------------------------------- start/stop
start_instance() { # instance
    local i=$1 soft=${SOFT[$1]} log="$STATE/log/$1.log" conf
    rm -rf "${DATA:?}/$i"
    mkdir -p "$DATA/$i"
    chown "$TEST_USER:$TEST_USER" "$DATA/$i"
    chmod 755 "$DATA/$i"
    : >"$log"
    port_open "${PORT[$i]}" && die "port ${PORT[$i]} ($i) is already in use by a process we did not start"
    case $soft in
    vsftpd)
        conf="$STATE/$i.conf"
        write_vsftpd_conf "$i" "$conf"
        setsid tini -s -g -- "$PKGS/vsftpd/usr/sbin/vsftpd" "$conf" </dev/null >>"$log.stderr" 2>&1 9>&- &
        ;;
    proftpd)
        conf="$STATE/$i.conf"
        write_proftpd_conf "$i" "$conf"
        "$PKGS/proftpd-core/usr/sbin/proftpd" -t -c "$conf" >"$log.stderr" 2>&1 ||
            die "proftpd config check failed: $(tail -n 20 "$log.stderr")"
        setsid tini -s -g -- "$PKGS/proftpd-core/usr/sbin/proftpd" -n -c "$conf" </dev/null >>"$log.stderr" 2>&1 9>&- &
        ;;
    pure-ftpd)
        write_puredb "$i"
        local limit=(-c 64 -C 64)
        [ "$i" = limited ] && limit=(-c 64 -C 2)
        mkdir -p /var/run/pure-ftpd
        setsid tini -s -g -- "$PKGS/pure-ftpd/usr/sbin/pure-ftpd" -S "$HOST,${PORT[$i]}" -4 -H -E -A \
            -l "puredb:$STATE/$i.pdb" -p "${PASV_MIN[$i]}:$((PASV_MIN[$i] + 99))" \
            -Y 1 -2 "$STATE/tls/leaf-chain.pem,$STATE/tls/leaf.key" -U 133:022 \
            "${limit[@]}" -g "$STATE/$i.pid.pure" -O "clf:$log" </dev/null >>"$log.stderr" 2>&1 9>&- &
        ;;
    esac
    echo $! >"$STATE/$i.pid"
    if ! wait_port "${PORT[$i]}" 15; then
        log "--- $i log tail:"; tail -n 30 "$log" "$log.stderr" >&2 || true
        die "$i did not open port ${PORT[$i]} within 15 s"
    fi
}

curl_url() { # instance [path]
    local i=$1 scheme=ftp
    [ "${TLS[$i]}" = implicit ] && scheme=ftps
    echo "$scheme://$TEST_USER:$(password)@$HOST:${PORT[$i]}${2:-/}"
}

curl_args() { # instance
    case ${TLS[$1]} in
    explicit) echo "--ssl-reqd --cacert $STATE/tls/ca.pem" ;;
    implicit) echo "--cacert $STATE/tls/ca.pem" ;;
    esac
}

verify_instance() { # instance
    local i=$1 log="$STATE/log/$1.log" out
    # plain login and listing (implicit: TLS from the first byte)
    # shellcheck disable=SC2046
    if ! out=$(curl -sS --max-time 10 $( [ "${TLS[$i]}" = implicit ] && curl_args "$i") "$(curl_url "$i")" 2>&1); then
        log "--- $i log tail:"; tail -n 30 "$log" "$log.stderr" >&2 || true
        die "$i (port ${PORT[$i]}) does not list over FTP: $out"
    fi
    if [ "${TLS[$i]}" = explicit ]; then
        # shellcheck disable=SC2046
        if ! out=$(curl -sS --max-time 10 $(curl_args "$i") "$(curl_url "$i")" 2>&1); then
            log "--- $i log tail:"; tail -n 30 "$log" "$log.stderr" >&2 || true
            die "$i (port ${PORT[$i]}) does not list over explicit TLS: $out"
        fi
    fi
}

write_env() {
    local tmp="$ENV_FILE.tmp" i v
    (
        umask 077
        {
            echo "# ftpfs test bed state, written by scripts/testbed.sh start at $(date -u +%FT%TZ)"
            echo "FTPFS_TESTBED_INSTANCES=\"${INSTANCES[*]}\""
            echo "FTPFS_TEST_HOST=$HOST"
            echo "FTPFS_TEST_USER=$TEST_USER"
            echo "FTPFS_TEST_PASSWORD=$(password)"
            echo "FTPFS_TEST_UID=$(id -u "$TEST_USER")"
            echo "FTPFS_TEST_GID=$(id -g "$TEST_USER")"
            echo "FTPFS_TEST_CAFILE=$STATE/tls/ca.pem"
            for i in "${INSTANCES[@]}"; do
                v=$(var_name "$i")
                echo "${v}_SERVER=${SOFT[$i]}"
                echo "${v}_PORT=${PORT[$i]}"
                echo "${v}_ROOT=$DATA/$i"
                echo "${v}_TLS=${TLS[$i]}"
                echo "${v}_PASV_RANGE=${PASV_MIN[$i]}-$((PASV_MIN[$i] + 99))"
                echo "${v}_LOG=$STATE/log/$i.log"
                echo "${v}_PID=$(cat "$STATE/$i.pid")"
            done
            [ "${SOFT[limited]}" = pure-ftpd ] && echo "LIMITED_MAX_PER_IP=2"
        } >"$tmp"
    )
    mv "$tmp" "$ENV_FILE"
}

stop_instance() { # instance
    local i=$1 pid had=0
    if pid=$(our_pid "$STATE/$i.pid"); then
        had=1
        # tini leads its process group (setsid) and puts the server in a group of its own;
        # proftpd and pure-ftpd sessions stay in the server's group, vsftpd sessions call
        # setsid. So collect the process groups of tini and all its descendants, signal them all.
        local c
        PGIDS_WANTED=$(for c in "$pid" $(descendants "$pid"); do pgid_of "$c"; done | grep -vxE '0|1' | sort -u | tr '\n' ' ')
        for c in $PGIDS_WANTED; do kill -TERM -- "-$c" 2>/dev/null || true; done
        if ! wait_until 10 not group_alive; then
            log "$i (pgids $PGIDS_WANTED) still alive 10 s after SIGTERM, sending SIGKILL"
            for c in $PGIDS_WANTED; do kill -KILL -- "-$c" 2>/dev/null || true; done
            wait_until 5 not group_alive || die "$i (pgids $PGIDS_WANTED) still alive after SIGKILL"
        fi
        log "stopped $i (pid $pid)"
    fi
    rm -f "$STATE/$i.pid"
    if [ "$had" = 1 ]; then
        wait_until 10 not port_open "${PORT[$i]}" || die "port ${PORT[$i]} ($i) still answers after stop"
    elif port_open "${PORT[$i]}"; then
        die "port ${PORT[$i]} ($i) is in use by a process testbed.sh did not start"
    fi
}

with_lock() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another testbed.sh holds $STATE/.lock for over 120 s"
}

cmd_start() {
    [ "$(id -u)" = 0 ] || die "start must run as root"
    for p in "${SERVER_PKGS[@]}"; do
        [ -f "$PKGS/$p/.extracted" ] || die "servers not installed: run scripts/testbed.sh install"
    done
    with_lock
    mkdir -p "$STATE/log" /var/run/vsftpd/empty
    chmod 755 "$STATE"
    local i
    for i in "${INSTANCES[@]}"; do stop_instance "$i"; done
    rm -f "$ENV_FILE"
    # a failed start leaves nothing running (the EXIT trap stops what was started)
    trap 'log "start failed: stopping what was started"; for i in "${INSTANCES[@]}"; do stop_instance "$i" || true; done' EXIT
    ensure_user
    ensure_certs
    for i in "${INSTANCES[@]}"; do start_instance "$i"; done
    for i in "${INSTANCES[@]}"; do verify_instance "$i"; done
    write_env
    trap - EXIT
    cmd_status
    log "state file: $ENV_FILE"
}

cmd_stop() {
    with_lock
    local i
    for i in "${INSTANCES[@]}"; do stop_instance "$i"; done
    rm -f "$ENV_FILE"
    log "all instances stopped"
}

cmd_status() {
    local i pid state rc=0
    printf '%-10s %-9s %-5s %-9s %-12s %-7s %s\n' INSTANCE SERVER PORT TLS PASV PID ROOT
    for i in "${INSTANCES[@]}"; do
        if pid=$(our_pid "$STATE/$i.pid") && port_open "${PORT[$i]}"; then
            state=$pid
        else
            state=DOWN; rc=1
        fi
        printf '%-10s %-9s %-5s %-9s %-12s %-7s %s\n' "$i" "${SOFT[$i]}" "${PORT[$i]}" "${TLS[$i]}" \
            "${PASV_MIN[$i]}-$((PASV_MIN[$i] + 99))" "$state" "$DATA/$i"
    done
    return $rc
}

cmd_capture() {
    [ -f "$ENV_FILE" ] || die "not running: scripts/testbed.sh start first"
    python3 "$REPO/scripts/testbed/capture.py" --env "$ENV_FILE" --out "$REPO/tests/fixtures/servers" "$@"
}

# One private server in the foreground. STATE moves to a private folder (so config, log, PID
# and scoreboard files are this server's own) that links the shared certificates.
cmd_serve() { # software port root [pasv_min]
    [ "$(id -u)" = 0 ] || die "serve must run as root"
    [ $# -ge 3 ] || die "usage: $0 serve vsftpd|proftpd|pure-ftpd PORT ROOT [PASV_MIN]"
    local soft=$1 port=$2 root=$3 pasv=${4:-$((40000 + ($2 % 1000) * 20))}
    local shared=$STATE i="serve-$2"
    [ -f "$shared/tls/leaf.pem" ] && [ -s "$shared/password" ] ||
        die "test bed not set up (no certificates/password in $shared): scripts/testbed.sh start"
    [ -d "$root" ] || die "root $root does not exist"
    STATE="$shared/serve/$port"
    mkdir -p "$STATE/log" /var/run/vsftpd/empty /var/run/pure-ftpd
    ln -sfn "$shared/tls" "$STATE/tls"
    (umask 077; printf '%s\n' "${FTPFS_SERVE_PASSWORD:-$(cat "$shared/password")}" >"$STATE/password")
    SOFT[$i]=$soft PORT[$i]=$port TLS[$i]=explicit PASV_MIN[$i]=$pasv PASV_COUNT[$i]=20 ROOT[$i]=$root
    local conf="$STATE/$i.conf"
    case $soft in
    vsftpd)
        write_vsftpd_conf "$i" "$conf"
        exec "$PKGS/vsftpd/usr/sbin/vsftpd" "$conf" </dev/null
        ;;
    proftpd)
        write_proftpd_conf "$i" "$conf"
        exec "$PKGS/proftpd-core/usr/sbin/proftpd" -n -c "$conf" </dev/null
        ;;
    pure-ftpd)
        write_puredb "$i"
        exec "$PKGS/pure-ftpd/usr/sbin/pure-ftpd" -S "$HOST,$port" -4 -H -E -A \
            -l "puredb:$STATE/$i.pdb" -p "$pasv:$(pasv_max "$i")" \
            -Y 1 -2 "$STATE/tls/leaf-chain.pem,$STATE/tls/leaf.key" -U 133:022 \
            -c 64 -C 64 -g "$STATE/$i.pid.pure" </dev/null
        ;;
    *) die "serve: unknown software $soft (vsftpd, proftpd, pure-ftpd)" ;;
    esac
}

case "${1:-}" in
install) cmd_install ;;
serve) shift; cmd_serve "$@" ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "$ENV_FILE" ;;
capture) shift; cmd_capture "$@" ;;
*) echo "usage: $0 install|start|stop|status|env|capture|serve" >&2; exit 2 ;;
esac
