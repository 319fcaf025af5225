# The probe image of the kind suites (kind-tests/kind-driver.ts): the tools the
# suites run in pods and, through nsenter from a privileged host-network pod, on nodes.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iputils-ping iproute2 curl iperf3 tcpdump \
      socat util-linux nftables wireguard-tools procps ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["sleep", "infinity"]
