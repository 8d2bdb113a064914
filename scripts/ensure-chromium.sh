#!/usr/bin/env bash
# Makes sure a headless-capable Chromium is available for the browser test
# (test/integration/map-browser.test.ts). Installs Debian's `chromium` with apt when it is
# missing and we are root (or have sudo). Never fails the caller: prints what happened and
# exits 0; the test skips with a clear message when no browser is there.
#   CHROMIUM_PATH   use this binary instead of /usr/bin/chromium
#   SKIP_CHROMIUM_INSTALL=1   never install
set -uo pipefail
BIN="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$BIN" ]; then
  echo "[chromium] found $BIN" >&2
  exit 0
fi
if [ "${SKIP_CHROMIUM_INSTALL:-0}" = 1 ]; then
  echo "[chromium] $BIN missing and SKIP_CHROMIUM_INSTALL=1: the browser test will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[chromium] $BIN missing and no apt-get here: the browser test will skip (set CHROMIUM_PATH)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "[chromium] $BIN missing, not root and no passwordless sudo: the browser test will skip" >&2
    exit 0
  fi
fi
echo "[chromium] installing chromium with apt (one time)…" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  $SUDO apt-get install -y --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 || true
fi
if [ -x "$BIN" ]; then echo "[chromium] installed $BIN" >&2; else echo "[chromium] install failed: the browser test will skip" >&2; fi
exit 0
