# One image for both services: `userstats-ingest` or `userstats-query` as the command.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY shared shared
COPY ingest ingest
COPY query query
COPY sim sim
COPY launcher launcher
RUN python -m venv /opt/userstats \
 && /opt/userstats/bin/pip install --no-cache-dir -c requirements.lock . \
 && /opt/userstats/bin/pip uninstall -y pip

FROM python:3.11-slim
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
