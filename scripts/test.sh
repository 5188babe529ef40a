#!/usr/bin/env bash
# The whole test suite on a fresh machine: starts PostgreSQL if it is down,
# installs the tools the suite drives when they are missing (Debian's
# prometheus for promtool, chromium and chromium-driver; PyPI's schemathesis),
# runs every test, and stops the PostgreSQL clusters the tests created.
#
#   scripts/test.sh                 everything
#   scripts/test.sh pipeline::      arguments go to `cargo test` (here: a name filter)
#
# Installing needs root (apt-get, pip); without it the script says what is
# missing and how to install it, and runs the tests anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'scripts/test.sh: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# PostgreSQL: the tests create their own databases on 127.0.0.1:5432.
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  say "starting PostgreSQL $version (main)"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

apt_packages=()
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
[ -x /usr/bin/chromedriver ] || apt_packages+=(chromium chromium-driver)
if [ ${#apt_packages[@]} -gt 0 ]; then
  say "installing ${apt_packages[*]} (Debian)"
  if as_root env DEBIAN_FRONTEND=noninteractive sh -c \
      "apt-get update -qq && apt-get install -y -qq ${apt_packages[*]} >/dev/null"; then
    # The prometheus package starts a server the tests do not need.
    as_root pkill -x prometheus 2>/dev/null || true
  else
    say "could not install ${apt_packages[*]}: run 'apt-get install ${apt_packages[*]}' as root"
  fi
fi
if ! command -v schemathesis >/dev/null 2>&1; then
  say "installing schemathesis (PyPI)"
  python3 -m pip install -q schemathesis || say "could not install schemathesis: run 'pip install schemathesis'"
  # pyenv puts new commands on PATH only after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi

# The fault tests restart a cluster of their own (port 5433, created on first
# use); it is stopped when the suite ends, whatever the outcome.
stop_test_clusters() {
  for conf in /etc/postgresql/*/outboxd_*; do
    [ -d "$conf" ] || continue
    version="$(basename "$(dirname "$conf")")"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$(basename "$conf")" stop -m fast \
      2>/dev/null || true
  done
}
trap stop_test_clusters EXIT

cargo test --workspace --locked --no-fail-fast "$@"
