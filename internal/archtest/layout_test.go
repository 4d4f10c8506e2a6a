// Package archtest checks the project's layout and the dependency rule of docs/architecture.md by
// reading the imports of every package.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/atlas-workspace/atlas"

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLayout(t *testing.T) {
	for _, p := range []string{"domain", "commands", "projections", "eventstore", "httpapi", "cmd/atlas", "migrations", "docs", "go.mod", "Makefile", "README.md", ".ci/run"} {
		if _, err := os.Stat(filepath.Join(root(t), p)); err != nil {
			t.Errorf("layout: %s is missing", p)
		}
	}
}

// allowed lists, for each top-level area, which of the project's areas its non-test code may import.
var allowed = map[string][]string{
	"domain":      {"domain"},
	"eventstore":  {"eventstore", "domain"},
	"commands":    {"commands", "domain", "eventstore"},
	"projections": {"projections", "domain", "eventstore", "search"},
	"search":      {"search"},
	"ai":          {"ai"},
	"assistant":   {"assistant", "domain", "eventstore", "commands", "projections", "search", "ai"},
	"workers":     {"workers", "domain", "eventstore", "commands", "projections"},
	"httpapi":     {"httpapi", "domain", "eventstore", "commands", "projections"},
	"migrations":  {"migrations"},
	"internal":    {"internal", "migrations", "eventstore"},
	"cmd":         {"cmd", "domain", "eventstore", "commands", "projections", "httpapi", "migrations", "search", "ai", "assistant", "workers"},
}

// Infrastructure the domain must not touch.
var domainForbidden = []string{"github.com/jackc/", "github.com/labstack/", "github.com/ThreeDotsLabs/", "database/sql", "net/http", "os", "gocloud.dev"}

func TestDependencyRule(t *testing.T) {
	base := root(t)
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "data") && path != base {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(base, path)
		area := strings.Split(filepath.ToSlash(rel), "/")[0]
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if area == "domain" {
				for _, bad := range domainForbidden {
					if p == bad || (strings.HasSuffix(bad, "/") && strings.HasPrefix(p, bad)) {
						t.Errorf("%s imports %s: the domain does no I/O", rel, p)
					}
				}
			}
			if !strings.HasPrefix(p, module+"/") {
				continue
			}
			target := strings.Split(strings.TrimPrefix(p, module+"/"), "/")[0]
			ok := false
			for _, a := range allowed[area] {
				ok = ok || a == target
			}
			if !ok {
				t.Errorf("%s imports %s: %s may import only %v", rel, p, area, allowed[area])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Only cmd/atlas reads the environment (tests and test helpers aside).
func TestOnlyTheCompositionRootReadsTheEnvironment(t *testing.T) {
	base := root(t)
	_ = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != base {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(base, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "internal/pgtest/") ||
			strings.HasPrefix(rel, "internal/blobtest/") || strings.HasPrefix(rel, "internal/testbin/") || strings.HasPrefix(rel, "internal/weaviatetest/") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(src), "os.Getenv(") || strings.Contains(string(src), "os.LookupEnv(") {
			t.Errorf("%s reads the environment; only cmd/atlas may", rel)
		}
		return nil
	})
}
