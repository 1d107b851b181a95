#!/usr/bin/env bash
# Local Prefect server + process work pool + deployments (prefect.yaml) + a worker, all on loopback.
#   scripts/serve.sh            # foreground worker; Ctrl-C stops worker and server
#   PORT=4300 scripts/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PREFECT="$PY -m prefect"
PORT=${PORT:-4200}
POOL=${POOL:-speechinstruct-cpu}
export SPEECHINSTRUCT_ROOT="$PWD"
export PREFECT_API_URL="http://127.0.0.1:${PORT}/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect}
mkdir -p "$PREFECT_HOME"
$PREFECT server start --host 127.0.0.1 --port "$PORT" > "$PREFECT_HOME/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for i in $(seq 1 120); do
  if $PY -c "import urllib.request,sys; urllib.request.urlopen('$PREFECT_API_URL/health', timeout=2)" 2>/dev/null; then break; fi
  kill -0 $SERVER 2>/dev/null || { cat "$PREFECT_HOME/server.log"; exit 1; }
  sleep 1
done
echo "prefect server up at http://127.0.0.1:${PORT} (UI), API $PREFECT_API_URL"
$PREFECT work-pool inspect "$POOL" >/dev/null 2>&1 || $PREFECT work-pool create "$POOL" --type process >/dev/null
$PREFECT --no-prompt deploy --all
echo "deployments: $($PREFECT deployment ls 2>/dev/null | grep -c '/' || true); run one with e.g."
echo "  PREFECT_API_URL=$PREFECT_API_URL $PREFECT deployment run dataset/dataset-en"
if [ "${SERVE_NO_WORKER:-0}" = 1 ]; then wait $SERVER; else $PREFECT worker start --pool "$POOL" ${WORKER_ARGS:-}; fi
