# Decapod gateway image: a virtualenv built in one stage, copied onto a clean base in the next.
#
#   docker build -t decapod .                                (base: python:3.11-slim)
#   docker build --build-arg BASE=IMAGE -t decapod .         (any Debian-based image with
#                                                            python3 >= 3.11 and its venv module)
#
# compose.yaml runs it with the settings the sandbox needs; docs/install.md explains each.
# The gateway runs as uid 10001, keeps everything in the /data volume, and runs chat commands
# in bubblewrap inside the container: no Docker socket is mounted.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/decapod
COPY pyproject.toml README.md LICENSE /src/
COPY bot /src/bot
COPY channels /src/channels
# EXTRAS=all: every channel, Anthropic, local embeddings, the scheduler (see pyproject.toml)
ARG EXTRAS=all
# then the table of the code a start generates (dataclass methods, string annotations), as
# pip compiles the modules: the running gateway does not write beside its modules
RUN /opt/decapod/bin/pip install "/src[${EXTRAS}]" \
    && /opt/decapod/bin/decapod --version \
    && /opt/decapod/bin/python -P -m bot.code_cache

FROM ${BASE}
# bubblewrap: the exec sandbox; the CA store: TLS to the platforms (a base image that has
# both already skips apt)
RUN if ! command -v bwrap >/dev/null || [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            bubblewrap ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 decapod \
    && useradd --system --uid 10001 --gid decapod --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin decapod \
    && install -d -m 0700 -o decapod -g decapod /data
COPY --from=build /opt/decapod /opt/decapod
# DECAPOD_HTTP__HOST: listen on the container's own interface, so that a published port
# reaches /health and webhooks; compose.yaml publishes it on the host's 127.0.0.1 only.
ENV PATH=/opt/decapod/bin:$PATH \
    DECAPOD_HOME=/data \
    DECAPOD_HTTP__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER decapod
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
ENTRYPOINT ["decapod"]
CMD ["run"]
