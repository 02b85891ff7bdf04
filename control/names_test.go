package control

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvBuildWorkflowIDRoundTrip(t *testing.T) {
	d := strings.Repeat("a", 64)
	for _, c := range []struct{ tenant, digest, wantTenant string }{
		{"", d, "default"},
		{"default", d, "default"},
		{"acme", d, "acme"},
		{"acme", EnvDigest(d, "python:3.12"), "acme"},
	} {
		tenant, digest, ok := ParseEnvBuildWorkflowID(EnvBuildWorkflowID(c.tenant, c.digest))
		if !ok || tenant != c.wantTenant || digest != c.digest {
			t.Errorf("%q, %q: parsed %q, %q, %v", c.tenant, c.digest, tenant, digest, ok)
		}
	}
	for _, id := range []string{"burla-env-", "burla-env-acme.", "burla-env-acme.xyz", "burla-env-ACME." + d, "burla-env-default." + d,
		"burla-env-acme." + d + ".x", "burla-env-image-zz", "burla-cluster-default", "j-acme-x"} {
		if tenant, digest, ok := ParseEnvBuildWorkflowID(id); ok {
			t.Errorf("%q parsed as %q, %q", id, tenant, digest)
		}
	}
	if EnvDigest(d, "") != d || EnvDigest(d, "x") == EnvDigest(d, "y") {
		t.Error("EnvDigest does not tell environments apart")
	}
}

// Every application error type that crosses a process boundary is a constant
// here: no call in the repository's code makes a temporal.ApplicationError with
// a type spelled out where it is made.
func TestErrorTypesAreNamed(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "ApplicationError") {
				return true
			}
			if lit, ok := call.Args[1].(*ast.BasicLit); ok {
				t.Errorf("%s: %s with the type %s spelled out; name it in package names", fset.Position(call.Pos()), sel.Sel.Name, lit.Value)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
