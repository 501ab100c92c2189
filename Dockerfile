# Builds the crate and runs its tests against a memcached container (see compose.yaml):
#   docker compose run --rm tests
FROM rust:1-bookworm
WORKDIR /src
# The same system packages as a bare machine gets: libmemcached, libclang, memcached, SASL
# tools, nutcracker (twemproxy), openssl for TLS test certificates, and pylibmc for the
# cross-language tests.
COPY scripts/setup scripts/setup
RUN scripts/setup && rm -rf /var/lib/apt/lists/*
RUN rustup component add rustfmt clippy
COPY . .
RUN cargo build --workspace --all-targets --all-features
CMD ["scripts/test"]
