package burla_test

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's API section names every exported name of the SDK: functions,
// types, their methods, variables, and each error kind by its value. Methods of
// the standard interfaces (Error, Unwrap, String) need no mention.
func TestREADMEListsEveryExportedName(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "### API")
	if start < 0 {
		t.Fatal("the README has no API section")
	}
	api := text[start:]
	if end := strings.Index(api[1:], "\n## "); end >= 0 {
		api = api[:end+1]
	}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := pkgs["burla"]
	if !ok {
		t.Fatal("no package burla here")
	}
	d := doc.New(p, "github.com/burla-temporal/burla/sdk", 0)
	want := map[string]string{} // what the README must say → the exported name it stands for
	for _, f := range d.Funcs {
		want[f.Name] = f.Name
	}
	for _, v := range d.Vars {
		for _, n := range v.Names {
			want[n] = n
		}
	}
	for _, c := range d.Consts {
		for _, n := range c.Names {
			want[n] = n
		}
	}
	for _, typ := range d.Types {
		want[typ.Name] = typ.Name
		for _, f := range typ.Funcs {
			want[f.Name] = f.Name
		}
		for _, m := range typ.Methods {
			switch m.Name {
			case "Error", "Unwrap", "String":
			default:
				want[m.Name] = typ.Name + "." + m.Name
			}
		}
		for _, c := range typ.Consts { // error kinds: the README names them by value
			for _, spec := range c.Decl.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							want[strings.Trim(lit.Value, `"`)] = n.Name
							continue
						}
					}
					want[n.Name] = n.Name
				}
			}
		}
	}
	if len(want) < 40 {
		t.Fatalf("found only %d exported names; the parse is wrong", len(want))
	}
	for word, name := range want {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(word) + `\b`).MatchString(api) {
			t.Errorf("the README's API section does not mention %s (%q)", name, word)
		}
	}
}
