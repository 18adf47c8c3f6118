#!/usr/bin/env bash
# Installs the Debian packages of requirements/system.txt that are missing.
# Needs apt-get and root (as on CI); otherwise it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for pkg in $(grep -v '^#' requirements/system.txt); do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "Please install these Debian packages: ${missing[*]}" >&2
  exit 1
fi
echo "== apt-get install ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
