# One image for the three services; docker-compose picks the binary with `command`.
# Build stage: rdkafka builds its bundled librdkafka (Debian's is too old for current brokers).
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p reftrack-ingest -p reftrack-aggregator -p reftrack-api \
 && mkdir -p /out \
 && cp target/release/ingest target/release/aggregator target/release/api /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/reftrack --create-home reftrack
COPY --from=build /out/ /usr/local/bin/
USER reftrack
WORKDIR /var/lib/reftrack
ENV REFTRACK_ENV=production LOG_FORMAT=json
