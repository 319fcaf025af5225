// Command pause is the pod sandbox process of the lab's pause image (the image
// kubeadm names as registry.k8s.io/pause, built by hack/build-images.sh because
// there is no registry to pull it from). It does what the upstream C program
// does: as PID 1 of a pod's PID namespace it holds the namespaces open, reaps any
// orphan re-parented to it (so zombies never pile up when a pod shares its PID
// namespace), and exits 0 on SIGINT or SIGTERM so a sandbox stops at once.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("pause (wiremesh lab, Go)")
		return
	}
	if os.Getpid() != 1 {
		// Upstream warns too: outside PID 1 reaping does nothing useful, but the
		// program still serves as a sandbox holder (tests run it this way).
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, orphans are not re-parented here")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
		os.Exit(0)
	}
}

// reap collects every exited child without blocking. Signals coalesce, so one
// SIGCHLD may stand for several exits: loop until none is left.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
