// Command runc-shim exists only for this project's TEST ENVIRONMENT and must never
// be installed by users or shipped in an image. On the machines the lab runs on,
// root lacks CAP_SYS_RESOURCE (it is missing from the bounding set), so the real
// runc fails to start any container whose OCI spec asks for that capability (every
// privileged container does) or for a negative oomScoreAdj (the kubelet gives
// critical pods one). A real cluster's nodes have the capability and need none of
// this.
//
// The lab's containerd names this program as the runc runtime's binary. It is
// called with runc's own argv; for `create` and `run` it rewrites the bundle's
// config.json (--bundle/-b, default the working directory), for `exec` the
// process file (--process/-p): CAP_SYS_RESOURCE leaves every capability set and a
// negative process.oomScoreAdj becomes 0. Then it execs the real runc
// (/usr/sbin/runc, or $WIREMESH_REAL_RUNC) with the argv unchanged. The JSON is
// edited as a generic tree with numbers kept verbatim, so fields this program does
// not know survive untouched.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	defaultRunc = "/usr/sbin/runc"
	droppedCap  = "CAP_SYS_RESOURCE"
)

// runc's global flags that take a value (urfave/cli: "--root X" or "--root=X").
var globalValueFlags = map[string]bool{
	"root": true, "log": true, "log-format": true, "criu": true, "rootless": true,
}

func main() {
	if err := fixArgs(os.Args[1:]); err != nil {
		// The real runc must not start a container this machine cannot run: say why
		// on stderr (containerd puts it in the task's error) and fail.
		fmt.Fprintf(os.Stderr, "runc-shim: %v\n", err)
		os.Exit(1)
	}
	runc := os.Getenv("WIREMESH_REAL_RUNC")
	if runc == "" {
		runc = defaultRunc
	}
	argv := append([]string{runc}, os.Args[1:]...)
	if err := syscall.Exec(runc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-shim: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}

// fixArgs finds runc's subcommand in args and rewrites the file it will read.
func fixArgs(args []string) error {
	cmd, rest := subcommand(args)
	switch cmd {
	case "create", "run":
		bundle := flagValue(rest, "bundle", "b")
		if bundle == "" {
			bundle = "."
		}
		return fixFile(filepath.Join(bundle, "config.json"), fixSpec)
	case "exec":
		if p := flagValue(rest, "process", "p"); p != "" {
			return fixFile(p, fixProcess)
		}
	}
	return nil
}

// subcommand skips runc's global flags and returns the subcommand and its arguments.
func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			return a, args[i+1:]
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if globalValueFlags[name] {
			i++ // its value
		}
	}
	return "", nil
}

// The flags of runc create, run and exec that take a value: their values are
// skipped while looking for a flag, since runc stops reading flags at the first
// positional argument (the container id).
var subValueFlags = map[string]bool{
	"bundle": true, "b": true, "console-socket": true, "pid-file": true, "preserve-fds": true,
	"process": true, "p": true, "cwd": true, "env": true, "e": true, "user": true, "u": true,
	"additional-gids": true, "g": true, "cap": true, "c": true, "process-label": true,
	"apparmor": true, "cgroup": true,
}

// flagValue returns the value of --long/-short (also -long, --long=V, -short=V)
// among a subcommand's arguments, or "" when absent.
func flagValue(args []string, long, short string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == long || name == short {
			if hasValue {
				return value
			}
			if i+1 < len(args) {
				return args[i+1]
			}
			return ""
		}
		if !hasValue && subValueFlags[name] {
			i++
		}
	}
	return ""
}

// fixFile applies fix to the JSON document at path and writes it back (through a
// temporary file and a rename, keeping the mode) only when fix changed something.
func fixFile(path string, fix func(map[string]any) bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc, err := decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !fix(doc) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".runc-shim.tmp"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// decode parses a JSON object keeping numbers as their literal text (json.Number),
// so 64-bit limits and the like come back out exactly as they went in.
func decode(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// fixSpec edits an OCI runtime spec (config.json); true when it changed it.
func fixSpec(spec map[string]any) bool {
	process, ok := spec["process"].(map[string]any)
	if !ok {
		return false
	}
	return fixProcess(process)
}

// fixProcess edits an OCI process object (the spec's process, or runc exec's
// --process file); true when it changed it.
func fixProcess(process map[string]any) bool {
	changed := false
	if caps, ok := process["capabilities"].(map[string]any); ok {
		for set, v := range caps {
			list, ok := v.([]any)
			if !ok {
				continue
			}
			kept := make([]any, 0, len(list))
			for _, c := range list {
				if s, ok := c.(string); ok && s == droppedCap {
					changed = true
					continue
				}
				kept = append(kept, c)
			}
			caps[set] = kept
		}
	}
	if n, ok := process["oomScoreAdj"].(json.Number); ok && strings.HasPrefix(n.String(), "-") {
		process["oomScoreAdj"] = json.Number("0")
		changed = true
	}
	return changed
}
