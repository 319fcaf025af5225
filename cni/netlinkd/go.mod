// The netlink worker the agent runs beside itself; see main.go and hack/build-tools.sh.
module wiremesh.dev/cni/netlinkd

go 1.24

require (
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.35.0
)
