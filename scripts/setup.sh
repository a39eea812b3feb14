#!/usr/bin/env bash
# Idempotent set-up for gridserver on a Debian machine:
#   1. Debian packages: PostgreSQL + PostGIS (for the embedded private PostGIS), Chromium and a CJK
#      font (browser tests, map screenshots), Node.js/npm (front-end build). Installed with apt-get
#      when running as root; otherwise the exact command is printed.
#   2. .venv with the project installed (pip install -e .[dev,train]) at the versions pinned in
#      requirements.lock; redone only when pyproject.toml or the lock changes.
#   3. Front-end: npm ci + build of web/ into gridserver/maps/static/dist; redone when web/ changes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# --- 1. Debian packages ---------------------------------------------------------------------------
pg_version() {
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1 || true)
  echo "${v:-15}"
}
PGV=$(pg_version)
missing=()
ls /usr/share/postgresql/"$PGV"/extension/postgis.control >/dev/null 2>&1 || missing+=("postgresql-$PGV" "postgresql-$PGV-postgis-3")
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list 2>/dev/null | grep -qiE "wenquanyi|noto sans cjk|droid sans fallback" || missing+=(fonts-wqy-microhei)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
command -v ogr2ogr >/dev/null 2>&1 || missing+=(gdal-bin)  # OGC API client (OAPIF) in tests/analytics
# QGIS's own OAPIF provider, the analysts' client, driven headless from Debian's python3 in tests/analytics
/usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1 || missing+=(python3-qgis qgis-providers)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # C load generator for bench/tiles.py and bench/tile_cache.py (make bench)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    say "missing Debian packages; run as root:"
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    case " ${missing[*]} " in *postgis*) exit 1 ;; esac
  fi
else
  say "Debian packages present (PostgreSQL $PGV + PostGIS, Chromium, CJK font, Node.js)"
fi

# --- 2. Python environment ------------------------------------------------------------------------
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { echo "Python >= 3.11 required"; exit 1; }
stamp=.venv/.gridserver-installed
EXTRAS="dev,train"
want=$( (cat pyproject.toml requirements.lock; echo "$EXTRAS") | sha1sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages into .venv (pip install -e .[dev,train]; train = torch 2.13.0 CPU, used by gridserver address train)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c requirements.lock -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
else
  say "Python packages up to date"
fi

# --- 3. Front-end assets --------------------------------------------------------------------------
if [ -f web/package.json ]; then
  wstamp=gridserver/maps/static/dist/.build-stamp
  wwant=$(cat web/package.json web/package-lock.json $(find web -path web/node_modules -prune -o -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.css' -o -name '*.html' \) -print | sort) 2>/dev/null | sha1sum | cut -d' ' -f1)
  if [ ! -f "$wstamp" ] || [ "$(cat "$wstamp")" != "$wwant" ]; then
    say "building front-end (npm install && npm run build in web/)"
    (cd web && npm install --no-audit --no-fund --loglevel=error && npm run build --silent)
    mkdir -p "$(dirname "$wstamp")"
    echo "$wwant" > "$wstamp"
  else
    say "front-end assets up to date"
  fi
fi
say "ready: $ROOT"
