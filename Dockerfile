# One image for both services: `userstats-ingest` or `userstats-query` as the command.
#
#   docker compose build            (or: docker build -t userstats:local .)
#
# PYTHON_IMAGE names the base image (default: the official python:3.11-slim). Behind a
# TLS-intercepting proxy, give pip the proxy's CA as the BuildKit secret `pip_ca`; pip trusts
# it during the install steps only, and it is never written into a layer:
#   PIP_CA_FILE=/path/to/proxy-ca.pem docker compose build
#   DOCKER_BUILDKIT=1 docker build --secret id=pip_ca,src=/path/to/proxy-ca.pem -t userstats:local .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY deploy/docker/pip-install /usr/local/bin/pip-install
# Dependencies first (named in pyproject.toml, pinned by requirements.lock), so that a code
# change does not download them again.
COPY pyproject.toml requirements.lock ./
RUN --mount=type=secret,id=pip_ca,required=false \
    python3 -m venv /opt/userstats \
 && /opt/userstats/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/dependencies.txt \
 && pip-install -c requirements.lock -r /tmp/dependencies.txt \
 && rm /tmp/dependencies.txt
# Then the project: the whole build context as .dockerignore filters it, so the image follows
# pyproject.toml's package layout without naming package folders here.
COPY . .
RUN --mount=type=secret,id=pip_ca,required=false \
    pip-install -c requirements.lock . \
 && /opt/userstats/bin/pip uninstall --yes --disable-pip-version-check pip \
 && /opt/userstats/bin/userstats-ingest --version \
 && /opt/userstats/bin/userstats-query --version

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin userstats \
 && mkdir -p /data && chown userstats /data
COPY --from=build /opt/userstats /opt/userstats
ENV PATH=/opt/userstats/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    USERSTATS_DB_PATH=/data/userstats.duckdb
USER userstats
WORKDIR /data
EXPOSE 28282 28283
CMD ["userstats-query"]
