// Command wiremesh-prober is the traffic end of the network-policy suites
// (kind-tests/netpol): a server that runs in every test pod and a client that
// probes many targets at once, for TCP, UDP and SCTP.
//
//	wiremesh-prober serve --ports 80,81 [--id x/a]
//	wiremesh-prober probe [--timeout 1s] < targets.json > results.json
//
// serve answers on every port: a TCP connection gets one line with the server's
// id, a UDP datagram is echoed with the id appended, and an SCTP INIT gets an
// INIT-ACK whose State Cookie is the id (see sctp.go: SCTP goes through raw IP
// sockets because the test machines have no SCTP module). It prints one line
// "serving ..." once every listener is up.
//
// probe reads a JSON list of targets [{"proto":"TCP","ip":"100.64.0.5","port":80}]
// and probes all of them concurrently, each within the timeout; it prints a JSON
// list of results in the same order: {"proto","ip","port","result","answer","ms",
// "detail"}, where result is "reachable" (the server answered; answer is its id),
// "timeout" (no answer: dropped), "refused" (a TCP reset, an ICMP unreachable or
// an SCTP ABORT) or "error".
//
// Standard library only and built with CGO_ENABLED=0 (hack/build-tools.sh), so one
// static binary runs in any pod or node namespace.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCommand(os.Args[2:])
	case "probe":
		err = probeCommand(os.Args[2:], os.Stdin, os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wiremesh-prober %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: wiremesh-prober serve --ports 80,81 [--id NAME]\n"+
		"       wiremesh-prober probe [--timeout 1s] < targets.json")
	os.Exit(2)
}
