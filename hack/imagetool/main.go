// Command imagetool assembles the lab's container images (hack/build-images.sh).
// The lab has no registry and no Docker engine, so images are put together here
// from layer tarballs and written as docker-archive tarballs, the format
// `ctr images import` (and `docker load`) accepts. The formats are written by
// go-containerregistry, not by hand.
//
//	imagetool build --ref REF --out FILE.tar --layer LAYER.tar [--layer ...]
//	    [--entrypoint JSON] [--cmd JSON] [--env K=V]... [--workdir DIR]
//
// Layers are uncompressed tarballs (made with GNU tar's --sort=name --mtime=@0
// --owner=0 --group=0 --numeric-owner); the image's creation time is the epoch
// and gzip is deterministic, so identical inputs give an identical image digest.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The PATH an image gets when --env sets none: the usual Debian one.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) < 2 || os.Args[1] != "build" {
		fmt.Fprintln(os.Stderr, "usage: imagetool build --ref REF --out FILE.tar --layer LAYER.tar [--layer ...] [--entrypoint JSON] [--cmd JSON] [--env K=V]... [--workdir DIR]")
		os.Exit(2)
	}
	if err := build(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "imagetool: %v\n", err)
		os.Exit(1)
	}
}

func build(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	ref := fs.String("ref", "", "image reference to tag the image with, e.g. registry.k8s.io/pause:3.10")
	out := fs.String("out", "", "docker-archive tarball to write")
	entrypoint := fs.String("entrypoint", "", `entrypoint as a JSON array, e.g. ["wiremesh"]`)
	cmd := fs.String("cmd", "", `default arguments as a JSON array, e.g. ["sleep","infinity"]`)
	workdir := fs.String("workdir", "", "working directory of the image's processes")
	var layers, env list
	fs.Var(&layers, "layer", "uncompressed layer tarball, lowest first (repeatable)")
	fs.Var(&env, "env", "environment variable K=V (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *ref == "" || *out == "" || len(layers) == 0 {
		return errors.New("--ref, --out and at least one --layer are required")
	}
	tag, err := name.NewTag(*ref)
	if err != nil {
		return fmt.Errorf("--ref: %w", err)
	}

	cfg := v1.Config{WorkingDir: *workdir}
	if cfg.Entrypoint, err = jsonArray("--entrypoint", *entrypoint); err != nil {
		return err
	}
	if cfg.Cmd, err = jsonArray("--cmd", *cmd); err != nil {
		return err
	}
	hasPath := false
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--env %q: want K=V", kv)
		}
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		cfg.Env = append(cfg.Env, defaultPath)
	}
	cfg.Env = append(cfg.Env, env...)

	epoch := v1.Time{Time: time.Unix(0, 0).UTC()}
	img := empty.Image
	for _, path := range layers {
		layer, err := tarball.LayerFromFile(path)
		if err != nil {
			return fmt.Errorf("layer %s: %w", path, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: epoch, CreatedBy: "imagetool layer"},
		})
		if err != nil {
			return fmt.Errorf("layer %s: %w", path, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = epoch
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}

	// Through a temporary file, so an interrupted build never leaves a truncated
	// tarball under the final name.
	tmp := *out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	return os.Rename(tmp, *out)
}

// jsonArray parses a flag's JSON array of strings; nil when the flag is unset.
func jsonArray(flagName, value string) ([]string, error) {
	if value == "" {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		return nil, fmt.Errorf("%s %q: want a JSON array of strings: %w", flagName, value, err)
	}
	return v, nil
}
