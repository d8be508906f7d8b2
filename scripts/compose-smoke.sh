#!/usr/bin/env bash
# The docker-compose stack end to end, from the host through the published port only:
#   up (default profile) → healthy → ping over HTTPS → one sign-up journey →
#   --scale flow-service=3 → journeys for a while, killing a replica in use
#   (docker kill) in the middle: not one may fail → down -v.
# Expects the images of scripts/build-images.sh. Always tears the project down.
#
#   FLOWGATE_PORT    host port on 127.0.0.1 (default 18443, clear of run-local.sh's 8443)
#   COMPOSE_PROJECT  compose project name (default flowgate-ci)
#   COMPOSE          the compose command (default: `docker compose` if present, else docker-compose)
#   KILL_DURATION    seconds of journeys around the kill (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

project=${COMPOSE_PROJECT:-flowgate-ci}
export FLOWGATE_PORT=${FLOWGATE_PORT:-18443}
export FLOWGATE_BIND=127.0.0.1
duration=${KILL_DURATION:-20}
url="https://127.0.0.1:$FLOWGATE_PORT/flow-endpoint"

if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  compose_cmd=(docker-compose)
fi
if ! "${compose_cmd[@]}" version >/dev/null 2>&1; then
  echo "no compose tool: install docker-compose or the docker compose plugin" >&2
  exit 1
fi
compose() { "${compose_cmd[@]}" -p "$project" -f docker-compose.yml "$@"; }
echo "== $("${compose_cmd[@]}" version | head -1), project $project"

for image in flowgate-gateway flowgate-flow-service; do
  docker image inspect "$image:${FLOWGATE_TAG:-latest}" >/dev/null 2>&1 || {
    echo "image $image:${FLOWGATE_TAG:-latest} missing: run scripts/build-images.sh first" >&2
    exit 1
  }
done

work=$(mktemp -d)
cleanup() {
  status=$?
  if [ "$status" != 0 ]; then
    echo "== failed: the stack's last logs"
    compose ps || true
    compose logs --no-color --tail 40 || true
    echo "== failed: the gateway's warnings and errors"
    compose logs --no-color gateway 2>/dev/null | grep -E ' (WARN|ERROR) ' | tail -20 || true
  fi
  echo "== down -v"
  compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || compose down -v --remove-orphans || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until `count` containers of `service` report healthy.
wait_healthy() {
  local service=$1 count=$2 deadline=$((SECONDS + 90)) healthy ids
  while :; do
    ids=$(compose ps -q "$service")
    healthy=0
    for id in $ids; do
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] && healthy=$((healthy + 1))
    done
    [ "$healthy" -ge "$count" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "$service: $healthy of $count healthy after 90s" >&2
      return 1
    fi
    sleep 1
  done
  echo "$service: $healthy healthy"
}

# Established connections on port 50051 inside a container, from its network
# namespace as the host sees it: which replicas the gateway is actually using.
connections() {
  local pid
  pid=$(docker inspect -f '{{.State.Pid}}' "$1")
  # Local port 50051 is C383 in hex; state 01 is ESTABLISHED.
  awk 'NR > 1 && $2 ~ /:C383$/ && $4 == "01"' "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" 2>/dev/null | wc -l
}

echo "== up (default profile)"
compose down -v --remove-orphans >/dev/null 2>&1 || true
started=$SECONDS
compose up -d --no-build
wait_healthy flow-service 1
wait_healthy gateway 1
echo "healthy in $((SECONDS - started))s"

gateway=$(compose ps -q gateway)
echo "gateway user: $(docker inspect -f '{{.Config.User}}' "$gateway")"
# The gateway is ready only once it reached the flow service by its DNS name
# (FLOWGATE_BACKEND=http://flow-service:50051), so this also proves that name resolution
# works in the static binary.
docker exec "$gateway" /flowgate-gateway healthcheck
volume=$(docker volume inspect -f '{{.Mountpoint}}' "${project}_flow-data")
echo "flow-data volume at $volume, owned by uid $(stat -c %u "$volume" 2>/dev/null || echo '?')"

echo "== ping over HTTPS"
answer=$(curl -ksS --max-time 10 "$url" -H 'content-type: application/json' -d '{"action":"ping"}')
echo "$answer"
[ "$answer" = '{"data":{"status":"active"}}' ]

echo "== a sign-up journey"
curl -ksS --max-time 10 "$url" -H 'content-type: application/json' \
  -d '{"version":"3.0","action":"INIT","flow_token":"ci-token"}'
echo
python3 scripts/journeys.py --url "$url" --count 1

echo "== scale flow-service to 3"
compose up -d --no-build --no-recreate --scale flow-service=3
wait_healthy flow-service 3
wait_healthy gateway 1

echo "== journeys for ${duration}s, killing one replica in use after $((duration / 3))s"
python3 scripts/journeys.py --url "$url" --duration "$duration" --concurrency 4 \
  --after-file "$work/killed-at" >"$work/journeys.out" 2>&1 &
journeys=$!
sleep $((duration / 3))
victim="" most=-1
for id in $(compose ps -q flow-service); do
  n=$(connections "$id")
  echo "replica ${id:0:12}: $n connection(s) on :50051"
  if [ "$n" -gt "$most" ]; then victim=$id most=$n; fi
done
date +%s.%N >"$work/killed-at"
docker kill "$victim" >/dev/null
echo "killed replica ${victim:0:12} ($most connection(s))"
status=0
wait "$journeys" || status=$?
cat "$work/journeys.out"
if [ "$status" != 0 ]; then
  echo "journeys failed while a replica was killed" >&2
  exit 1
fi

echo "== after the kill"
compose ps
wait_healthy gateway 1
echo "compose smoke: passed"
