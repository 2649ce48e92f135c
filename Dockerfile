# One image for the three services; docker-compose picks the binary with `command`.
# Build stage: rdkafka builds its bundled librdkafka (Debian's is too old for current brokers),
# linked to OpenSSL for Kafka's TLS and SASL.
FROM rust:1.95-trixie AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p reftrack-ingest -p reftrack-aggregator -p reftrack-api \
 && mkdir -p /out \
 && cp target/release/ingest target/release/aggregator target/release/api /out/

FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3t64 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/reftrack --create-home reftrack \
 && install -d -o reftrack -g reftrack -m 0750 /var/lib/reftrack/spill
COPY --from=build /out/ /usr/local/bin/
USER reftrack
WORKDIR /var/lib/reftrack
# The spill folder belongs to the service user, so that a volume mounted on it (empty
# volumes take the image folder's owner) is writable by ingest.
ENV REFTRACK_ENV=production LOG_FORMAT=json SPILL_DIR=/var/lib/reftrack/spill
