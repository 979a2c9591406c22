#!/usr/bin/env bash
# Build symdeploy, install it, and create (or complete) a deploy root.
#
#   ./install.sh ROOT [--user NAME] [--strict] [--prefix DIR]
#
# ROOT      the deploy root to create, e.g. /srv/myapp (its repository/ is what you push to)
# --user    the deploy user pushes come as: ROOT is made owned by it (as root; see README)
# --strict  install a pre-receive hook: a failed warm-up rejects the push
# --prefix  where the binary goes (default: /usr/local as root, else ~/.local); PREFIX/bin/symdeploy
#
# The Debian package (scripts/build-deb) is the usual way onto a server; this is the from-source one.
set -euo pipefail

# The comment block above is the usage: --help prints it (exit 0), a bad
# command line prints it to stderr (exit 2).
usage_text() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
usage() { usage_text >&2; exit 2; }

root=""
strict=()
user=()
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --strict) strict=(--strict) ;;
    --user) [ $# -ge 2 ] || usage; user=(--user "$2"); shift ;;
    --prefix) [ $# -ge 2 ] || usage; prefix="$2"; shift ;;
    -h|--help) usage_text; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$root" ] || usage; root="$1" ;;
  esac
  shift
done
[ -n "$root" ] || usage

command -v cargo >/dev/null || { echo "install.sh: cargo is needed (https://rustup.rs); install it and run again" >&2; exit 1; }
command -v git >/dev/null || { echo "install.sh: git is needed on the server (apt-get install git)" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
echo "==> building symdeploy (release)"
cargo build --release --locked --manifest-path "$here/Cargo.toml"
echo "==> installing $prefix/bin/symdeploy"
install -d "$prefix/bin"
install -m 0755 "$here/target/release/symdeploy" "$prefix/bin/symdeploy"
echo "==> symdeploy init $root ${strict[*]:-} ${user[*]:-}"
"$prefix/bin/symdeploy" init "$root" ${strict[@]+"${strict[@]}"} ${user[@]+"${user[@]}"}
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on PATH; the hook calls the binary by its full path, but add it for the CLI" ;;
esac
