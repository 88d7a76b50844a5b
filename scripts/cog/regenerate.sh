#!/usr/bin/env bash
# Regenerates protocol/data/cog.txt from the official open data published by Etalab in the npm
# package @etalab/decoupage-administratif (Licence Ouverte). Needs node and npm.
# Usage: scripts/cog/regenerate.sh [PACKAGE_VERSION COG_YEAR]   (default: 6.0.0 2026)
set -euo pipefail
version=${1:-6.0.0}
year=${2:-2026}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --no-save --silent "@etalab/decoupage-administratif@$version" >/dev/null)
node "$here/build.js" "$work/node_modules/@etalab/decoupage-administratif" "$root/protocol/data/cog.txt" "$year"
