#!/usr/bin/env bash
# Runs the whole stack on this machine: the flow service and the gateway, with
# embedded defaults and a self-signed certificate generated at start.
# Stops both on Ctrl-C. Ports: FLOWGATE_PORT (8443), FLOW_SERVICE_PORT (50051),
# FLOWGATE_ADMIN_PORT (9464), FLOW_SERVICE_ADMIN_PORT (9465, the flow service's
# metrics). PROFILE=release builds optimised binaries.
# The flow preview is on (FLOWGATE_PREVIEW=on), on the admin listener on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

gateway_port=${FLOWGATE_PORT:-8443}
service_port=${FLOW_SERVICE_PORT:-50051}
admin_port=${FLOWGATE_ADMIN_PORT:-9464}
service_admin_port=${FLOW_SERVICE_ADMIN_PORT:-9465}
profile=${PROFILE:-dev}
bin_dir="${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")"

echo "building (profile $profile)…"
cargo build --profile "$profile" -p flowgate-gateway -p flow-service --bins

pids=()
stop() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

FLOW_SERVICE_LISTEN="127.0.0.1:$service_port" \
FLOW_SERVICE_ADMIN_LISTEN="127.0.0.1:$service_admin_port" \
  "$bin_dir/flow-service" &
pids+=($!)
FLOWGATE_LISTEN="0.0.0.0:$gateway_port" \
FLOWGATE_ADMIN_LISTEN="127.0.0.1:$admin_port" \
FLOWGATE_PREVIEW=on \
FLOWGATE_BACKEND="http://127.0.0.1:$service_port" \
  "$bin_dir/flowgate-gateway" &
pids+=($!)

# Wait until the gateway reports the flow service ready.
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then
    cat <<MSG

flowgate is up: https://localhost:$gateway_port/flow-endpoint (self-signed certificate, hence -k)
preview: http://127.0.0.1:$admin_port/preview/

  curl -k https://localhost:$gateway_port/flow-endpoint -H 'content-type: application/json' -d '{"action":"ping"}'
  curl -k https://localhost:$gateway_port/flow-endpoint -H 'content-type: application/json' \\
       -d '{"version":"3.0","action":"INIT","flow_token":"demo-token"}'

Ctrl-C stops both.
MSG
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process exited during start-up; see the log above" >&2; exit 1; }
  done
  sleep 0.2
done

# Stop everything as soon as either process ends.
wait -n "${pids[@]}"
