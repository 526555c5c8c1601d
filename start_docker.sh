#!/usr/bin/env bash
# Installs the models if needed, then builds and starts the service with docker compose.
#   ./start_docker.sh              models from the official downloads
#   ./start_docker.sh --from DIR   models from a local mirror (e.g. ../shared/models)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! ls volumes/models/*/model.tflite >/dev/null 2>&1; then
  ./download_volume.sh "$@"
fi

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "docker compose is not installed" >&2
  exit 1
fi

"${compose[@]}" up --build --detach
port="${SPECIES_ID_PORT:-8000}"
echo "waiting for http://localhost:$port/health/ready ..."
for _ in $(seq 1 60); do
  if curl --silent --fail "http://localhost:$port/health/ready" >/dev/null; then
    echo "ready: open http://localhost:$port/docs"
    exit 0
  fi
  sleep 2
done
echo "the service did not become ready; see: ${compose[*]} logs" >&2
exit 1
