# memwarden: the agent image (one per node: charts/memwarden runs it as a DaemonSet).
#
#   docker build -t memwarden:0.1.0 --build-arg VERSION=0.1.0 .
#
# Two stages: the official Swift image builds with the same script CI runs
# (scripts/build-release: release, static Swift runtime, stripped); the runtime
# stage is Debian slim with only the shared libraries that binary links
# (ldd: libbpf, libelf, zlib, libsystemd, glibc). tests/packaging checks that
# list against the binary CI builds.

# The toolchain the project is built and tested with (swift --version in CI).
FROM swift:6.3.1-bookworm AS build

# Build-time C libraries: libbpf (loader), libelf + zlib (libbpf's), libsystemd
# (sd_notify); pkg-config finds them for the system-library targets.
# Versions are not pinned: these come from the same Debian release as the
# runtime stage and should take its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libbpf-dev libelf-dev zlib1g-dev libsystemd-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# the BPF object is compiled here too, by the toolchain's own clang (build-tool plugin)
RUN scripts/build-release /out/memwarden

FROM debian:bookworm-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="memwarden" \
      org.opencontainers.image.description="eBPF memory-growth agent for Linux and Kubernetes nodes: leak detection, budgets, graduated responses" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0 AND (LGPL-2.1-only OR BSD-2-Clause)" \
      org.opencontainers.image.source="https://github.com/memwarden/memwarden" \
      org.opencontainers.image.documentation="https://github.com/memwarden/memwarden#readme" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# Exactly the shared libraries of the binary (tests/packaging/test_dockerfile.py
# compares this line with `ldd` of the release build), and CA certificates for
# HTTPS webhooks. Unpinned for the same reason as above.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g libsystemd0 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/memwarden /usr/local/bin/memwarden

# Runs as uid 0 on purpose: Kubernetes grants added capabilities (BPF, PERFMON)
# only to root in the container; the chart drops every other capability and
# mounts the root filesystem read-only.
EXPOSE 9808
ENTRYPOINT ["/usr/local/bin/memwarden"]
CMD ["run"]
