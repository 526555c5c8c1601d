#!/usr/bin/env bash
# Installs the model files named in volumes/models/models.toml into volumes/models.
#
#   ./download_volume.sh                 official downloads (TF-Hub / Kaggle Models), sha256-checked
#   ./download_volume.sh --from DIR      copy from a local mirror laid out like ../shared/models
#                                        (how CI and offline sites install models)
#   ./download_volume.sh --dest DIR      install into another volume folder (default volumes/models)
#
# A model that cannot be had is reported and left out; the server then disables only its
# endpoint. Either way the folder ends up with a working models.toml.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/volumes/models"
mirror=""

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --from) mirror="${2:?--from needs a folder}"; shift 2 ;;
    --dest) dest="${2:?--dest needs a folder}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-python3}"
mkdir -p "$dest"
if [ ! -f "$dest/models.toml" ]; then
  cp "$here/volumes/models/models.toml" "$dest/models.toml"
fi
# The shipped calibrations (/v1/identify) and offline taxonomies (NCBI, per label) go with the
# manifest that names them.
for shipped in calibration taxonomy; do
  if [ "$dest" != "$here/volumes/models" ] && [ ! -d "$dest/$shipped" ]; then
    cp -r "$here/volumes/models/$shipped" "$dest/$shipped"
  fi
done

TFHUB="https://tfhub.dev/google"
CORAL_LABELS="https://raw.githubusercontent.com/google-coral/test_data/master"

# name | tflite address | pinned sha256 ("-" = none known) | Coral common-name file
AIY_MODELS=(
  "aiy_birds_v1|$TFHUB/lite-model/aiy/vision/classifier/birds_V1/3?lite-format=tflite|95f59df4cff9053355abcd0b6e5e7e740f6eae19ed8cded32e2c3e8068195093|inat_bird_labels.txt"
  "aiy_insects_v1|$TFHUB/lite-model/aiy/vision/classifier/insects_V1/3?lite-format=tflite|f4cf927e8aabd4071ccfda7c279ac89a28b4f35c9c20eee731d6be1c14c165fe|inat_insect_labels.txt"
  "aiy_plants_v1|$TFHUB/lite-model/aiy/vision/classifier/plants_V1/3?lite-format=tflite|-|inat_plant_labels.txt"
)
INAT_URL="$TFHUB/inaturalist/inception_v3/feature_vector/5?tf-hub-format=compressed"

installed=0
missing=()

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

verify() {  # file pinned-sha -> 0 if fine
  local file="$1" want="$2" got
  got="$(sha_of "$file")"
  if [ "$want" = "-" ]; then
    echo "  note: no pinned sha256 for $(basename "$(dirname "$file")"); got $got (pin it in models.toml)"
    return 0
  fi
  if [ "$got" != "$want" ]; then
    echo "  sha256 mismatch for $file: want $want, got $got" >&2
    return 1
  fi
}

fetch() {  # url out
  curl --fail --location --silent --show-error --retry 3 --connect-timeout 20 --max-time 900 -o "$2.part" "$1" \
    && mv "$2.part" "$2"
}

labels_from_tflite() {  # model.tflite labelmap.csv background-index
  # The AIY .tflite files carry their label list in the metadata zip appended to the model.
  "$PY" - "$1" "$2" <<'PYEOF'
import csv, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).read("probability-labels-en.txt").decode().splitlines()
names = [n.strip() for n in names if n.strip()]
names[-1] = "background"  # the embedded list calls the background class "None"
with open(sys.argv[2], "w", newline="", encoding="utf-8") as fh:
    w = csv.writer(fh); w.writerow(["id", "name"]); w.writerows(enumerate(names))
PYEOF
}

install_aiy() {  # name url sha common
  local name="$1" url="$2" sha="$3" common="$4" out="$dest/$1"
  mkdir -p "$out"
  echo "$name:"
  if [ -f "$out/model.tflite" ] && [ "$sha" != "-" ] && [ "$(sha_of "$out/model.tflite")" = "$sha" ]; then
    echo "  model.tflite already installed and verified"
  elif [ -n "$mirror" ]; then
    if [ ! -f "$mirror/$name/model.tflite" ]; then
      echo "  not in the mirror $mirror: left out (its endpoint answers 503)"
      missing+=("$name")
      # Labels are still useful (link-gbif, tests); copy what the mirror has.
      cp -f "$mirror/$name/labelmap.csv" "$mirror/$name/$common" "$out/" 2>/dev/null || true
      return 0
    fi
    cp -f "$mirror/$name/model.tflite" "$out/model.tflite.part" && mv "$out/model.tflite.part" "$out/model.tflite"
    verify "$out/model.tflite" "$sha" || { rm -f "$out/model.tflite"; missing+=("$name"); return 0; }
    echo "  model.tflite copied from $mirror and verified"
  else
    if ! fetch "$url" "$out/model.tflite"; then
      echo "  download failed: $url" >&2; missing+=("$name"); return 0
    fi
    verify "$out/model.tflite" "$sha" || { rm -f "$out/model.tflite"; missing+=("$name"); return 0; }
    echo "  model.tflite downloaded and verified"
  fi
  if [ -n "$mirror" ] && [ -f "$mirror/$name/labelmap.csv" ]; then
    cp -f "$mirror/$name/labelmap.csv" "$out/labelmap.csv"
  elif [ ! -f "$out/labelmap.csv" ]; then
    labels_from_tflite "$out/model.tflite" "$out/labelmap.csv"
  fi
  if [ -n "$mirror" ] && [ -f "$mirror/$name/$common" ]; then
    cp -f "$mirror/$name/$common" "$out/$common"
  elif [ ! -f "$out/$common" ] && [ -z "$mirror" ]; then
    fetch "$CORAL_LABELS/$common" "$out/$common" \
      || echo "  common names unavailable: results carry scientific names only"
  fi
  installed=$((installed + 1))
}

install_inat() {
  local name="inat_inception_v3" out="$dest/inat_inception_v3"
  echo "$name:"
  if [ -f "$out/saved_model.pb" ]; then
    echo "  already installed"; installed=$((installed + 1)); return 0
  fi
  if [ -n "$mirror" ]; then
    if [ -f "$mirror/$name/saved_model.pb" ]; then
      rm -rf "$out.part" && cp -r "$mirror/$name" "$out.part" && mv "$out.part" "$out"
      echo "  copied from $mirror"; installed=$((installed + 1))
    else
      echo "  not in the mirror $mirror: left out (the lookup index needs it to be built)"
      missing+=("$name")
    fi
    return 0
  fi
  local archive="$dest/$name.tar.gz"
  if fetch "$INAT_URL" "$archive"; then
    echo "  archive sha256 $(sha_of "$archive")"
    rm -rf "$out.part" && mkdir -p "$out.part" && tar -xzf "$archive" -C "$out.part" && mv "$out.part" "$out"
    rm -f "$archive"
    echo "  installed"; installed=$((installed + 1))
  else
    echo "  download failed: $INAT_URL" >&2; missing+=("$name")
  fi
}

for entry in "${AIY_MODELS[@]}"; do
  IFS='|' read -r name url sha common <<<"$entry"
  install_aiy "$name" "$url" "$sha" "$common"
done
install_inat

# Embedders declared in models.toml that read another model's file: nothing more to fetch.
echo "aiy_insects_features:"
if [ -f "$dest/aiy_insects_v1/model.tflite" ]; then
  echo "  declared: the pre-logits tensor of aiy_insects_v1 (installed)"
else
  echo "  declared, but needs aiy_insects_v1"
fi

echo
echo "installed $installed model(s) into $dest"
if [ ${#missing[@]} -gt 0 ]; then
  echo "not available: ${missing[*]}"
fi
[ "$installed" -gt 0 ]
