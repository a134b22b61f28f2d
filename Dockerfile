# foreman: a queued, observable front for one Ollama server.
#
#   docker build -t foreman .
#   docker run -d --name foreman -p 8080:8080 -v foreman-data:/data \
#       -e FOREMAN_OLLAMA_URL=http://mac.tail:11434 foreman
#
# FOREMAN_OLLAMA_URL is required and has no default: without it `foreman serve` exits 2 with one
# line naming the key. For an Ollama on the Docker host itself, add
# `--add-host=host.docker.internal:host-gateway -e FOREMAN_OLLAMA_URL=http://host.docker.internal:11434`.
# Every other setting is an `-e FOREMAN_<KEY>=...` too (README "Settings"), e.g. FOREMAN_TOKEN.
# The database lives in the /data volume; `docker stop` (SIGTERM) stops foreman gracefully within
# Docker's default 10 s (docs/adr/0015), and queued jobs survive in /data.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FOREMAN_LISTEN=0.0.0.0:8080 \
    FOREMAN_DB_PATH=/data/foreman.db

WORKDIR /src
COPY setup.py README.md ./
COPY foreman/ foreman/
COPY statemachine/ statemachine/

# The README's install (`pip install -e .`) without the editable flag; the user and its /data in
# the same layer.
RUN pip install --no-cache-dir . \
    && useradd --system --user-group --uid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin foreman \
    && mkdir -p /data \
    && chown foreman:foreman /data

USER foreman
WORKDIR /data
VOLUME /data
EXPOSE 8080

# Alive = /healthz answers 200, on the port of FOREMAN_LISTEN (no curl in the image). A degraded
# foreman (target asleep or unreachable) is still healthy: restarting it would not wake the target.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; port = os.environ.get('FOREMAN_LISTEN', ':8080').rpartition(':')[2]; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:' + port + '/healthz', timeout=4)"]

CMD ["foreman", "serve"]
