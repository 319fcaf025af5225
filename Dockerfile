# The wiremesh image: Node.js 24 on slim Debian with the tools the agent calls, and
# the Go-built pieces (the CNI relay, the agent's netlink worker, wireguard-go for
# kernels without WireGuard, and the reference portmap and bandwidth plugins the
# agent chains after its own). hack/build-images.sh assembles the same image for the
# lab without Docker; keep the two describing the same files.
FROM golang:1.24-bookworm AS go
WORKDIR /src
COPY hack/gotools/ hack/gotools/
COPY cni/relay/ cni/relay/
COPY cni/netlinkd/ cni/netlinkd/
RUN cd /src/hack/gotools && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/wireguard-go golang.zx2c4.com/wireguard \
 && for p in portmap bandwidth; do CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/cni/$p github.com/containernetworking/plugins/plugins/meta/$p || exit 1; done \
 && cd /src/cni/relay && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/wiremesh-cni . \
 && cd /src/cni/netlinkd && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/wiremesh-netlinkd .

FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-tools nftables iproute2 util-linux procps kmod tcpdump ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/wiremesh
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
COPY --from=go /out/wireguard-go /out/wiremesh-cni /out/wiremesh-netlinkd /usr/lib/wiremesh/
COPY --from=go /out/cni/ /usr/lib/wiremesh/cni/
RUN ln -s /opt/wiremesh/bin/wiremesh /usr/local/bin/wiremesh
ENTRYPOINT ["wiremesh"]
