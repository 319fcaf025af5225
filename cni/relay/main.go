// Command wiremesh is the CNI plugin binary the container runtime runs from
// /opt/cni/bin, once per pod operation. It is a relay, not a plugin: it sends its
// CNI_* environment and its stdin to the wiremesh agent on this node over a unix
// socket, writes the agent's answer to stdout and exits with the agent's code.
// Every piece of CNI logic (parsing, validation, IPAM, netns and veth work) lives
// in the agent, in TypeScript (cni/ in the repository).
//
// Why a relay: the runtime waits for this process on every pod start and stop, and
// the host may have no Node.js. Measured on the project's machines, a Node.js
// process takes about 21 ms just to start and exit, while the reference bridge +
// host-local plugins do a whole ADD in about 9 ms; the agent is already running.
// So this file stays small, static (CGO_ENABLED=0) and standard-library only.
//
// Protocol: POST http://wiremesh/cni {"env": {"CNI_COMMAND": ...}, "stdin": "..."}
// and the agent answers 200 {"code": <exit code>, "stdout": "..."}. When the agent
// cannot be reached or answers anything else, the relay prints a CNI error with
// code 11 (try again later) and exits 1; the runtime retries pod set-up later.
//
// An agent that is starting (its socket missing or refusing: a node that just
// booted, an agent being upgraded) is waited for, up to WIREMESH_CNI_CONNECT_WAIT:
// a kubelet whose DEL or ADD fails backs off for ten seconds and more, and after a
// reboot a failed DEL of a dead sandbox holds the pod's next sandbox back.
//
// Environment: WIREMESH_CNI_SOCKET (default /run/wiremesh/cni.sock),
// WIREMESH_CNI_TIMEOUT in seconds (default 60) for the agent's answer, and
// WIREMESH_CNI_CONNECT_WAIT in seconds (default 20) for an agent that is starting.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const maxStdin = 1 << 20 // a network config is a few KiB; refuse anything absurd

type request struct {
	Env   map[string]string `json:"env"`
	Stdin string            `json:"stdin"`
}

type reply struct {
	Code   *int    `json:"code"`
	Stdout *string `json:"stdout"`
}

func main() {
	stdin, err := io.ReadAll(io.LimitReader(os.Stdin, maxStdin+1))
	if err == nil && len(stdin) > maxStdin {
		err = fmt.Errorf("network config on stdin is larger than %d bytes", maxStdin)
	}
	if err != nil {
		fail(stdin, 5, "cannot read the network config", err.Error())
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
			env[k] = v
		}
	}
	socket := os.Getenv("WIREMESH_CNI_SOCKET")
	if socket == "" {
		socket = "/run/wiremesh/cni.sock"
	}
	timeout := seconds("WIREMESH_CNI_TIMEOUT", 60*time.Second, false)
	wait := seconds("WIREMESH_CNI_CONNECT_WAIT", 20*time.Second, true)
	waitForAgent(socket, wait)
	r, err := relay(socket, timeout, request{Env: env, Stdin: string(stdin)})
	if err != nil {
		fail(stdin, 11, "wiremesh agent not reachable", err.Error())
	}
	os.Stdout.WriteString(*r.Stdout)
	os.Exit(*r.Code)
}

// seconds reads a duration in seconds from the environment (zero allowed when
// zeroOK), or gives def with a note on stderr when it does not parse.
func seconds(name string, def time.Duration, zeroOK bool) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs < 0 || (secs == 0 && !zeroOK) {
		fmt.Fprintf(os.Stderr, "wiremesh: ignoring %s=%q (not a valid number of seconds)\n", name, s)
		return def
	}
	return time.Duration(secs * float64(time.Second))
}

// waitForAgent returns once the socket accepts a connection, or when it fails for
// another reason than an agent not (yet) listening, or after wait: the request
// that follows then fails with the reason.
func waitForAgent(socket string, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		conn, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		starting := errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
		left := time.Until(deadline)
		if !starting || left <= 0 {
			return
		}
		time.Sleep(min(left, 200*time.Millisecond))
	}
}

// relay makes the one request to the agent and checks the reply's shape.
func relay(socket string, timeout time.Duration, req request) (*reply, error) {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			},
		},
	}
	body, _ := json.Marshal(req) // a map of strings and a string always marshal
	res, err := client.Post("http://wiremesh/cni", "application/json", bytes.NewReader(body))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return nil, fmt.Errorf("no answer from %s within %s", socket, timeout)
			}
			err = ue.Err // "dial unix /run/wiremesh/cni.sock: connect: ..."
		}
		return nil, err
	}
	defer res.Body.Close()
	text, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the reply from %s: %w", socket, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered HTTP %d: %.200s", socket, res.StatusCode, text)
	}
	var r reply
	if err := json.Unmarshal(text, &r); err != nil || r.Code == nil || r.Stdout == nil || *r.Code < 0 || *r.Code > 255 {
		return nil, fmt.Errorf("malformed reply from %s: %.200s", socket, text)
	}
	return &r, nil
}

// fail prints a CNI error result (errors go to stdout, per the spec) and exits 1.
func fail(stdin []byte, code int, msg, details string) {
	var conf struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(stdin, &conf) != nil || conf.CNIVersion == "" {
		conf.CNIVersion = "1.1.0"
	}
	out, _ := json.Marshal(struct {
		CNIVersion string `json:"cniVersion"`
		Code       int    `json:"code"`
		Msg        string `json:"msg"`
		Details    string `json:"details"`
	}{conf.CNIVersion, code, msg, details})
	os.Stdout.Write(append(out, '\n'))
	os.Exit(1)
}
