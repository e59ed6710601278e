# stash-webhook image: build with the same command CI runs, ship only the binary.
#   docker build -t stash-webhook:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Everything Cargo.toml refers to (benches and examples are declared there) and the example
# Functions that `serve --dev` embeds.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY examples examples
COPY manifests/examples manifests/examples
# The same build command as .ci/run.
RUN cargo build --release --locked --bin stash-webhook

# distroless/cc: glibc and libgcc for the Rust runtime, no shell, no package manager; "nonroot" is
# UID 65532, matching the Deployment's securityContext.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/stash-webhook /usr/local/bin/stash-webhook
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/stash-webhook"]
CMD ["serve"]
