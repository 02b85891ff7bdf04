// Package grafana holds burla's Grafana dashboard; its test checks the
// dashboard against the metrics the control plane and node agents export.
package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// contract is every metric the dashboard may query: the names the control
// plane, the node agents, the container workers and temporalmetrics export.
// Histograms are listed by family name, without _bucket, _sum or _count.
var contract = []string{
	// Control plane (job="burla-control").
	"burla_control_jobs_placed_total",
	"burla_control_placements_failed_total",
	"burla_control_jobs_finished_total", // {state}: Succeeded, Failed, Cancelled
	"burla_control_clients_lost_total",
	"burla_control_nodes_live",
	"burla_cluster_nodes",        // {cluster, state}: provisioning, ready, assigned, resetting, deleting
	"burla_cluster_jobs_running", // {cluster}
	"burla_queue_chunks",         // {cluster, state}: waiting, inflight

	// Node agents (job="burla-node").
	"burla_node_workers_warm",
	"burla_node_workers_busy",
	"burla_node_worker_restarts_total",
	"burla_node_jobs_total", // {outcome}: drained, failed, stopped

	// Container workers, through their node agent's endpoint.
	"burla_worker_inputs_total", // {outcome}: done, failed
	"burla_worker_claim_seconds",
	"burla_worker_chunk_seconds",

	// The Temporal SDK, as temporalmetrics names its metrics (both jobs).
	"temporal_request_total",
	"temporal_request_failure_total",
	"temporal_workflow_task_execution_latency_seconds",
	"temporal_activity_execution_latency_seconds",
	"temporal_worker_task_slots_available",
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string      `json:"name"`
			Datasource *datasource `json:"datasource"`
			Definition string      `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Inputs []struct {
		Name string `json:"name"`
	} `json:"__inputs"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// metricName matches the metrics an expression names.
var metricName = regexp.MustCompile(`\b(?:burla|temporal)_[a-z_]+`)

func load(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("burla.json")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatal("burla.json is not valid JSON")
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("decode burla.json: %v", err)
	}
	return d
}

// metrics returns the family names expr queries.
func metrics(expr string) []string {
	var names []string
	for _, name := range metricName.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		names = append(names, name)
	}
	return names
}

func TestDashboard(t *testing.T) {
	d := load(t)
	if d.SchemaVersion != 39 {
		t.Errorf("schemaVersion = %d; want 39", d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" {
		t.Errorf("__inputs = %+v; want one input, DS_PROMETHEUS", d.Inputs)
	}
	checkDatasource := func(what string, ds *datasource) {
		if ds == nil || ds.Type != "prometheus" || ds.UID != "${DS_PROMETHEUS}" {
			t.Errorf("%s: datasource %+v; want prometheus ${DS_PROMETHEUS}", what, ds)
		}
	}

	used := map[string]bool{}
	checkExpr := func(what, expr string) {
		for _, name := range metrics(expr) {
			used[name] = true
			if !slices.Contains(contract, name) {
				t.Errorf("%s: queries %s, which is not in the contract", what, name)
			}
		}
	}

	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		checkDatasource("variable "+v.Name, v.Datasource)
		checkExpr("variable "+v.Name, v.Definition)
	}
	for _, want := range []string{"job", "instance"} {
		if !slices.Contains(vars, want) {
			t.Errorf("variables %v lack %q", vars, want)
		}
	}

	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]bool{}
	graphs := 0
	for _, p := range all {
		what := "panel " + p.Title
		if ids[p.ID] {
			t.Errorf("%s: id %d used twice", what, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		graphs++
		checkDatasource(what, p.Datasource)
		if len(p.Targets) == 0 {
			t.Errorf("%s has no targets", what)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %s has no expr", what, tg.RefID)
			}
			if refIDs[tg.RefID] {
				t.Errorf("%s: refId %s used twice", what, tg.RefID)
			}
			refIDs[tg.RefID] = true
			checkDatasource(what+" target "+tg.RefID, tg.Datasource)
			checkExpr(what, tg.Expr)
		}
	}
	if graphs == 0 {
		t.Fatal("the dashboard has no panels")
	}
	for _, name := range contract {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

func TestMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum(rate(burla_node_jobs_total{job="burla-node"}[$__rate_interval]))`, []string{"burla_node_jobs_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(burla_worker_claim_seconds_bucket[5m])))`, []string{"burla_worker_claim_seconds"}},
		{`temporal_request_total / temporal_request_failure_total`, []string{"temporal_request_total", "temporal_request_failure_total"}},
		{`up{job=~"burla-control|burla-node"}`, nil},
	}
	for _, tt := range tests {
		if got := metrics(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("metrics(%q) = %q; want %q", tt.expr, got, tt.want)
		}
	}
}
