# syntax=docker/dockerfile:1
# Species identification service. Models are NOT baked in: mount ./volumes at /srv/volumes
# (./download_volume.sh fills it).
#   docker build -t species-id:lite .                          LiteRT only: the AIY classifiers (default)
#   docker build --build-arg VARIANT=tf -t species-id:tf .     + TensorFlow/TF-Hub for SavedModel models
# The default is lite because TensorFlow multiplies the image size and start-up time while the
# classifier endpoints never use it; only SavedModel entries of the manifest (the iNat embedder) need it.
ARG VARIANT=lite

# ---- build: a virtualenv with the app and its runtime dependencies ---------------------------
FROM python:3.11-slim AS build
ARG VARIANT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Pinned dependencies first (a cached layer), then the app itself without re-resolving.
COPY requirements/${VARIANT}.lock ./requirements.lock
RUN pip install --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
# The installer is not needed at run time: one less tool in a network-facing image.
RUN pip install --no-deps . \
    && pip uninstall --yes pip

# ---- runtime: the venv, the code, an unprivileged user ---------------------------------------
FROM python:3.11-slim AS runtime
ARG VARIANT
LABEL org.opencontainers.image.title="species-id" \
      org.opencontainers.image.description="Species identification service (${VARIANT})"
ENV SPECIES_ID_VARIANT=${VARIANT}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SERVER_HOST=0.0.0.0 \
    MODELS_MANIFEST=/srv/volumes/models/models.toml \
    GBIF_CACHE_PATH=/srv/cache/gbif.sqlite
# ./volumes is mounted read-only; the GBIF answer cache needs a writable place of its own.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /srv --shell /usr/sbin/nologin app \
    && mkdir -p /srv/cache && chown 10001:10001 /srv/cache
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY --chown=10001:10001 volumes/models/models.toml /srv/volumes/models/models.toml
USER 10001:10001
VOLUME ["/srv/cache"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SERVER_PORT', os.environ.get('PORT', '8000'))}/health/ready\", timeout=4)"]
CMD ["python", "-m", "app", "serve"]
