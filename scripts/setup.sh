#!/usr/bin/env bash
# Installs everything keras-slim needs on a fresh Debian/Python 3.11 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # Fashion-MNIST for offline use (the original idx files).
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r requirements-lock.txt
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps -e .
