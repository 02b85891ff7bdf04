package burla

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// A program that cannot run on the cluster's nodes (one built for macOS, Windows
// or another architecture, as `go run .` on a laptop makes) ships a build of
// itself for them: the SDK builds the program's main package with the local Go
// toolchain for the nodes' platform, static, with the build settings the running
// program was built with, and keeps the executable in the user's cache directory
// under a digest of its sources and those settings, so that a program run again
// unchanged builds nothing.

// platform is an operating system and architecture, as GOOS and GOARCH name them.
type platform struct{ os, arch string }

func (p platform) String() string { return p.os + "/" + p.arch }

// nodePlatform is the platform of the cluster's nodes.
var nodePlatform = platform{"linux", "amd64"}

// hostPlatform is the running program's.
var hostPlatform = platform{runtime.GOOS, runtime.GOARCH}

// keepBuilds is how many builds the cache keeps, the most recently used.
const keepBuilds = 8

// builder builds the running program for another platform.
type builder struct {
	goTool   string                           // the go command
	cacheDir string                           // where builds are kept
	info     *debug.BuildInfo                 // the running program's
	mainDir  string                           // the directory to build from: its main package's, or where it runs
	say      func(format string, args ...any) // tells the user, once, what was done
}

// newBuilder finds what building the running program takes: a Go toolchain, the
// program's build information and its main package's directory.
func newBuilder(say func(string, ...any)) (*builder, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("there is no Go toolchain on PATH to build it with (%w)", err)
	}
	info, ok := debug.ReadBuildInfo()
	if !ok || info.Path == "" {
		return nil, errors.New("it carries no build information to rebuild it from")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return nil, fmt.Errorf("no cache directory to keep the build in: %w", err)
	}
	return &builder{goTool: goTool, cacheDir: filepath.Join(cache, "burla", "programs"), info: info, mainDir: mainDir(), say: say}, nil
}

// mainDir is the directory of the running program's package main, from the
// source file of a function of it on the stack (absent in a program built with
// -trimpath, or if no such function called), or else the working directory.
func mainDir() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, "main.") && filepath.IsAbs(f.File) {
			if _, err := os.Stat(f.File); err == nil {
				return filepath.Dir(f.File)
			}
		}
		if !more {
			break
		}
	}
	wd, _ := os.Getwd()
	return wd
}

// pkg is the import path to build, and whether it names the program's package
// main wherever the build runs.
func (b *builder) pkg() string {
	if b.info.Path == "command-line-arguments" {
		// go run main.go: the files are not recorded, the directory is.
		return "."
	}
	return b.info.Path
}

// flags are the running program's build flags that a build for the nodes keeps.
func (b *builder) flags() []string {
	var flags []string
	for _, s := range b.info.Settings {
		switch s.Key {
		case "-tags", "-ldflags", "-gcflags", "-asmflags":
			flags = append(flags, s.Key+"="+s.Value)
		case "-trimpath":
			if s.Value == "true" {
				flags = append(flags, "-trimpath")
			}
		}
	}
	return flags
}

// env is the environment the go command runs in to build for target.
func (b *builder) env(target platform) []string {
	return append(os.Environ(), "GOOS="+target.os, "GOARCH="+target.arch, "CGO_ENABLED=0")
}

// run runs the go command in the main package's directory and returns its stdout.
func (b *builder) run(ctx context.Context, target platform, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.goTool, args...)
	cmd.Dir, cmd.Env = b.mainDir, b.env(target)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("go %s (in %s): %s", args[0], b.mainDir, msg)
	}
	return out, nil
}

// The packages of a build, one line each, with what decides their contents: a
// package of a module at a version is that version (the module cache does not
// change under it); any other (the main module's, a workspace's, a directory
// replacing a module) is its files, which digest hashes.
const listTemplate = `{{if not .Standard}}{{.ImportPath}}` +
	`	{{with .Module}}{{if .Replace}}{{.Replace.Path}}@{{.Replace.Version}}{{else}}{{.Path}}@{{.Version}}{{end}}{{end}}` +
	`	{{.Dir}}	{{join .GoFiles " "}} {{join .CgoFiles " "}} {{join .SFiles " "}} {{join .HFiles " "}} {{join .SysoFiles " "}} {{join .EmbedFiles " "}}` +
	"\n{{end}}"

// digest names a build of the program for target: the go command's version and
// settings, the build flags and every package's sources.
func (b *builder) digest(ctx context.Context, target platform) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "burla program build 1\n%s\n%s\n%q\n", target, b.pkg(), b.flags())
	goenv, err := b.run(ctx, target, "env", "GOVERSION", "GOAMD64", "GOARM64", "GOEXPERIMENT", "GOFLAGS", "GOWORK")
	if err != nil {
		return "", err
	}
	h.Write(goenv)
	list, err := b.run(ctx, target, append(append([]string{"list", "-deps"}, b.tagFlags()...), "-f", listTemplate, b.pkg())...)
	if err != nil {
		return "", err
	}
	h.Write(list)
	sc := bufio.NewScanner(bytes.NewReader(list))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 4 || (fields[1] != "" && !strings.HasSuffix(fields[1], "@")) {
			continue // a module at a version, or not a package line
		}
		for _, name := range strings.Fields(fields[3]) {
			if err := hashFile(h, filepath.Join(fields[2], name)); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tagFlags is the -tags flag of the program's build, which decides its files.
func (b *builder) tagFlags() []string {
	return slices.DeleteFunc(b.flags(), func(f string) bool { return !strings.HasPrefix(f, "-tags=") })
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, "%s\n", path)
	_, err = io.Copy(h, f)
	return err
}

// build returns the path of the program built for target: the cached build of
// its digest, or a new one.
func (b *builder) build(ctx context.Context, target platform) (string, error) {
	start := time.Now()
	digest, err := b.digest(ctx, target)
	if err != nil {
		return "", err
	}
	path := filepath.Join(b.cacheDir, digest[:32])
	if _, err := os.Stat(path); err == nil {
		now := time.Now()
		_ = os.Chtimes(path, now, now) // most recently used: kept longest
		b.say("burla: this program is %s and the cluster's nodes run %s: shipping the build of it for them made before (%s)", hostPlatform, target, path)
		return path, nil
	}
	if err := os.MkdirAll(b.cacheDir, 0o700); err != nil {
		return "", err
	}
	tmp := path + fmt.Sprintf(".%d.tmp", os.Getpid())
	args := append(append([]string{"build", "-o", tmp}, b.flags()...), b.pkg())
	if _, err := b.run(ctx, target, args...); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	b.prune()
	b.say("burla: this program is %s and the cluster's nodes run %s: built %s for them in %.1fs (kept as %s)",
		hostPlatform, target, b.info.Path, time.Since(start).Seconds(), path)
	return path, nil
}

// prune removes all but the keepBuilds most recently used builds.
func (b *builder) prune() {
	entries, err := os.ReadDir(b.cacheDir)
	if err != nil {
		return
	}
	type build struct {
		path string
		used time.Time
	}
	var builds []build
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && !strings.HasSuffix(e.Name(), ".tmp") {
			builds = append(builds, build{filepath.Join(b.cacheDir, e.Name()), fi.ModTime()})
		}
	}
	slices.SortFunc(builds, func(x, y build) int { return y.used.Compare(x.used) })
	for _, old := range builds[min(keepBuilds, len(builds)):] {
		if err := os.Remove(old.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
}
