#!/usr/bin/env bash
# Builds the image and starts the service in a container, with docker or podman; waits until ready.
#   ./start_docker.sh                         models from the official downloads if missing
#   ./start_docker.sh --from ../shared/models models from a local mirror
#   ./start_docker.sh --variant tf            the TensorFlow variant (SavedModel models)
#   ./start_docker.sh --engine podman         force an engine (default: docker if it answers, else podman)
#   ./start_docker.sh --photos DIR            photos for the default /img_url index (default
#                                             ../shared/datasets/leedsbutterfly, relative to the checkout)
#   ./start_docker.sh --no-default-index      never build one (/health/ready then says how to)
#   ./start_docker.sh --stop                  stop and remove the container
# When volumes/index holds no species index and the photos are there, the image first builds a
# default one into volumes/index (aiy_insects_features, no download), then serves it read-only.
# Environment: SPECIES_ID_PORT (8000), SPECIES_ID_BIND (127.0.0.1; 0.0.0.0 to publish on every
# interface), SPECIES_ID_NAME (species-id), CONTAINER_ENGINE.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

engine="${CONTAINER_ENGINE:-}"
variant="lite"
name="${SPECIES_ID_NAME:-species-id}"
port="${SPECIES_ID_PORT:-8000}"
bind="${SPECIES_ID_BIND:-127.0.0.1}"
download_args=()
photos="../shared/datasets/leedsbutterfly"
default_index=true
stop=false
while (($#)); do
  case "$1" in
    --from) download_args=(--from "$2"); shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --variant) variant="$2"; shift 2 ;;
    --photos) photos="$2"; shift 2 ;;
    --no-default-index) default_index=false; shift ;;
    --stop) stop=true; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$variant" in lite | tf) ;; *) echo "--variant is lite or tf" >&2; exit 2 ;; esac

if [[ -z $engine ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    echo "neither a running docker engine nor podman was found" >&2
    exit 1
  fi
fi

if $stop; then
  "$engine" stop --time 30 "$name" >/dev/null && "$engine" rm "$name" >/dev/null
  echo "stopped $name"
  exit 0
fi

if ! ls volumes/models/*/model.tflite >/dev/null 2>&1; then
  ./download_volume.sh "${download_args[@]}"
fi

image="species-id:$variant"
build_args=(--build-arg "VARIANT=$variant" --tag "$image")
# podman's default OCI image format drops HEALTHCHECK; docker's keeps it.
[[ $engine == podman ]] && build_args+=(--format docker)
echo "building $image with $engine ..."
"$engine" build "${build_args[@]}" .

# The first run's species index, built by the image itself (as this user, so the files are
# the user's) into volumes/index; the service below mounts it read-only with the rest.
index_note="no species index in volumes/index: /img_url answers 503 until one is built (see /health/ready)"
if [[ ! -L volumes/index/current ]]; then
  if $default_index && [[ -d $photos ]]; then
    echo "no species index in volumes/index: building the default one from $photos ..."
    mkdir -p volumes/index
    user_args=(--user "$(id -u):$(id -g)")
    [[ $engine == podman && $(id -u) != 0 ]] && user_args+=(--userns keep-id)
    "$engine" run --rm "${user_args[@]}" \
      --volume "$PWD/volumes/models:/srv/volumes/models:ro" \
      --volume "$PWD/volumes/index:/srv/volumes/index" \
      --volume "$(cd "$photos" && pwd):/srv/photos:ro" \
      "$image" python -m app build-default-index --photos /srv/photos --no-progress \
      || echo "note: the default index was not built; $index_note" >&2
  else
    echo "note: $index_note"
  fi
fi

"$engine" rm --force "$name" >/dev/null 2>&1 || true
"$engine" run --detach --name "$name" --restart unless-stopped \
  --publish "$bind:$port:8000" \
  --volume "$PWD/volumes:/srv/volumes:ro" \
  --volume species-id-cache:/srv/cache \
  "$image" >/dev/null

url="http://$bind:$port"
[[ $bind == 0.0.0.0 ]] && url="http://127.0.0.1:$port"
echo "waiting for $url/health/ready ..."
for _ in $(seq 1 90); do
  if curl --silent --fail "$url/health/ready" >/dev/null; then
    echo "ready: open $url/docs   (stop with: $0 --engine $engine --stop)"
    exit 0
  fi
  if [[ $("$engine" inspect --format '{{.State.Running}}' "$name" 2>/dev/null) != true ]]; then
    break
  fi
  sleep 2
done
echo "the service did not become ready; its log:" >&2
"$engine" logs --tail 30 "$name" >&2 || true
exit 1
