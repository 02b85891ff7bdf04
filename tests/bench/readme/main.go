// Command readme writes the README's table of measured figures from the file that
// `make bench` has the benchmarks write, between the README's bench markers:
//
//	go run ./tests/bench/readme tests/bench/results.json README.md
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/burla-temporal/burla/tests/bench"
)

const (
	begin = "<!-- bench:begin (made by `make bench`; do not edit) -->"
	end   = "<!-- bench:end -->"
)

// peers are the peers' figures on the same kind of machine, measured by hand for
// issue 7: the only column of the table that no benchmark here writes.
var peers = map[string]string{
	"3-input job, wall time, 50 runs":                     "Dask `client.map` 11 ms; Temporal fan-out 20 ms",
	"100 000 printing inputs":                             "Dask 600 inputs/s; Temporal 300 inputs/s",
	"1 GiB of inputs in one call (1 024 × 1 MiB strings)": "Burla: at most 84.8 MB per call",
	"10 000 000 trivial inputs in one call":               "Burla: about 5 M inputs per call",
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: readme RESULTS.json README.md")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "readme:", err)
		os.Exit(1)
	}
}

func run(resultsPath, readmePath string) error {
	data, err := os.ReadFile(resultsPath)
	if err != nil {
		return err
	}
	var r bench.Results
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", resultsPath, err)
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		return err
	}
	text := string(readme)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q region", readmePath, begin, end)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nMeasured %s on a machine of %d CPUs, `burla dev` of %d nodes × %d CPUs:\n\n",
		begin, r.When.Format("2006-01-02 15:04 MST"), r.CPUs, r.Nodes, r.NodeCPU)
	b.WriteString("| figure | burla | local goroutine pool, same run | peers, from issue 7 (same kind of machine) |\n|---|---|---|---|\n")
	for _, row := range bench.Rows {
		f, ok := r.Figures[row]
		if !ok {
			f.Burla = "(not measured in this run)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row, f.Burla, f.Local, peers[row])
	}
	text = text[:i] + b.String() + text[j:]
	return os.WriteFile(readmePath, []byte(text), 0o644)
}
