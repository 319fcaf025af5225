package main

// The exec op: the agent runs its commands (ip, wg, nft) through the worker. The
// agent is a Node.js process of hundreds of MiB whose child_process.spawn forks it
// and waits, on its event loop, until the child has exec'd: tens of milliseconds on
// a busy node, during which no CNI request or watch event is served. Go starts a
// program with vfork semantics (the child shares the worker's small memory until
// it execs) on a goroutine, so the agent's loop only sends a line and reads one.
//
// Replies: {"id":N,"started":PID} once the program runs (the agent's nft monitor
// must know its own transactions' pid before their events can arrive: the program's
// stdin is written only after this line), then {"id":N,"exit":{...}}, or
// {"id":N,"error":...} when it could not be started.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type execResult struct {
	Code     int    `json:"code"`
	Signal   string `json:"signal,omitempty"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	TimedOut bool   `json:"timedOut,omitempty"`
}

// lookPath finds a program on the PATH of the environment the agent sent (not the
// worker's own), as the agent's spawn would have.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[len("PATH="):]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		candidate := filepath.Join(dir, file)
		if st, err := os.Stat(candidate); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

func runExec(req request, write func(any)) reply {
	r := reply{ID: req.ID}
	if len(req.Argv) == 0 {
		r.Error = "exec: empty command"
		return r
	}
	input := []byte(req.Input)
	if req.InputBase64 != "" {
		decoded, err := base64.StdEncoding.DecodeString(req.InputBase64)
		if err != nil {
			r.Error = "exec: inputBase64: " + err.Error()
			return r
		}
		input = decoded
	}
	file, err := lookPath(req.Argv[0], req.Env)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	ctx := context.Background()
	if req.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, file, req.Argv[1:]...)
	cmd.Args[0] = req.Argv[0]
	cmd.Env = req.Env
	cmd.Dir = req.Dir
	// A grandchild left holding the output pipes must not keep Wait from returning.
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if err := cmd.Start(); err != nil {
		r.Error = err.Error()
		return r
	}
	pid := cmd.Process.Pid
	write(reply{ID: req.ID, Started: &pid})
	go func() {
		// A program that exits without reading its input gets EPIPE here: not an error.
		_, _ = stdin.Write(input)
		_ = stdin.Close()
	}()
	waitErr := cmd.Wait()
	res := &execResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &exitErr):
		res.Code = exitErr.ExitCode() // -1 when a signal ended it
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = unix.SignalName(ws.Signal())
		}
	default:
		r.Error = waitErr.Error()
		return r
	}
	res.TimedOut = ctx.Err() == context.DeadlineExceeded
	r.Exit = res
	return r
}
