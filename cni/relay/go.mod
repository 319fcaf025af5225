// The CNI relay installed as /opt/cni/bin/wiremesh; see main.go and hack/build-tools.sh.
module wiremesh.dev/cni/relay

go 1.24
