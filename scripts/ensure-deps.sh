#!/usr/bin/env bash
# Installs node_modules (npm ci, from the lockfile) when missing or stale, then builds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 20 ]; then
  echo "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # `npm install` (with the committed lockfile) rather than `npm ci`: the lockfile cannot list
  # msgpackr-extract's prebuilt packages for platforms whose versions this registry lacks, and
  # `npm ci` refuses such a lockfile. Versions still come from package-lock.json.
  echo "[setup] npm install" >&2
  npm install --no-fund --no-audit >&2
fi
echo "[setup] npm run build" >&2
npm run --silent build >&2
