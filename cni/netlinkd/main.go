// Command wiremesh-netlinkd is the agent's long-lived netlink worker: it wires and
// unwires pods' veth pairs (links, addresses, routes, the static gateway neighbour,
// the host end's sysctls) so that a CNI ADD or DEL costs no process start. The agent
// (cni/netlinkd.ts) starts it, supervises it and restarts it when it dies.
//
// Protocol: one JSON object per line. Requests on stdin carry an "id" and an "op"
// (setup, teardown, inspect, exec: exec.go); each reply on stdout carries the same "id" and either
// the op's result or "error". Requests run concurrently; replies come in completion
// order. The first line the worker writes is {"ready":true,"protocol":1}. When stdin
// closes, the worker finishes what is in flight and exits.
//
// Namespaces: the worker's own network namespace is the host's (it is started in
// the agent's). Every netlink call opens its own socket in the calling thread's
// namespace (the package-level functions of vishvananda/netlink): a shared handle
// would hold one socket under a mutex and serialise all requests, and a veth's
// deletion waits tens of milliseconds for RCU, which concurrent deletions share
// only when they reach the kernel together. Pod-side work runs on a goroutine that locks its OS thread, enters the pod's
// namespace with setns and never leaves it: the goroutine ends locked, so the Go
// runtime destroys that thread and no other goroutine can ever run in the pod's
// namespace. Sysctls are written under /proc/sys by threads in the host namespace.
//
// Built statically (CGO_ENABLED=0) by hack/build-tools.sh, like the CNI relay.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const protocolVersion = 2

// podRouteProtocol marks the host routes to pods (cni/podnet.ts POD_ROUTE_PROTOCOL).
const podRouteProtocol = 252

var podGateway = net.IPv4(169, 254, 1, 1)

// podGateway6 is the pods' IPv6 next hop, held by every host end (cni/podnet.ts
// POD_GATEWAY_V6): link-local, so the same address on every veth is fine.
var podGateway6 = net.ParseIP("fe80::1")

// The main goroutine keeps the main thread for itself. A goroutine that ends while
// locked gets its thread destroyed, except the main thread, which Go parks for good
// instead: had a pod's goroutine run there, the process's main thread would stay in
// that pod's namespace (keeping it alive, and shown as the worker's namespace).
func init() {
	runtime.LockOSThread()
}

type request struct {
	ID        uint64   `json:"id"`
	Op        string   `json:"op"`
	Netns     string   `json:"netns"`
	HostIf    string   `json:"hostIf"`
	PodIf     string   `json:"podIf"`
	Addresses []string `json:"addresses"`
	MTU       int      `json:"mtu"`
	Owner     *string  `json:"owner"`
	HostMac   string   `json:"hostMac"`
	PodMac    string   `json:"podMac"`
	// exec
	Argv  []string `json:"argv"`
	Env   []string `json:"env"`
	Dir   string   `json:"dir"`
	Input string   `json:"input"`
	// Binary input, base64 (JSON strings carry text only).
	InputBase64 string `json:"inputBase64"`
	TimeoutMs   int    `json:"timeoutMs"`
}

// facts is what inspect reports; the agent decides what is wrong (podNetProblems).
type facts struct {
	HostLink    bool     `json:"hostLink"`
	Netns       bool     `json:"netns"`
	PodLink     bool     `json:"podLink"`
	PodAddrs    []string `json:"podAddrs"`
	HostRoutes  []string `json:"hostRoutes"`
	PodGateway4 string   `json:"podGateway4"`
	PodGateway6 string   `json:"podGateway6"`
}

type reply struct {
	ID      uint64      `json:"id"`
	Error   string      `json:"error,omitempty"`
	Removed *bool       `json:"removed,omitempty"`
	Facts   *facts      `json:"facts,omitempty"`
	Started *int        `json:"started,omitempty"`
	Exit    *execResult `json:"exit,omitempty"`
}

func main() {
	// Die with the agent even if our stdin is somehow kept open elsewhere.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0)
	if _, err := netlink.LinkByName("lo"); err != nil {
		fmt.Fprintf(os.Stderr, "wiremesh-netlinkd: netlink does not answer: %v\n", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	var mu sync.Mutex
	write := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		if err := out.Encode(v); err != nil {
			os.Exit(1) // the agent is gone
		}
	}
	write(map[string]any{"ready": true, "protocol": protocolVersion})

	// No line limit: an exec's input (an nft transaction) can run to megabytes.
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	var inflight sync.WaitGroup
	for {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var req request
			if jerr := json.Unmarshal(line, &req); jerr != nil {
				fmt.Fprintf(os.Stderr, "wiremesh-netlinkd: malformed request: %v\n", jerr)
			} else {
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					if req.Op == "exec" {
						write(runExec(req, write))
					} else {
						write(serve(req))
					}
				}()
			}
		}
		if err != nil {
			break
		}
	}
	inflight.Wait()
}

func serve(req request) (r reply) {
	r.ID = req.ID
	defer func() {
		if p := recover(); p != nil {
			r.Error = fmt.Sprintf("netlink worker panic: %v", p)
		}
	}()
	var err error
	switch req.Op {
	case "setup":
		err = setup(req)
	case "teardown":
		var removed bool
		removed, err = teardown(req.HostIf, req.Owner)
		r.Removed = &removed
	case "inspect":
		r.Facts, err = inspect(req)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func openNetns(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ns, fmt.Errorf("network namespace %s does not exist", path)
		}
		return ns, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	return ns, nil
}

// inNetns runs fn on a fresh OS thread inside ns. The thread is never handed back
// to the scheduler (see the file comment).
func inNetns(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("entering the pod's network namespace: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

func hostPrefix(ip net.IP) int {
	if ip.To4() != nil {
		return 32
	}
	return 128
}

func parseAddresses(addrs []string) ([]net.IP, error) {
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("not an IP address: %q", a)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

func setup(req request) error {
	ips, err := parseAddresses(req.Addresses)
	if err != nil {
		return err
	}
	hostMac, err := net.ParseMAC(req.HostMac)
	if err != nil {
		return fmt.Errorf("host MAC: %w", err)
	}
	podMac, err := net.ParseMAC(req.PodMac)
	if err != nil {
		return fmt.Errorf("pod MAC: %w", err)
	}
	ns, err := openNetns(req.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()

	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         req.HostIf,
			HardwareAddr: hostMac,
			MTU:          req.MTU,
			Flags:        net.FlagUp,
			TxQLen:       -1,
		},
		PeerName:         req.PodIf,
		PeerHardwareAddr: podMac,
		PeerNamespace:    netlink.NsFd(int(ns)),
		PeerTxQLen:       -1,
	}
	if err := netlink.LinkAdd(veth); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating veth %s: %w", req.HostIf, err)
		}
		// A retried ADD finds the pair of an earlier, interrupted attempt: start clean, once.
		// A pair recorded for another attachment is never taken over: this ADD fails.
		if _, err := teardown(req.HostIf, req.Owner); err != nil {
			return err
		}
		if err := netlink.LinkAdd(veth); err != nil {
			if errors.Is(err, unix.EEXIST) {
				if other, lerr := netlink.LinkByName(req.HostIf); lerr == nil {
					return fmt.Errorf("creating veth %s: it exists for attachment %q", req.HostIf, other.Attrs().Alias)
				}
			}
			return fmt.Errorf("creating veth %s: %w", req.HostIf, err)
		}
	}
	link, err := netlink.LinkByName(req.HostIf)
	if err != nil {
		return fmt.Errorf("finding veth %s: %w", req.HostIf, err)
	}
	if req.Owner != nil && *req.Owner != "" {
		if err := netlink.LinkSetAlias(link, *req.Owner); err != nil {
			return fmt.Errorf("recording the owner of %s: %w", req.HostIf, err)
		}
	}
	for _, ip := range ips {
		route := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &net.IPNet{IP: ip, Mask: net.CIDRMask(hostPrefix(ip), 8*len(ipBytes(ip)))},
			Scope:     netlink.SCOPE_LINK,
			Protocol:  podRouteProtocol,
		}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("host route to %s: %w", ip, err)
		}
	}
	sysctls := map[string]string{
		"net/ipv4/conf/" + req.HostIf + "/proxy_arp":    "1",
		"net/ipv4/neigh/" + req.HostIf + "/proxy_delay": "0",
		"net/ipv4/conf/" + req.HostIf + "/forwarding":   "1",
	}
	if hasV6(ips) {
		if err := setupHostV6(link, ips, podMac); err != nil {
			return err
		}
		sysctls["net/ipv6/conf/all/forwarding"] = "1"
	}
	for key, value := range sysctls {
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(key, "/", "."), err)
		}
	}
	// The pod resolves its gateway to the host end's MAC statically, so nothing depends
	// on proxy ARP finding a route to 169.254.1.1 on the node.
	return inNetns(ns, func() error { return setupPod(req.PodIf, ips, hostMac) })
}

func hasV6(ips []net.IP) bool {
	for _, ip := range ips {
		if ip.To4() == nil {
			return true
		}
	}
	return false
}

// setupHostV6 gives the host end the pods' link-local gateway (nodad: usable at once)
// and a permanent neighbour for each of the pod's IPv6 addresses.
func setupHostV6(link netlink.Link, ips []net.IP, podMac net.HardwareAddr) error {
	gw := &netlink.Addr{
		IPNet: &net.IPNet{IP: podGateway6, Mask: net.CIDRMask(64, 128)},
		Flags: unix.IFA_F_NODAD,
		Scope: unix.RT_SCOPE_LINK,
	}
	if err := netlink.AddrReplace(link, gw); err != nil {
		return fmt.Errorf("gateway %s on %s: %w", podGateway6, link.Attrs().Name, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			continue
		}
		if err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex:    link.Attrs().Index,
			Family:       netlink.FAMILY_V6,
			State:        netlink.NUD_PERMANENT,
			IP:           ip,
			HardwareAddr: podMac,
		}); err != nil {
			return fmt.Errorf("neighbour %s on %s: %w", ip, link.Attrs().Name, err)
		}
	}
	return nil
}

func ipBytes(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// setupPod runs inside the pod's namespace: package-level netlink calls open their
// sockets in the calling thread's namespace.
func setupPod(podIf string, ips []net.IP, hostMac net.HardwareAddr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("pod loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("pod loopback up: %w", err)
	}
	link, err := netlink.LinkByName(podIf)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", podIf, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("pod interface %s up: %w", podIf, err)
	}
	idx := link.Attrs().Index
	for _, ip := range ips {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(hostPrefix(ip), 8*len(ipBytes(ip)))}}
		if ip.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
			if err := netlink.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("address %s on %s: %w", ip, podIf, err)
			}
			if err := netlink.NeighSet(&netlink.Neigh{
				LinkIndex:    idx,
				Family:       netlink.FAMILY_V6,
				State:        netlink.NUD_PERMANENT,
				IP:           podGateway6,
				HardwareAddr: hostMac,
			}); err != nil {
				return fmt.Errorf("gateway neighbour %s: %w", podGateway6, err)
			}
			def := &netlink.Route{LinkIndex: idx, Gw: podGateway6}
			if err := netlink.RouteAdd(def); err != nil {
				return fmt.Errorf("default route via %s: %w", podGateway6, err)
			}
			continue
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", ip, podIf, err)
		}
		gw := &netlink.Route{
			LinkIndex: idx,
			Dst:       &net.IPNet{IP: podGateway.To4(), Mask: net.CIDRMask(32, 32)},
			Scope:     netlink.SCOPE_LINK,
		}
		if err := netlink.RouteAdd(gw); err != nil {
			return fmt.Errorf("route to the gateway %s: %w", podGateway, err)
		}
		if err := netlink.NeighSet(&netlink.Neigh{
			LinkIndex:    idx,
			Family:       netlink.FAMILY_V4,
			State:        netlink.NUD_PERMANENT,
			IP:           podGateway,
			HardwareAddr: hostMac,
		}); err != nil {
			return fmt.Errorf("gateway neighbour %s: %w", podGateway, err)
		}
		def := &netlink.Route{LinkIndex: idx, Gw: podGateway.To4()}
		if err := netlink.RouteAdd(def); err != nil {
			return fmt.Errorf("default route via %s: %w", podGateway, err)
		}
	}
	return nil
}

// teardown deletes the host end (the pair and its routes go with it). With an owner,
// a link recorded for another attachment is left alone. A missing link is not an error.
func teardown(hostIf string, owner *string) (bool, error) {
	link, err := netlink.LinkByName(hostIf)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return false, nil
		}
		return false, fmt.Errorf("finding %s: %w", hostIf, err)
	}
	if owner != nil {
		if alias := link.Attrs().Alias; alias != "" && alias != *owner {
			return false, nil
		}
	}
	if err := netlink.LinkDel(link); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return false, nil
		}
		return false, fmt.Errorf("cannot delete %s: %w", hostIf, err)
	}
	return true, nil
}

func inspect(req request) (*facts, error) {
	f := &facts{PodAddrs: []string{}, HostRoutes: []string{}}
	link, err := netlink.LinkByName(req.HostIf)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return f, nil
		}
		return nil, fmt.Errorf("finding %s: %w", req.HostIf, err)
	}
	f.HostLink = true
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("routes on %s: %w", req.HostIf, err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			f.HostRoutes = append(f.HostRoutes, r.Dst.IP.String())
		}
	}
	ns, err := netns.GetFromPath(req.Netns)
	if err != nil {
		return f, nil
	}
	defer ns.Close()
	f.Netns = true
	err = inNetns(ns, func() error {
		pod, err := netlink.LinkByName(req.PodIf)
		if err != nil {
			return nil
		}
		f.PodLink = true
		addrs, err := netlink.AddrList(pod, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("addresses on %s: %w", req.PodIf, err)
		}
		for _, a := range addrs {
			f.PodAddrs = append(f.PodAddrs, a.IP.String())
		}
		defaults, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
		if err != nil {
			return fmt.Errorf("default route in the pod: %w", err)
		}
		for _, r := range defaults {
			if r.Gw != nil {
				f.PodGateway4 = r.Gw.String()
				break
			}
		}
		defaults6, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
		if err != nil {
			return fmt.Errorf("IPv6 default route in the pod: %w", err)
		}
		for _, r := range defaults6 {
			if r.Gw != nil {
				f.PodGateway6 = r.Gw.String()
				break
			}
		}
		return nil
	})
	return f, err
}
