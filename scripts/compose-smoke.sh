#!/usr/bin/env bash
# The docker-compose stack end to end:
#   up (default profile) → healthy → the hop token is in force (a flowgate.v1 call
#   straight to the flow service without it, or with a wrong one, is UNAUTHENTICATED;
#   gRPC health answers without it) → ping over HTTPS → one sign-up journey →
#   --scale flow-service=3 → journeys for a while, killing a replica in use
#   (docker kill) in the middle: not one may fail → down -v.
# The journeys go through the gateway's published port only. For the direct calls, an
# override made here publishes the flow service's port on 127.0.0.1 (an ephemeral port,
# so scaling still works); docker-compose.yml itself publishes none.
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
echo "== $("${compose_cmd[@]}" version | head -1), project $project"

for image in flowgate-gateway flowgate-flow-service; do
  docker image inspect "$image:${FLOWGATE_TAG:-latest}" >/dev/null 2>&1 || {
    echo "image $image:${FLOWGATE_TAG:-latest} missing: run scripts/build-images.sh first" >&2
    exit 1
  }
done

work=$(mktemp -d)
# Every compose command sees the same files, so none recreates what another started.
cat >"$work/direct.yml" <<'EOF'
version: "2.4"
services:
  flow-service:
    ports:
      - "127.0.0.1::50051"
EOF
compose() { "${compose_cmd[@]}" -p "$project" -f docker-compose.yml -f "$work/direct.yml" "$@"; }
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

echo "== the hop token"
# docker cp reads the file as the engine does, whatever its mode; the archive keeps
# the mode and owner gen-token gave it.
listing=$(docker cp "$gateway:/secrets/hop-token" - | tar --numeric-owner -tvf -)
echo "$listing"
case "$listing" in
  "-rw------- 65532/65532 "*) ;;
  *) echo "the hop token is not a mode 0600 file of uid 65532" >&2; exit 1 ;;
esac
docker cp "$gateway:/secrets/hop-token" - | tar -xOf - >"$work/hop-token"
[ -s "$work/hop-token" ] || { echo "the hop token is empty" >&2; exit 1; }
token=$(tr -d '\r\n' <"$work/hop-token")
# A second run of the one-shot keeps the token (gen-token writes only a missing file).
compose run --rm --no-deps hop-token >/dev/null
docker cp "$gateway:/secrets/hop-token" - | tar -xOf - | cmp -s - "$work/hop-token" || {
  echo "running gen-token again changed the token" >&2
  exit 1
}

direct=$(compose port flow-service 50051)
echo "flow service published for this test on $direct"
# A unary gRPC call by curl over HTTP/2 without TLS: an empty message (flag 0, length 0)
# is a valid request of any type. Prints the grpc-status the answer ends with, from its
# headers (a trailers-only answer) or its trailers.
printf '\0\0\0\0\0' >"$work/empty.grpc"
# A refusal needs no message: `grpc_refusal` sends the headers alone, so the answer
# (trailers-only, then a reset of the unread request stream, which gRPC clients expect)
# cannot race curl's upload through Docker's port proxy.
grpc_status() {
  local path=$1
  shift
  : >"$work/grpc-headers"
  curl -sS --http2-prior-knowledge --max-time 10 -o /dev/null -D "$work/grpc-headers" \
    -H 'content-type: application/grpc' -H 'te: trailers' "$@" \
    "http://$direct$path" >&2 || true
  tr -d '\r' <"$work/grpc-headers" | awk -F': *' 'tolower($1) == "grpc-status" { s = $2 } END { print s }'
}
grpc_call() { local path=$1; shift; grpc_status "$path" --data-binary @"$work/empty.grpc" "$@"; }
grpc_refusal() { local path=$1; shift; grpc_status "$path" -X POST "$@"; }
expect_status() {
  local what=$1 expected=$2 got=$3
  echo "$what: grpc-status ${got:-none}"
  [ "$got" = "$expected" ] || { echo "$what: expected grpc-status $expected" >&2; exit 1; }
}
method=/flowgate.v1.FlowService/NotifyError
expect_status "health Check, no token" 0 "$(grpc_call /grpc.health.v1.Health/Check)"
expect_status "$method, no token (UNAUTHENTICATED)" 16 "$(grpc_refusal "$method")"
expect_status "$method, a wrong token (UNAUTHENTICATED)" 16 \
  "$(grpc_refusal "$method" -H "authorization: Bearer not-$token")"
# With the token the call is let through to the handler, whatever it makes of the
# empty request.
with=$(grpc_call "$method" -H "authorization: Bearer $token")
echo "$method, the token: grpc-status ${with:-none}"
if [ -z "$with" ] || [ "$with" = 16 ]; then
  echo "the flow service refused its own token" >&2
  exit 1
fi

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
