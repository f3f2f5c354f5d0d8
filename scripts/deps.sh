#!/usr/bin/env bash
# Installs the Debian packages mope needs to build, test and run.  Nothing is
# downloaded from anywhere but the Debian archive.  Skips apt entirely when
# everything is already installed.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev libcjson-dev libcmocka-dev
      libpcre2-dev libutf8proc-dev wordnet-base)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
