#!/bin/sh
# Install the Debian packages kvtile builds against, if any is missing.
set -e
pkgs="build-essential pkg-config python3 liburing-dev liblz4-dev libopenblas-dev libpcre2-dev libxxhash-dev libjansson-dev"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
