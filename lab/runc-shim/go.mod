// Test-environment-only runc wrapper for the lab's containerd; see main.go.
module wiremesh.dev/lab/runc-shim

go 1.24
