// The prober of the network-policy suites; see main.go and hack/build-tools.sh.
module wiremesh.dev/kind-tests/prober

go 1.24
