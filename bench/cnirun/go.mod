// The CNI latency bench's in-node driver; see main.go, bench/cni.ts and hack/build-tools.sh.
module wiremesh.dev/bench/cnirun

go 1.24
