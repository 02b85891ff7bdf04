package burla

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"testing"
	"time"
)

// A build for the nodes keeps the flags that decide what the program is, and
// drops those that cannot apply there.
func TestSelfBuildFlags(t *testing.T) {
	b := &builder{info: &debug.BuildInfo{Path: "example.com/prog", Settings: []debug.BuildSetting{
		{Key: "-buildmode", Value: "exe"}, {Key: "-compiler", Value: "gc"}, {Key: "-race", Value: "true"},
		{Key: "-tags", Value: "prod,fast"}, {Key: "-ldflags", Value: "-s -w -X main.v=1"}, {Key: "-trimpath", Value: "true"},
		{Key: "CGO_ENABLED", Value: "1"}, {Key: "GOARCH", Value: "arm64"}, {Key: "GOOS", Value: "darwin"},
	}}}
	want := []string{"-tags=prod,fast", "-ldflags=-s -w -X main.v=1", "-trimpath"}
	if got := b.flags(); !slices.Equal(got, want) {
		t.Errorf("flags %q; want %q", got, want)
	}
	if got := b.tagFlags(); !slices.Equal(got, want[:1]) {
		t.Errorf("tag flags %q; want %q", got, want[:1])
	}
	if b.pkg() != "example.com/prog" {
		t.Errorf("package %q", b.pkg())
	}
	b.info.Path = "command-line-arguments" // go run main.go
	if b.pkg() != "." {
		t.Errorf("package of go run main.go: %q; want the main package's directory", b.pkg())
	}
}

// The cache keeps the builds used last.
func TestSelfBuildPrune(t *testing.T) {
	b := &builder{cacheDir: t.TempDir()}
	now := time.Now()
	for i := range keepBuilds + 3 {
		p := filepath.Join(b.cacheDir, "build"+strconv.Itoa(i))
		os.WriteFile(p, nil, 0o755)
		used := now.Add(-time.Duration(i) * time.Hour)
		os.Chtimes(p, used, used)
	}
	os.WriteFile(filepath.Join(b.cacheDir, "build99.123.tmp"), nil, 0o755) // another process's build under way
	b.prune()
	var left []string
	entries, _ := os.ReadDir(b.cacheDir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{"build0", "build1", "build2", "build3", "build4", "build5", "build6", "build7", "build99.123.tmp"}
	if !slices.Equal(left, want) {
		t.Errorf("left %q; want %q", left, want)
	}
}
