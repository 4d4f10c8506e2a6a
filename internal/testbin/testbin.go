// Package testbin finds the server binaries that test helpers start (versitygw, weaviate-server),
// installed by the scripts under scripts/.
package testbin

import (
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Find looks for the program name: $envVar if set (it must be an executable file), then $GOPATH/bin
// (GOPATH as go/build sees it, without running the go command), then $PATH, and last `go env GOPATH`,
// which also knows a GOPATH set with `go env -w`. The error names script, which installs it.
func Find(name, envVar, script string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		if !executable(p) {
			return "", fmt.Errorf("%s=%s is not an executable file", envVar, p)
		}
		return p, nil
	}
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		if p := filepath.Join(gp, "bin", name); executable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, gp := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if p := filepath.Join(gp, "bin", name); executable(p) {
				return p, nil
			}
		}
	}
	return "", errors.New(name + " is not installed (looked in $" + envVar + ", $GOPATH/bin and $PATH); run " + script + " (make test does)")
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
