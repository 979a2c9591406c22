#!/usr/bin/env bash
# Build symdeploy, install it (stripped), and create (or complete) a deploy root.
#
#   ./install.sh ROOT [--user NAME] [--strict] [--prefix DIR]
#   ./install.sh --try [DIR] [--prefix DIR]
#
# ROOT      the deploy root to create, e.g. /srv/myapp (its repository/ is what you push to)
# --user    the deploy user pushes come as: ROOT is made owned by it (as root; see README)
# --strict  install a pre-receive hook: a failed warm-up rejects the push
# --prefix  where the binary goes (default: /usr/local as root, else ~/.local); PREFIX/bin/symdeploy
# --try     a first deploy on this machine, no server set-up: a root in DIR (default
#           target/try), examples/php-app committed to DIR/app, pushed and promoted
#
# Needs cargo, git and a C toolchain (cc, strip); --try also needs make.
# The Debian package (scripts/build-deb) is the usual way onto a server; this is the from-source one.
set -euo pipefail

# The comment block above is the usage: --help prints it (exit 0), a bad
# command line prints it to stderr (exit 2).
usage_text() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
usage() { usage_text >&2; exit 2; }

root=""
try=0
strict=()
user=()
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --strict) strict=(--strict) ;;
    --try) try=1 ;;
    --user) [ $# -ge 2 ] || usage; user=(--user "$2"); shift ;;
    --prefix) [ $# -ge 2 ] || usage; prefix="$2"; shift ;;
    -h|--help) usage_text; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$root" ] || usage; root="$1" ;;
  esac
  shift
done
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$try" = 1 ]; then
  [ "${#user[@]}" -eq 0 ] && [ "${#strict[@]}" -eq 0 ] || { echo "install.sh: --try takes only DIR and --prefix" >&2; usage; }
  try_dir="${root:-$here/target/try}"
  root="$try_dir/root"
  command -v make >/dev/null || { echo "install.sh: --try needs make (apt-get install make): the sample app's steps are make targets" >&2; exit 1; }
  if [ -e "$root" ]; then
    echo "install.sh: $root exists (from an earlier --try?); remove $try_dir or give another DIR" >&2
    exit 1
  fi
fi
[ -n "$root" ] || usage

command -v cargo >/dev/null || { echo "install.sh: cargo is needed (https://rustup.rs); install it and run again" >&2; exit 1; }
command -v git >/dev/null || { echo "install.sh: git is needed on the server (apt-get install git)" >&2; exit 1; }

if [ -n "${SYMDEPLOY_INSTALL_BIN:-}" ]; then
  # The tests install the binary they built instead of building a release one (minutes).
  built="$SYMDEPLOY_INSTALL_BIN"
  echo "==> using $built (SYMDEPLOY_INSTALL_BIN)"
else
  echo "==> building symdeploy (release)"
  cargo build --release --locked --manifest-path "$here/Cargo.toml"
  # Wherever cargo put it: CARGO_TARGET_DIR or a config's build.target-dir move target/.
  target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$here/Cargo.toml" \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  built="${target_dir:-$here/target}/release/symdeploy"
fi
echo "==> installing $prefix/bin/symdeploy (stripped)"
install -d "$prefix/bin"
# The release profile keeps line tables for backtraces; the installed binary need not (48 MB -> 7 MB).
install -m 0755 -s "$built" "$prefix/bin/symdeploy"
if [ "$try" = 1 ]; then
  sd="$prefix/bin/symdeploy"
  echo "==> symdeploy init $root"
  "$sd" init "$root"
  # The sample app's steps without a web server or supervisord: no stop/start/check.
  cat >"$root/deploy.toml" <<'TOML'
# deploy.toml of ./install.sh --try: examples/php-app without a web server or supervisord.
# On a server: the full commented file that `symdeploy init` writes (see the book's deploy.toml page).
branch = "main"
shared = ["log", "www/data/images"]

[warmup]
build = ["make production-composer", "make production-assets"]
links = ["make production-links"]
notify = ["make deploy-notify-warmup"]

[promote]
stop = []
after_switch = ["make production-supervisor"]
start = []
notify = ["make deploy-notify"]
TOML
  mkdir -p "$root/common/app/config"
  echo 'greeting = hello from install.sh --try' >"$root/common/app/config/local.ini"
  app="$try_dir/app"
  echo "==> examples/php-app committed to $app"
  rm -rf "$app"
  cp -R "$here/examples/php-app" "$app"
  g() { git -C "$app" -c user.name=symdeploy-try -c user.email=try@localhost "$@"; }
  g init -q -b main
  g add -A
  g commit -qm "the sample app"
  g remote add deploy "$root/repository"
  echo "==> git push deploy main (warm-up)"
  g push deploy main
  echo "==> git tag release-1 && git push deploy release-1 (promote)"
  g tag release-1
  g push deploy release-1
  echo "==> symdeploy --root $root status"
  "$sd" --root "$root" status
  echo
  echo "production serves $root/www (-> production/www -> releases/<commit>/www)."
  echo "Next: change something in $app, commit, \`git -C $app push deploy main\`, tag release-2 and push it;"
  echo "then set up a server: the README's Quick start."
  exit 0
fi
echo "==> symdeploy init $root ${strict[*]:-} ${user[*]:-}"
"$prefix/bin/symdeploy" init "$root" ${strict[@]+"${strict[@]}"} ${user[@]+"${user[@]}"}
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on PATH; the hook calls the binary by its full path, but add it for the CLI" ;;
esac
