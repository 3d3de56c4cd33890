# The Atlilith app image: `docker build -t atlilith:<version> .` (see `./run build`).
# Two stages: build the wheel with its dependencies, then a slim runtime as a non-root user.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/atlilith
COPY pyproject.toml README.md ./
COPY core ./core
COPY servers ./servers
COPY tools ./tools
COPY migrations ./migrations
COPY benchmarks ./benchmarks
RUN /opt/atlilith/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:3.11.14-slim-bookworm
# pg_dump/pg_restore matching the compose PostgreSQL (15) for `atlilith backup` in the container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/atlilith --create-home atlilith
COPY --from=build /opt/atlilith /opt/atlilith
# Files the code finds next to its installed packages: skills (served over MCP), and the
# deployments and port registry (`atlilith deploy <domain> --check` inside the container).
COPY skills /opt/atlilith/lib/python3.11/site-packages/skills
COPY deployments /opt/atlilith/lib/python3.11/site-packages/deployments
COPY infrastructure/ports.yaml /opt/atlilith/lib/python3.11/site-packages/infrastructure/ports.yaml
ENV PATH=/opt/atlilith/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATLILITH_ENV=production \
    ATLILITH_HOST=0.0.0.0 \
    ATLILITH_DATA_DIR=/var/lib/atlilith \
    ATLILITH_BACKUP_DIR=/var/lib/atlilith/backups \
    ATLILITH_LOG_FORMAT=json
USER atlilith
WORKDIR /var/lib/atlilith
EXPOSE 3040
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ATLILITH_PORT', '3040') + '/health', timeout=4)"
# Migrations are idempotent and run as the owner role; then the server runs as the app role.
CMD ["sh", "-c", "atlilith migrate && exec atlilith serve"]
