#!/usr/bin/env bash
# Builds the two container images with no registry: static release binaries built
# here, each copied onto an empty base (`FROM scratch`), which Docker never pulls.
#
#   scripts/build-images.sh            # flowgate-gateway:latest, flowgate-flow-service:latest
#   FLOWGATE_TAG=0.1.0 scripts/build-images.sh
#
# Needs the Rust toolchain, gcc (aws-lc-sys), and a Docker engine. SKIP_CARGO=1 reuses
# binaries already built by an earlier run.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${FLOWGATE_TAG:-latest}
target=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}
bin_dir="$target_dir/$target/release"
context="$target_dir/image-context"

if [ "$(uname -m)" != x86_64 ]; then
  echo "build-images.sh builds x86_64 images only (this machine is $(uname -m))" >&2
  exit 1
fi

if [ "${SKIP_CARGO:-0}" != 1 ]; then
  echo "== static release binaries"
  # crt-static links glibc statically. The explicit --target makes the flag apply to
  # the binaries only, so build scripts and proc-macros stay ordinary host programs.
  started=$(date +%s)
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p flowgate-gateway -p flow-service
  echo "built in $(( $(date +%s) - started ))s"
fi

for bin in flowgate-gateway flow-service; do
  # An image without libc can run only a binary that needs no dynamic loader.
  if ! file -L "$bin_dir/$bin" | grep -q 'statically linked\|static-pie linked'; then
    echo "$bin_dir/$bin is not static:" >&2
    file -L "$bin_dir/$bin" >&2
    exit 1
  fi
done

echo "== staging the build context in $context"
# A context holding only what the images contain keeps `docker build` from sending
# gigabytes of target/ to the engine.
rm -rf "$context"
mkdir -p "$context/etc" "$context/data" "$context/secrets" "$context/tmp"
chmod 1777 "$context/tmp"
cp deploy/docker/etc/nsswitch.conf deploy/docker/etc/passwd deploy/docker/etc/group "$context/etc/"
for bin in flowgate-gateway flow-service; do
  cp "$bin_dir/$bin" "$context/$bin"
  # Line tables serve the host's debuggers; the image keeps symbols (function names in
  # backtraces) and drops the rest.
  strip --strip-debug "$context/$bin"
done

echo "== docker build"
for image in gateway flow-service; do
  name=flowgate-$image
  # The classic builder is asked for explicitly: it needs no buildx plugin, and a
  # FROM scratch build gains nothing from BuildKit.
  # Its deprecation notice is noise: the output is shown only when the build fails.
  if ! DOCKER_BUILDKIT=0 docker build \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -f "deploy/docker/$image.Dockerfile" -t "$name:$tag" "$context" >"$target_dir/image-build-$image.log" 2>&1; then
    cat "$target_dir/image-build-$image.log" >&2
    exit 1
  fi
  echo "built $name:$tag"
done
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^flowgate-(gateway|flow-service):$tag " || true
