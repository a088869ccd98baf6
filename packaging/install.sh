#!/usr/bin/env bash
# Install a built cagepipe by hand (the packages do the same):
#   packaging/install.sh [path/to/cagepipe]
# Creates the cagepipe group, installs the binary as root:cagepipe 0750 with
# file capabilities (permitted only, never setuid) and, if absent, the
# example configuration.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/cagepipe}
dest=${DESTDIR:-}/usr/sbin/cagepipe

getent group cagepipe >/dev/null || groupadd --system cagepipe
install -d -m 0755 "${DESTDIR:-}/usr/sbin" "${DESTDIR:-}/etc/cagepipe"
# Owner, group and mode first: chown and chmod clear file capabilities.
install -o root -g cagepipe -m 0750 "$bin" "$dest"
if ! setcap "$(cat "$here/file-caps")" "$dest"; then
    echo "install.sh: setcap failed; cagepipe cannot work without file capabilities (never make it setuid)" >&2
    exit 1
fi
if [ ! -e "${DESTDIR:-}/etc/cagepipe/cagepipe.toml" ]; then
    install -o root -g root -m 0644 "$here/cagepipe.toml" "${DESTDIR:-}/etc/cagepipe/cagepipe.toml"
fi
getcap "$dest"
