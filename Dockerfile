# The leadgate enclave image for AWS Nitro Enclaves, built so that anyone can rebuild it from
# a commit and get the same bytes, and so the same PCR0:
#
#   scripts/build-eif --kms-key-arn arn:aws:kms:REGION:ACCOUNT:key/ID
#
# - the toolchain image is pinned by digest (rust 1.95.0, the version CI uses);
# - dependencies come only from Cargo.lock (--locked; crates are checked against its hashes);
# - the binary is static (glibc, +crt-static), stripped, one codegen unit, with the build
#   paths remapped, so it holds no path or time of the machine that built it;
# - every file in the final image gets the commit's time (SOURCE_DATE_EPOCH);
# - the final image is `scratch` plus that binary: no base image, no package manager.
#
# The KMS key ARN is part of the image (an environment variable the enclave reads), so PCR0
# names the key the enclave will unseal with; see README "Sealing with AWS KMS".

# rust:1.95.0-slim-bookworm, multi-platform index digest.
FROM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
ARG SOURCE_DATE_EPOCH=0
WORKDIR /leadgate
COPY . .
ENV CARGO_HOME=/cargo \
    CARGO_INCREMENTAL=0 \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=/leadgate=leadgate --remap-path-prefix=/cargo=cargo"
RUN cargo build --locked --release --target x86_64-unknown-linux-gnu \
        -p leadgate-enclave --bin leadgate-enclave \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/leadgate-enclave /out/leadgate-enclave \
 && mkdir -p /out/var/lib/leadgate \
 && find /out -exec touch -h -d "@${SOURCE_DATE_EPOCH}" {} +

FROM scratch
COPY --from=build /out/ /
ARG KMS_KEY_ARN
ENV LEADGATE_ATTESTATION=nsm \
    LEADGATE_SEALING=kms \
    LEADGATE_KMS_KEY_ARN=${KMS_KEY_ARN} \
    LEADGATE_KMS_PROXY=vsock://3:8000 \
    LEADGATE_ENCLAVE_LISTEN=vsock://4294967295:7000 \
    LEADGATE_ENCLAVE_STATE=/var/lib/leadgate
ENTRYPOINT ["/leadgate-enclave"]
