// Command wiremesh-cnirun is the cni-latency benchmark's driver inside a lab node
// (bench/cni.ts). It is started once, in the node's network and mount namespaces,
// and execs CNI plugin binaries itself, from goroutines, the way a container runtime
// does (libcni inside containerd: invoke.RawExec, one fork/exec per plugin of the
// network's list). So the figures it reports are what a runtime sees: no nsenter and
// no Node.js event loop sits between the clock and the plugin.
//
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout,
// in order (requests run one after another; the concurrency is inside a request).
// The first line written is {"ready":true}. Ops:
//   - "add": for each attachment, run the network's plugins in list order with
//     CNI_COMMAND=ADD, each getting the previous plugin's result as prevResult; the
//     reply carries the final result of each.
//   - "del": for each attachment, run the plugins in reverse order with
//     CNI_COMMAND=DEL and the attachment's cached result as prevResult.
//   - "exec": run argv `count` times (the floors: a trivial static binary, VERSION).
//
// Every op runs its items with `concurrency` in flight at once; all workers wait at
// one barrier so that a batch of 20 starts together. Each item is timed whole (the
// chain of plugins, from the first fork to the last exit), and each exec on its own.
// A plugin configuration is what libcni builds: the list's plugin entry with the
// list's "name" and "cniVersion" added, plus "prevResult" when there is one. The
// environment is the driver's own, minus any CNI_*, plus CNI_COMMAND,
// CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH.
//
// `wiremesh-cnirun true` exits at once: the trivial static binary of the floor.
//
// Built statically (CGO_ENABLED=0) by hack/build-tools.sh; standard library only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const callTimeout = 60 * time.Second

type conflist struct {
	CniVersion string                       `json:"cniVersion"`
	Name       string                       `json:"name"`
	Plugins    []map[string]json.RawMessage `json:"plugins"`
}

type network struct {
	// CNI_PATH: directories where plugins are found by their type.
	CniPath  string   `json:"cniPath"`
	Conflist conflist `json:"conflist"`
}

type attachment struct {
	ContainerID string `json:"containerID"`
	// Netns is the path of the pod's network namespace (CNI_NETNS).
	Netns  string          `json:"netns"`
	IfName string          `json:"ifname"`
	Args   string          `json:"args"`
	Result json.RawMessage `json:"result,omitempty"`
}

type request struct {
	ID          int               `json:"id"`
	Op          string            `json:"op"`
	Concurrency int               `json:"concurrency"`
	Network     *network          `json:"network,omitempty"`
	Attachments []attachment      `json:"attachments,omitempty"`
	Argv        []string          `json:"argv,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Stdin       string            `json:"stdin,omitempty"`
	Count       int               `json:"count,omitempty"`
}

type call struct {
	// Ms is the whole item: every exec of the chain, back to back.
	Ms     float64         `json:"ms"`
	Execs  []float64       `json:"execs"`
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

type reply struct {
	ID     int     `json:"id"`
	Calls  []call  `json:"calls,omitempty"`
	WallMs float64 `json:"wallMs"`
	Error  string  `json:"error,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "true" {
		os.Exit(0)
	}
	baseEnv := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_") {
			baseEnv = append(baseEnv, kv)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	write := func(v any) {
		b, _ := json.Marshal(v)
		out.Write(append(b, '\n'))
		out.Flush()
	}
	write(map[string]bool{"ready": true})
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			write(reply{Error: "bad request: " + err.Error()})
			continue
		}
		write(serve(&req, baseEnv))
	}
}

func serve(req *request, baseEnv []string) reply {
	var n int
	var item func(i int) call
	switch req.Op {
	case "add", "del":
		if req.Network == nil || len(req.Network.Conflist.Plugins) == 0 {
			return reply{ID: req.ID, Error: req.Op + " needs a network with plugins"}
		}
		n = len(req.Attachments)
		item = func(i int) call { return chain(req.Network, req.Op, &req.Attachments[i], baseEnv) }
	case "exec":
		if len(req.Argv) == 0 {
			return reply{ID: req.ID, Error: "exec needs argv"}
		}
		env := append([]string{}, baseEnv...)
		for k, v := range req.Env {
			env = append(env, k+"="+v)
		}
		n = req.Count
		item = func(int) call {
			_, ms, err := run(req.Argv, env, []byte(req.Stdin))
			c := call{Ms: ms, Execs: []float64{ms}, OK: err == nil}
			if err != nil {
				c.Error = err.Error()
			}
			return c
		}
	default:
		return reply{ID: req.ID, Error: "unknown op " + req.Op}
	}
	calls, wall := batch(n, req.Concurrency, item)
	return reply{ID: req.ID, Calls: calls, WallMs: wall}
}

// batch runs item(0..n-1) with `concurrency` workers that start together.
func batch(n, concurrency int, item func(int) call) ([]call, float64) {
	if concurrency < 1 {
		concurrency = 1
	}
	if concurrency > n {
		concurrency = n
	}
	calls := make([]call, n)
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(concurrency)
	done.Add(concurrency)
	for w := 0; w < concurrency; w++ {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			for i := range next {
				calls[i] = item(i)
			}
		}()
	}
	ready.Wait()
	start := time.Now()
	close(gate)
	done.Wait()
	return calls, ms(time.Since(start))
}

// chain runs one attachment's plugins for ADD (in order) or DEL (in reverse).
func chain(nw *network, op string, a *attachment, baseEnv []string) call {
	command := strings.ToUpper(op)
	ifname := a.IfName
	if ifname == "" {
		ifname = "eth0"
	}
	env := append(append([]string{}, baseEnv...),
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+a.ContainerID,
		"CNI_NETNS="+a.Netns,
		"CNI_IFNAME="+ifname,
		"CNI_ARGS="+a.Args,
		"CNI_PATH="+nw.CniPath,
	)
	plugins := nw.Conflist.Plugins
	order := make([]int, len(plugins))
	for i := range plugins {
		order[i] = i
		if op == "del" {
			order[i] = len(plugins) - 1 - i
		}
	}
	c := call{OK: true}
	prev := a.Result // DEL: the cached result, for every plugin
	if op == "add" {
		prev = nil
	}
	for _, i := range order {
		plugin := plugins[i]
		var typ string
		if err := json.Unmarshal(plugin["type"], &typ); err != nil || typ == "" {
			return call{Error: fmt.Sprintf("plugin %d of %s has no type", i, nw.Conflist.Name)}
		}
		binary, err := find(nw.CniPath, typ)
		if err != nil {
			return call{Error: err.Error()}
		}
		conf, err := pluginConf(&nw.Conflist, plugin, prev)
		if err != nil {
			return call{Error: err.Error()}
		}
		stdout, took, err := run([]string{binary}, env, conf)
		c.Ms += took
		c.Execs = append(c.Execs, took)
		if err != nil {
			c.OK = false
			c.Error = fmt.Sprintf("%s by plugin %s: %v", command, typ, err)
			return c
		}
		if op == "add" {
			prev = json.RawMessage(bytes.TrimSpace(stdout))
		}
	}
	if op == "add" {
		c.Result = prev
	}
	return c
}

// pluginConf is libcni's buildOneConfig: the entry plus name, cniVersion, prevResult.
func pluginConf(list *conflist, plugin map[string]json.RawMessage, prev json.RawMessage) ([]byte, error) {
	conf := make(map[string]json.RawMessage, len(plugin)+3)
	for k, v := range plugin {
		conf[k] = v
	}
	name, _ := json.Marshal(list.Name)
	version, _ := json.Marshal(list.CniVersion)
	conf["name"] = name
	conf["cniVersion"] = version
	if len(prev) > 0 {
		conf["prevResult"] = prev
	}
	return json.Marshal(conf)
}

// find is libcni's FindInPath: the first directory of CNI_PATH holding the plugin.
func find(cniPath, typ string) (string, error) {
	for _, dir := range filepath.SplitList(cniPath) {
		p := filepath.Join(dir, typ)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("plugin %q not found in CNI_PATH %s", typ, cniPath)
}

// run is invoke.RawExec: fork/exec, config on stdin, stdout collected, exit checked.
func run(argv, env []string, stdin []byte) ([]byte, float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := ms(time.Since(start))
	if err != nil {
		detail := strings.TrimSpace(stdout.String() + " " + stderr.String())
		if len(detail) > 500 {
			detail = detail[:500]
		}
		return stdout.Bytes(), took, fmt.Errorf("%v: %s", err, detail)
	}
	return stdout.Bytes(), took, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
