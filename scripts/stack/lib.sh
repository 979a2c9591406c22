# Shared helpers for scripts/stack/*. Sourced, not executed.
#
# Conventions used by every script here:
#   - Everything binds to 127.0.0.1 on the port given (argument or env); nothing touches /etc.
#   - Every config, pid file, socket and log lives in STATEDIR (made if missing).
#   - stdout carries only KEY='value' lines (shell-sourceable, values never contain a quote);
#     the same lines are saved to STATEDIR/<service>.env. Human messages go to stderr ("stack: ...").
#   - A missing program fails with its name and the script that installs it.

set -euo pipefail

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
STACK_REPO="$(cd "$STACK_DIR/../.." && pwd -P)"
STACK_INSTALL_HINT="run .ci/install-stack as root (Debian: apt-get install openssh-server nginx php-fpm php-cli php-sqlite3 supervisor wrk sqlite3 curl)"

say() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# need PROG... : fail naming the first missing program.
need() {
    local p
    for p in "$@"; do
        command -v "$p" >/dev/null 2>&1 || die "missing program: $p ($STACK_INSTALL_HINT)"
    done
}

# Absolute path of a program, searching sbin dirs too (a non-root PATH often lacks them).
find_prog() {
    local p="$1" d
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return 0; fi
    for d in /usr/sbin /sbin /usr/local/sbin; do
        [ -x "$d/$p" ] && { echo "$d/$p"; return 0; }
    done
    return 1
}

need_prog() {
    find_prog "$1" || die "missing program: $1 ($STACK_INSTALL_HINT)"
}

# php-fpm is packaged versioned on Debian (/usr/sbin/php-fpm8.2); take the newest.
find_php_fpm() {
    local p
    if p="$(find_prog php-fpm)"; then echo "$p"; return 0; fi
    p="$(ls -1 /usr/sbin/php-fpm[0-9]* /usr/local/sbin/php-fpm[0-9]* 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }
    die "missing program: php-fpm (looked for php-fpm and /usr/sbin/php-fpm<version>; $STACK_INSTALL_HINT)"
}

# Paths end up inside nginx/sshd/supervisord/php-fpm configs: refuse anything that would need quoting.
check_path() {
    local what="$1" p="$2"
    case "$p" in
        /*) ;;
        *) die "$what must be an absolute path: $p" ;;
    esac
    if [[ "$p" =~ [^A-Za-z0-9_./+@:,=-] ]]; then
        die "$what contains characters the server configs cannot take unquoted (use [A-Za-z0-9_./+@:,=-] only): $p"
    fi
}

abspath() { realpath -m -- "$1"; }

# Unix socket paths are limited to 107 bytes (sun_path); a deep temp dir can exceed it.
check_socket_path() {
    local s="$1"
    [ "${#s}" -lt 100 ] || die "socket path too long for a unix socket (${#s} bytes, limit ~107): $s; use a shorter STATEDIR"
}

check_port() {
    local name="$1" port="$2"
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65535 ] \
        || die "$name must be a port number 1024..65535, got: '${port}'"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "$name $port: something already listens on 127.0.0.1:$port"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION CMD... : poll CMD every 50 ms.
wait_for() {
    local secs="$1" desc="$2"; shift 2
    local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s%N)" -lt "$deadline" ] || { say "timed out after ${secs}s waiting for $desc"; return 1; }
        sleep 0.05
    done
}

# pid_alive PIDFILE NAME : the pid in PIDFILE is alive and its command line mentions NAME
# (guards against signalling a recycled pid).
pid_alive() {
    local pidfile="$1" name="$2" pid
    [ -s "$pidfile" ] || return 1
    pid="$(tr -dc 0-9 <"$pidfile")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

# pid_gone PID : the process has exited. A daemon's parent is init, and an init that is not a
# real one (a container's PID 1) may reap zombies only now and then: a zombie counts as gone.
pid_gone() {
    kill -0 "$1" 2>/dev/null || return 0
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    [ "${stat%% *}" = Z ]
}

# stop_pidfile LABEL PIDFILE NAME [SIGNAL] [TIMEOUT] : signal, wait, then SIGKILL.
stop_pidfile() {
    local label="$1" pidfile="$2" name="$3" sig="${4:-TERM}" timeout="${5:-10}" pid
    if ! pid_alive "$pidfile" "$name"; then
        [ -e "$pidfile" ] && rm -f "$pidfile"
        return 1
    fi
    pid="$(tr -dc 0-9 <"$pidfile")"
    kill -"$sig" "$pid" 2>/dev/null || true
    if ! wait_for "$timeout" "$label (pid $pid) to exit" pid_gone "$pid"; then
        say "$label (pid $pid) ignored SIG$sig for ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 "$label (pid $pid) to die" pid_gone "$pid" || true
    fi
    rm -f "$pidfile"
    say "stopped $label (pid $pid)"
    return 0
}

# emit FILE KEY VALUE... : print KEY='VALUE' lines to stdout and FILE.
emit() {
    local file="$1"; shift
    : >"$file"
    while [ $# -ge 2 ]; do
        case "$2" in *"'"*) die "internal: value for $1 contains a quote" ;; esac
        printf "%s='%s'\n" "$1" "$2" | tee -a "$file"
        shift 2
    done
}

tail_log() {
    local f="$1"
    [ -s "$f" ] && { say "last lines of $f:"; tail -n 20 "$f" | sed 's/^/    /' >&2; }
    return 0
}

statedir_arg() {
    [ -n "${1:-}" ] || die "STATEDIR argument missing"
    local d
    d="$(abspath "$1")"
    check_path STATEDIR "$d"
    mkdir -p "$d"
    echo "$d"
}
