# Consilium services image: one image, four services (`consilium serve <service>`).
#   docker build -t consilium:dev .
#   docker run --rm consilium:dev serve submission
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall numpy & co.
# Empty stand-in packages are enough for pip to resolve and install the dependencies.
COPY pyproject.toml README.md ./
RUN mkdir -p shared services \
 && touch shared/__init__.py services/__init__.py \
 && pip install . \
 && rm -rf shared services build *.egg-info

# The code itself (with its SQL migrations and JSON schemas as package data).
COPY shared ./shared
COPY services ./services
RUN pip install --no-deps --force-reinstall . \
 && rm -rf build *.egg-info

# Never run as root; the services need no privileges and no writable files in /app.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin consilium
USER consilium

# Inside a container the HTTP endpoints (health, readiness, metrics) must listen on all
# interfaces; compose still publishes them on the host's 127.0.0.1 only.
ENV CONSILIUM_ASSIGNMENT_HTTP_HOST=0.0.0.0 \
    CONSILIUM_SUBMISSION_HTTP_HOST=0.0.0.0 \
    CONSILIUM_CONSENSUS_HTTP_HOST=0.0.0.0 \
    CONSILIUM_EXPORT_HTTP_HOST=0.0.0.0

EXPOSE 8081 8082 8083 8084
ENTRYPOINT ["consilium"]
CMD ["--help"]
