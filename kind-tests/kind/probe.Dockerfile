# The probe image of the kind suites (kind-tests/kind-driver.ts): the tools the
# suites run in pods and, from a privileged host-network pod, on nodes, and the
# network-policy suite's wiremesh-prober (kind-tests/prober, standard library only).
# Build context: kind-tests/ (run.sh: docker build -f kind/probe.Dockerfile kind-tests).
# hack/build-images.sh assembles the same image for the lab without Docker; keep
# the two describing the same tools.
FROM golang:1.24-bookworm AS prober
WORKDIR /src
COPY prober/ ./
RUN CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/wiremesh-prober .

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iputils-ping iproute2 curl iperf3 tcpdump \
      socat util-linux nftables wireguard-tools procps ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=prober /out/wiremesh-prober /usr/local/bin/wiremesh-prober
CMD ["sleep", "infinity"]
