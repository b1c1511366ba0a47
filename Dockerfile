# syntax=docker/dockerfile:1
# chat-server image: built with cargo in the Rust image, run in slim Debian as a non-root
# user. The web client (web/app, web/sdk) and the migrations are compiled into the binary,
# so the runtime stage needs nothing but the binary.
#   docker build -t chat-server .
#   docker run -p 8080:8080 -v chat-data:/var/lib/chat-server chat-server   # embedded mode

# The toolchain the repository is tested with (Cargo.toml's rust-version is the minimum).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is copied
# out of the cached target directory, which the next stage cannot see.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p server --bin chat-server \
    && cp target/release/chat-server /usr/local/bin/chat-server

FROM debian:bookworm-slim
# curl for the health checks (compose, orchestrators); ca-certificates for TLS to others.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/chat-server \
       --create-home --shell /usr/sbin/nologin chat \
    && mkdir -p /etc/chat-server
COPY --from=build /usr/local/bin/chat-server /usr/local/bin/chat-server
# Every key has a built-in default; files in /etc/chat-server (default.toml, local.toml)
# and CHAT_SECTION__KEY variables override them.
ENV CHAT_CONFIG_DIR=/etc/chat-server \
    CHAT_HTTP__ADDR=0.0.0.0:8080 \
    CHAT_DATA__DIR=/var/lib/chat-server \
    CHAT_LOG__FORMAT=json
USER chat:chat
WORKDIR /var/lib/chat-server
VOLUME ["/var/lib/chat-server"]
EXPOSE 8080
# SIGTERM drains (readiness 503, sockets closed 1001): give it time, e.g. docker stop -t 60.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chat-server"]
CMD ["serve"]
