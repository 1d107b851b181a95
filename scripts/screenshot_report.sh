#!/usr/bin/env bash
# Render a report (pipeline.dataset.report) in headless Chromium to a PNG, to eyeball its layout.
# Usage: scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]
# Needs chromium (Debian: apt-get install -y --no-install-recommends chromium). Not part of the tests.
set -euo pipefail
report=${1:?usage: $0 REPORT.html [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-${report%.html}.png}
width=${3:-1280}
height=${4:-2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "chromium not found" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --screenshot="$(realpath -m "$out")" \
  --window-size="${width},${height}" "file://$(realpath "$report")" 2>/dev/null
echo "$out"
