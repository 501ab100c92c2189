# Builds the crate and runs its tests against a memcached container (see compose.yaml):
#   docker compose run --rm tests
FROM rust:1-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmemcached-dev pkg-config libclang-dev clang memcached \
 && rm -rf /var/lib/apt/lists/*
RUN rustup component add rustfmt clippy
WORKDIR /src
COPY . .
RUN cargo build --workspace --all-targets
CMD ["scripts/test"]
