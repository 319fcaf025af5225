package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSubcommandSkipsGlobalFlags(t *testing.T) {
	args := []string{"--root", "/run/containerd/runc/k8s.io", "--log=/x/log.json", "--log-format", "json",
		"--systemd-cgroup", "create", "--bundle", "/b", "id"}
	cmd, rest := subcommand(args)
	if cmd != "create" || !reflect.DeepEqual(rest, []string{"--bundle", "/b", "id"}) {
		t.Fatalf("got %q %q", cmd, rest)
	}
}

func TestFlagValue(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bundle", "/a", "id"}, "/a"},
		{[]string{"-b", "/a", "id"}, "/a"},
		{[]string{"--bundle=/a", "id"}, "/a"},
		{[]string{"--pid-file", "/p", "-b=/a", "id"}, "/a"},
		{[]string{"--pid-file", "/p", "id"}, ""},
		// After the container id nothing is a flag of runc's.
		{[]string{"id", "--bundle", "/a"}, ""},
	}
	for _, c := range cases {
		if got := flagValue(c.args, "bundle", "b"); got != c.want {
			t.Errorf("%q: got %q, want %q", c.args, got, c.want)
		}
	}
}

const spec = `{"ociVersion":"1.1.0","process":{"user":{"uid":0,"gid":0},"args":["sleep","1"],
"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE","CAP_KILL"],
"permitted":["CAP_SYS_RESOURCE"],"inheritable":[]},"oomScoreAdj":-997},
"linux":{"resources":{"memory":{"limit":9223372036854775807}}},"x-unknown":{"keep":[1,2.50,"z"]}}`

func TestCreateRewritesBundleLosslessly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fixArgs([]string{"--root", "/r", "create", "--bundle", dir, "--pid-file", "/p", "ctr"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	got := string(data)
	if strings.Contains(got, "CAP_SYS_RESOURCE") {
		t.Errorf("CAP_SYS_RESOURCE left: %s", got)
	}
	for _, want := range []string{`"oomScoreAdj":0`, `"limit":9223372036854775807`, `"keep":[1,2.50,"z"]`,
		`"bounding":["CAP_CHOWN"]`, `"effective":["CAP_KILL"]`, `"permitted":[]`, `"inheritable":[]`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode())
	}
}

func TestUnchangedSpecIsNotRewritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	orig := `{"process": {"oomScoreAdj": 5, "capabilities": {"bounding": ["CAP_KILL"]}}}`
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir) // no --bundle: the working directory
	if err := fixArgs([]string{"run", "-d", "id"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != orig {
		t.Errorf("rewritten: %s", data)
	}
}

func TestExecProcessFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(path, []byte(`{"args":["sh"],"capabilities":{"ambient":["CAP_SYS_RESOURCE"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fixArgs([]string{"--root", "/r", "exec", "--process", path, "--detach", "id"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != `{"args":["sh"],"capabilities":{"ambient":[]}}` {
		t.Errorf("got %s", data)
	}
}

func TestOtherCommandsTouchNothing(t *testing.T) {
	if err := fixArgs([]string{"--root", "/r", "delete", "--force", "id"}); err != nil {
		t.Fatal(err)
	}
}
