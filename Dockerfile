# connect-usage: build in one stage, run from a small image as a non-root user.
# Configuration comes from environment variables only (see README.md).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a code change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/.fingerprint/connect-usage-*
COPY src ./src
COPY extension.json ./
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home connect-usage
COPY --from=build /src/target/release/connect-usage /usr/local/bin/connect-usage
USER connect-usage
ENTRYPOINT ["connect-usage"]
# The extension, configured by API_KEY, ENVIRONMENT_ID, SERVER_ADDRESS... (see README.md).
# `docker run IMAGE sandbox --listen 0.0.0.0:8080` serves the sandbox instead.
CMD ["run"]
