#!/usr/bin/env bash
# Vendor livekit-client for the web page's LiveKit mode: `npm ci` here (node_modules/), then copy
# its self-contained ESM build to vendor/, which the page imports only when LiveKit mode connects.
#
# The page has no bundler and must work offline (no CDN), so the one file it needs is served by
# the orchestrator from /static/vendor/. Both node_modules/ and vendor/ are git-ignored; the
# project's install step runs this script. It is idempotent and returns at once when the bundle
# is newer than package-lock.json. Without npm it warns and exits 0: WebSocket mode needs
# nothing from here, and LiveKit mode tells the person to run this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

lock=package-lock.json
built=node_modules/livekit-client/dist/livekit-client.esm.mjs
bundle=vendor/livekit-client.esm.mjs

# -nt is false when the right-hand file is missing, so these also cover a first run.
if [[ -f $bundle && $bundle -nt $lock && $bundle -nt package.json ]]; then
  echo "vendor.sh: $bundle is up to date"
  exit 0
fi

# npm writes node_modules/.package-lock.json after a successful install: newer than the lock
# means node_modules already matches it and only the copy is missing.
if [[ ! -f $built || ! node_modules/.package-lock.json -nt $lock ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "vendor.sh: WARNING: npm not found, so LiveKit mode in the web page is unavailable" \
      "(WebSocket mode works without it). Install Node.js 20+ with npm (e.g." \
      "\`apt-get install -y nodejs npm\`), then run $here/vendor.sh" >&2
    exit 0
  fi
  # A few of livekit-client's dependencies declare a newer Node than 20 for their own Node
  # builds; the bundle runs in the browser, so an engine mismatch is no reason to stop.
  npm ci --no-audit --no-fund --engine-strict=false --loglevel=error
fi

mkdir -p vendor
# Copy then rename, so the orchestrator never serves a half-written file.
cp "$built" "$bundle.tmp"
mv -f "$bundle.tmp" "$bundle"
version="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' node_modules/livekit-client/package.json)"
echo "vendor.sh: livekit-client $version -> $here/$bundle"
