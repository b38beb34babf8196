# connect-usage in two stages: a build (its dependencies cached in their own layer), then a
# small runtime image running as a non-root user.
# Configured by environment variables only (README.md, "Deploying against Connect").

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to the code does not rebuild them.
# The image's binary has no sandbox (`--no-default-features`): `run`, `report` and `describe`,
# less code in production.
COPY Cargo.toml Cargo.lock ./
COPY crates/connect-client/Cargo.toml crates/connect-client/
COPY crates/connect-eaas/Cargo.toml crates/connect-eaas/
COPY crates/connect-sandbox/Cargo.toml crates/connect-sandbox/
RUN for c in connect-client connect-eaas connect-sandbox; do \
        mkdir -p crates/$c/src && touch crates/$c/src/lib.rs; done \
    && mkdir src examples && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for e in report_bench runner_bench source_bench; do \
        echo 'fn main() {}' > examples/$e.rs; done \
    && cargo build --release --locked --no-default-features \
    && rm -rf src examples crates/*/src target/release/.fingerprint/connect-* \
       target/release/deps/*connect_usage* target/release/deps/*connect_client* \
       target/release/deps/*connect_eaas* target/release/deps/*connect_sandbox*
COPY extension.json ./
COPY crates ./crates
COPY src ./src
# Declared in Cargo.toml (the benchmarks, built only with the sandbox), so they must be there.
COPY examples ./examples
RUN cargo build --release --locked --no-default-features && strip target/release/connect-usage

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home connect-usage \
    && mkdir /work && chown 10001 /work
COPY --from=build /src/target/release/connect-usage /usr/local/bin/connect-usage
USER 10001
# Logs as JSON lines, for log collectors; LOG_FORMAT=text for people.
ENV LOG_FORMAT=json
# A month's work files go to WORK_DIR (/tmp unless set): about 200 bytes a record, so for
# months of millions of records give them a volume (-v cu-work:/work -e WORK_DIR=/work; /work
# belongs to the extension's user, and a new named volume takes that over).
# /metrics (Prometheus), /healthz and /readyz for the orchestrator's probes (README,
# "Monitoring"); unset METRICS_ADDRESS to turn the listener off.
ENV METRICS_ADDRESS=0.0.0.0:9102
EXPOSE 9102
# tini forwards SIGTERM to the runner (clean shutdown: running tasks finish, results are
# delivered) and reaps zombies.
ENTRYPOINT ["tini", "--", "connect-usage", "run"]
# Other commands: docker run --entrypoint connect-usage IMAGE report --help (the demo and the
# sandbox are in a default build: cargo run -- demo)
