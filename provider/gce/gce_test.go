package gce

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/burla-temporal/burla/provider"
)

var update = flag.Bool("update", false, "rewrite the golden startup scripts in testdata")

const (
	project   = "burla-test"
	zone      = "us-central1-a"
	base      = "/compute/v1/projects/" + project + "/zones/" + zone
	instances = base + "/instances"
	// Operation names in the recorded responses.
	insertOp      = "operation-1767225600000-646f3c2a1b0e1-4c1e7a53-0b2d9f61"
	insertOpAgain = "operation-1767229200000-646f4a8e9d2c3-1f6b0d87-9e4a2c35"
	deleteOp      = "operation-1767225900000-646f3d4b2c1f2-7a9e0c14-5d3b8e22"
)

// exchange is a request the fake Compute Engine API expects, and its answer: a
// response recorded in testdata.
type exchange struct {
	method, path string
	check        func(t *testing.T, r *http.Request, body []byte) // optional
	status       int                                              // 200 when 0
	file         string
}

// fakeAPI plays the Compute Engine REST API from a script of exchanges, in order.
type fakeAPI struct {
	t *testing.T

	mu         sync.Mutex
	script     []exchange
	requestIDs []string // the requestId parameters seen, in order
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("read request body: %v", err)
	}
	if len(f.script) == 0 {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "unexpected request", http.StatusTeapot)
		return
	}
	ex := f.script[0]
	f.script = f.script[1:]
	if r.Method != ex.method || r.URL.Path != ex.path {
		f.t.Errorf("got request %s %s; want %s %s", r.Method, r.URL.Path, ex.method, ex.path)
		http.Error(w, "unexpected request", http.StatusTeapot)
		return
	}
	if id := r.URL.Query().Get("requestId"); id != "" {
		f.requestIDs = append(f.requestIDs, id)
	}
	if ex.check != nil {
		ex.check(f.t, r, body)
	}
	data, err := os.ReadFile(filepath.Join("testdata", ex.file))
	if err != nil {
		f.t.Errorf("recorded response: %v", err)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(cmp.Or(ex.status, http.StatusOK))
	w.Write(data)
}

func (f *fakeAPI) seenRequestIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requestIDs)
}

// testBinary stands for the burla binary the tests' control plane vouches for;
// testBinarySHA256 is its digest.
var (
	testBinary       = []byte("#!/bin/sh\n# the burla binary the tests' control plane vouches for\n")
	testBinarySHA256 = fmt.Sprintf("%x", sha256.Sum256(testBinary))
)

func testConfig() Config {
	return Config{
		Project:         project,
		Zone:            zone,
		BinaryURL:       "gs://burla-test-bin/releases/v1/burla",
		BinarySHA256:    testBinarySHA256,
		TemporalAddress: "10.128.0.2:7233",
		StoreURL:        "nats://10.128.0.2:4222",
		Labels:          map[string]string{"team": "Data Science"},
	}
}

var testNode = provider.NodeSpec{ID: "default-1", Cluster: "default", CPUs: 4, RAMMB: 8192, Envs: []string{"ghcr.io/acme/etl:1"}}

// newProvider returns a provider on a fake API that expects script, and fails
// the test if the script is not played to its end.
func newProvider(t *testing.T, cfg Config, script ...exchange) (*Provider, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{t: t, script: script}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, err := New(t.Context(), cfg,
		option.WithEndpoint(srv.URL), option.WithoutAuthentication(), option.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, ex := range f.script {
			t.Errorf("expected request not made: %s %s", ex.method, ex.path)
		}
	})
	return p, f
}

func insert(check func(*testing.T, *http.Request, []byte), status int, file string) exchange {
	return exchange{method: http.MethodPost, path: instances, check: check, status: status, file: file}
}

func getOperation(name, file string) exchange {
	return exchange{method: http.MethodGet, path: base + "/operations/" + name, file: file}
}

func getInstance(status int, file string) exchange {
	return exchange{method: http.MethodGet, path: instances + "/burla-default-1", status: status, file: file}
}

func del(status int, file string) exchange {
	return exchange{method: http.MethodDelete, path: instances + "/burla-default-1", check: checkRequestID, status: status, file: file}
}

func checkRequestID(t *testing.T, r *http.Request, _ []byte) {
	id, err := uuid.Parse(r.URL.Query().Get("requestId"))
	if err != nil || id.Version() != 5 {
		t.Errorf("requestId %q: want a name-based (version 5) UUID (%v)", r.URL.Query().Get("requestId"), err)
	}
}

// checkInsert checks an insert's request ID and the instance in its body.
func checkInsert(machineType string, spot bool) func(*testing.T, *http.Request, []byte) {
	return func(t *testing.T, r *http.Request, body []byte) {
		checkRequestID(t, r, body)
		// The wire form first: field names as the REST API spells them.
		var raw struct {
			MachineType string `json:"machineType"`
			Disks       []struct {
				InitializeParams struct {
					SourceImage string `json:"sourceImage"`
					DiskSizeGb  string `json:"diskSizeGb"` // int64: a string in JSON
				} `json:"initializeParams"`
			} `json:"disks"`
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Errorf("insert body: %v", err)
			return
		}
		if raw.MachineType != machineType {
			t.Errorf("machineType %q; want %q", raw.MachineType, machineType)
		}
		if len(raw.Disks) != 1 || raw.Disks[0].InitializeParams.SourceImage != DefaultDiskImage || raw.Disks[0].InitializeParams.DiskSizeGb != "20" {
			t.Errorf("disks %+v; want one of 20 GB from %s", raw.Disks, DefaultDiskImage)
		}

		var inst computepb.Instance
		if err := protojson.Unmarshal(body, &inst); err != nil {
			t.Errorf("insert body is not an Instance: %v", err)
			return
		}
		if inst.GetName() != "burla-default-1" {
			t.Errorf("name %q; want burla-default-1", inst.GetName())
		}
		wantLabels := map[string]string{"burla-cluster": "default", "burla-node": "default-1", "burla-role": "node", "team": "data-science"}
		if fmt.Sprint(inst.GetLabels()) != fmt.Sprint(wantLabels) {
			t.Errorf("labels %v; want %v", inst.GetLabels(), wantLabels)
		}
		sched := inst.GetScheduling()
		switch {
		case spot && (sched.GetProvisioningModel() != "SPOT" || sched.GetInstanceTerminationAction() != "DELETE"):
			t.Errorf("scheduling %v; want SPOT, deleted on termination", sched)
		case !spot && sched != nil:
			t.Errorf("scheduling %v; want none", sched)
		}
		if sas := inst.GetServiceAccounts(); len(sas) != 1 || sas[0].GetEmail() != "default" ||
			!slices.Equal(sas[0].GetScopes(), []string{"https://www.googleapis.com/auth/cloud-platform"}) {
			t.Errorf("service accounts %v; want default with the cloud-platform scope", sas)
		}
		if nics := inst.GetNetworkInterfaces(); len(nics) != 1 || nics[0].GetNetwork() != DefaultNetwork ||
			len(nics[0].GetAccessConfigs()) != 1 || nics[0].GetAccessConfigs()[0].GetType() != "ONE_TO_ONE_NAT" {
			t.Errorf("network interfaces %v; want one on %s with an external address", nics, DefaultNetwork)
		}
		metadata := map[string]string{}
		for _, it := range inst.GetMetadata().GetItems() {
			metadata[it.GetKey()] = it.GetValue()
		}
		if metadata["burla-node-id"] != "default-1" || metadata["burla-cluster"] != "default" {
			t.Errorf("metadata %v; want burla-node-id and burla-cluster", metadata)
		}
		if got := metadata[MetadataBinarySHA256]; got != testBinarySHA256 {
			t.Errorf("metadata %s = %q; want the binary's SHA-256 %s", MetadataBinarySHA256, got, testBinarySHA256)
		}
		script := metadata["startup-script"]
		for _, want := range []string{
			"exec '/opt/burla/burla' 'node-agent'",
			"'--id' 'default-1'", "'--cluster' 'default'", "'--cpus' '4'", "'--ram-mb' '8192'",
			"'--temporal' '10.128.0.2:7233'", "'--namespace' 'default'", "'--store' 'nats://10.128.0.2:4222'",
			"'--cache-dir' '/var/lib/burla/cache'", "'--runtime' 'process'", "'--metrics-addr' '0.0.0.0:9464'",
			"'--env' 'ghcr.io/acme/etl:1'",
			"https://storage.googleapis.com/storage/v1/b/burla-test-bin/o/releases%2Fv1%2Fburla?alt=media",
			"Restart=always",
			// The binary is checked against the digest the control plane gave, and
			// tenants' code is kept from the metadata server.
			"printf '%s  %s\\n' '" + testBinarySHA256 + "' \"$dst\" | sha256sum --check --status",
			"ip daddr 169.254.0.0/16 meta skuid != 0 jump closed",
		} {
			if !strings.Contains(script, want) {
				t.Errorf("startup script lacks %q:\n%s", want, script)
			}
		}
	}
}

func TestCreate(t *testing.T) {
	const e2Standard4 = "zones/" + zone + "/machineTypes/e2-standard-4"
	tests := []struct {
		name     string
		cfg      func(*Config)
		script   []exchange
		wantErr  string // empty: Create succeeds
		wantCode string // the OperationError's code, if one
		wantIDs  int    // distinct request IDs
	}{{
		name: "waits for the operation to be done",
		script: []exchange{
			insert(checkInsert(e2Standard4, false), 0, "insert-operation.json"),
			getOperation(insertOp, "insert-operation.json"), // still running
			getOperation(insertOp, "insert-operation-done.json"),
			getInstance(0, "instance.json"),
		},
		wantIDs: 1,
	}, {
		name: "spot VM of a given machine type",
		cfg:  func(c *Config) { c.Spot, c.MachineType = true, "n2-standard-8" },
		script: []exchange{
			insert(checkInsert("zones/"+zone+"/machineTypes/n2-standard-8", true), 0, "insert-operation.json"),
			getOperation(insertOp, "insert-operation-done.json"),
			getInstance(0, "instance.json"),
		},
		wantIDs: 1,
	}, {
		name: "operation fails with an HTTP status",
		script: []exchange{
			insert(nil, 0, "insert-operation.json"),
			getOperation(insertOp, "insert-operation-error.json"),
		},
		wantErr:  "does not have enough resources available to fulfill the request",
		wantCode: "ZONE_RESOURCE_POOL_EXHAUSTED",
		wantIDs:  1,
	}, {
		// Operation.Wait returns nil for this one.
		name: "operation fails without an HTTP status",
		script: []exchange{
			insert(nil, 0, "insert-operation.json"),
			getOperation(insertOp, "insert-operation-error-no-status.json"),
		},
		wantErr:  "Quota 'CPUS' exceeded",
		wantCode: "QUOTA_EXCEEDED",
		wantIDs:  1,
	}, {
		name: "request ID answered with the operation of a deleted VM",
		script: []exchange{
			insert(nil, 0, "insert-operation-done.json"),
			getOperation(insertOp, "insert-operation-done.json"),
			getInstance(http.StatusNotFound, "not-found.json"),
			insert(checkInsert(e2Standard4, false), 0, "insert-operation-again.json"),
			getOperation(insertOpAgain, "insert-operation-again.json"),
			getInstance(0, "instance.json"),
		},
		wantIDs: 2,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p, f := newProvider(t, cfg, tt.script...)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := p.Create(ctx, testNode)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Create: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Create: got error %v; want one saying %q", err, tt.wantErr)
			case err != nil:
				t.Logf("Create: %v", err)
			}
			if tt.wantCode != "" {
				var oe *OperationError
				if !errors.As(err, &oe) || !oe.Has(tt.wantCode) || oe.Operation != insertOp {
					t.Errorf("Create: got error %#v; want an OperationError of %s with %s", err, insertOp, tt.wantCode)
				}
				if !strings.Contains(err.Error(), "burla-default-1 (project burla-test, zone us-central1-a)") {
					t.Errorf("Create: error %q does not name the instance, project and zone", err)
				}
			}
			ids := f.seenRequestIDs()
			if slices.Sort(ids); len(slices.Compact(ids)) != tt.wantIDs {
				t.Errorf("request IDs %v; want %d distinct", f.seenRequestIDs(), tt.wantIDs)
			}
		})
	}
}

// A retried Create, answered 409 because the first made the VM, succeeds, and
// both inserts carry the same request ID.
func TestCreateTwice(t *testing.T) {
	p, f := newProvider(t, testConfig(),
		insert(checkInsert("zones/"+zone+"/machineTypes/e2-standard-4", false), 0, "insert-operation.json"),
		getOperation(insertOp, "insert-operation-done.json"),
		getInstance(0, "instance.json"),
		insert(checkRequestID, http.StatusConflict, "already-exists.json"),
	)
	for i := range 2 {
		if err := p.Create(t.Context(), testNode); err != nil {
			t.Fatalf("Create #%d: %v", i+1, err)
		}
	}
	if ids := f.seenRequestIDs(); len(ids) != 2 || ids[0] != ids[1] {
		t.Errorf("request IDs %v; want the same twice", ids)
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name   string
		script []exchange
	}{{
		name: "waits for the operation to be done",
		script: []exchange{
			del(0, "delete-operation.json"),
			getOperation(deleteOp, "delete-operation-done.json"),
			getInstance(http.StatusNotFound, "not-found.json"),
		},
	}, {
		name:   "missing instance",
		script: []exchange{del(http.StatusNotFound, "not-found.json")},
	}, {
		name: "instance gone while the operation ran",
		script: []exchange{
			del(0, "delete-operation.json"),
			getOperation(deleteOp, "delete-operation-not-found.json"),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newProvider(t, testConfig(), tt.script...)
			if err := p.Delete(t.Context(), provider.NodeSpec{ID: "default-1"}); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		})
	}
}

func TestDeleteRequestIDDiffersFromCreate(t *testing.T) {
	p := &Provider{cfg: testConfig()}
	ins, del := p.requestID("insert", "burla-default-1", ""), p.requestID("delete", "burla-default-1", "")
	if ins == del {
		t.Errorf("insert and delete share request ID %s", ins)
	}
	if again := p.requestID("insert", "burla-default-1", ""); again != ins {
		t.Errorf("request ID %s, then %s; want the same", ins, again)
	}
}

func TestList(t *testing.T) {
	checkPage := func(token string) func(*testing.T, *http.Request, []byte) {
		return func(t *testing.T, r *http.Request, _ []byte) {
			q := r.URL.Query()
			if got, want := q.Get("filter"), `labels.burla-cluster = "default"`; got != want {
				t.Errorf("filter %q; want %q", got, want)
			}
			if got := q.Get("pageToken"); got != token {
				t.Errorf("pageToken %q; want %q", got, token)
			}
		}
	}
	p, _ := newProvider(t, testConfig(),
		exchange{method: http.MethodGet, path: instances, check: checkPage(""), file: "list-page1.json"},
		exchange{method: http.MethodGet, path: instances, check: checkPage("Cj8KCWJ1cmxhLWRlZmF1bHQtMg=="), file: "list-page2.json"},
	)
	ids, err := p.List(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	// default-1 is stopping and default-3 terminated: orphans all the same. The
	// control plane's VM on page 2 is no node.
	if want := []string{"default-1", "default-2", "default-3"}; !slices.Equal(ids, want) {
		t.Errorf("List: %v; want %v", ids, want)
	}
}

func TestBadNodeIDRefusedBeforeAnyRequest(t *testing.T) {
	p, _ := newProvider(t, testConfig()) // any request fails the test
	for _, id := range []string{"", "Default-1", "default_1", "default-1-", "default/1", strings.Repeat("a", 58)} {
		n := testNode
		n.ID = id
		if err := p.Create(t.Context(), n); err == nil || !strings.Contains(err.Error(), "cannot name a VM") {
			t.Errorf("Create(%q): %v; want a refusal", id, err)
		}
		if err := p.Delete(t.Context(), provider.NodeSpec{ID: id}); err == nil || !strings.Contains(err.Error(), "cannot name a VM") {
			t.Errorf("Delete(%q): %v; want a refusal", id, err)
		}
	}
	if name, err := InstanceName(strings.Repeat("a", 57)); err != nil || len(name) != 63 {
		t.Errorf("InstanceName of 57 letters: %q, %v; want a 63-character name", name, err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"no project", func(c *Config) { c.Project = "" }, "Project and Zone are required"},
		{"no store", func(c *Config) { c.StoreURL = "" }, "StoreURL are required"},
		{"no binary", func(c *Config) { c.BinaryURL = "" }, "want gs://bucket/object or an https URL"},
		{"http binary", func(c *Config) { c.BinaryURL = "http://example.com/burla" }, "want gs://bucket/object"},
		{"bucket without object", func(c *Config) { c.BinaryURL = "gs://bucket/" }, "want gs://bucket/object"},
		{"runtime", func(c *Config) { c.Runtime = "kubernetes" }, `unknown runtime "kubernetes"`},
		{"digest", func(c *Config) { c.BinarySHA256 = strings.ToUpper(testBinarySHA256) }, "BinarySHA256"},
		{"short digest", func(c *Config) { c.BinarySHA256 = testBinarySHA256[:63] }, "BinarySHA256"},
		{"label key", func(c *Config) { c.Labels = map[string]string{"Team": "x"} }, `label key "Team"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.cfg(&cfg)
			_, err := New(t.Context(), cfg, option.WithoutAuthentication())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v; want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestMachineType(t *testing.T) {
	tests := []struct {
		cpus, ramMB int
		want        string // empty: an error
	}{
		{1, 0, "e2-standard-2"},
		{2, 8192, "e2-standard-2"},
		{2, 8193, "e2-standard-4"},
		{3, 0, "e2-standard-4"},
		{8, 65536, "e2-standard-16"},
		{32, 0, "e2-standard-32"},
		{33, 0, ""},
		{4, 200000, ""},
	}
	p := &Provider{cfg: testConfig()}
	for _, tt := range tests {
		got, err := p.machineType(provider.NodeSpec{CPUs: tt.cpus, RAMMB: tt.ramMB})
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%d CPUs, %d MB: %s; want an error", tt.cpus, tt.ramMB, got)
		case tt.want != "" && got != "zones/"+zone+"/machineTypes/"+tt.want:
			t.Errorf("%d CPUs, %d MB: %s, %v; want %s", tt.cpus, tt.ramMB, got, err, tt.want)
		}
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"default":               "default",
		"Data Science":          "data-science",
		"a_b-c.d":               "a_b-c-d",
		"":                      "",
		strings.Repeat("x", 70): strings.Repeat("x", 63),
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	values := []string{"plain", "it's", "", "'", "$HOME `id` \"x\" \\n *", "a b\tc"}
	want := map[string]string{"plain": `'plain'`, "it's": `'it'\''s'`, "": `''`, "'": `''\'''`}
	for in, q := range want {
		if got := shellQuote(in); got != q {
			t.Errorf("shellQuote(%q) = %s; want %s", in, got, q)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to run the quoted words")
	}
	words := make([]string, len(values))
	for i, v := range values {
		words[i] = shellQuote(v)
	}
	out, err := exec.Command(sh, "-c", `printf '%s\n' `+strings.Join(words, " ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !slices.Equal(got, values) {
		t.Errorf("the shell read %q; want %q", got, values)
	}
}

// The agent's script, run by a shell with printf for the binary, passes every
// flag value intact, single quotes included.
func TestStartupScriptRunsAgentWithFlags(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cfg, err := testConfig().withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Namespace = "team's namespace"
	cfg.ExtraAgentArgs = []string{"-v"}
	script, err := startupScript(cfg, testNode)
	if err != nil {
		t.Fatal(err)
	}
	_, agent, ok := strings.Cut(script, "cat >"+agentScript+" <<'BURLA_EOF'\n")
	agent, _, ok2 := strings.Cut(agent, "\nBURLA_EOF\n")
	if !ok || !ok2 {
		t.Fatalf("no agent script in the startup script:\n%s", script)
	}
	agent = strings.Replace(agent, "exec "+shellQuote(binaryPath), `exec printf '%s\n'`, 1)
	out, err := exec.Command(sh, "-c", agent).Output()
	if err != nil {
		t.Fatalf("%v: %s", err, agent)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if want := agentArgs(cfg, testNode)[1:]; !slices.Equal(got, want) {
		t.Errorf("the agent got %q; want %q", got, want)
	}
	if !slices.Contains(got, "team's namespace") {
		t.Errorf("the agent got %q; want the namespace with its quote", got)
	}
}

func TestStartupScriptRefusesControlCharacters(t *testing.T) {
	cfg, _ := testConfig().withDefaults()
	n := testNode
	n.Envs = []string{"image\nBURLA_EOF\nrm -rf /"}
	if _, err := startupScript(cfg, n); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("startupScript: %v; want a refusal", err)
	}
}

// The whole script, for both kinds of binary URL, against golden files; bash
// checks its syntax.
func TestStartupScriptGolden(t *testing.T) {
	tests := []struct {
		file string
		cfg  func(*Config)
	}{
		{"startup-gs.sh", func(c *Config) { c.BinaryURL = "gs://burla-test-bin/releases/v1 rc/burla" }},
		{"startup-https-docker.sh", func(c *Config) {
			c.BinaryURL = "https://github.com/burla-temporal/burla/releases/download/v1.0.0/burla-linux-amd64"
			c.Runtime = "docker"
		}},
		{"startup-temporal-cloud.sh", func(c *Config) {
			c.TemporalAddress = "burla.a1b2c.tmprl.cloud:7233"
			c.TemporalAPIKeySecret = "projects/burla-proj/secrets/temporal-api-key/versions/latest"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg := testConfig()
			tt.cfg(&cfg)
			cfg, err := cfg.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			script, err := startupScript(cfg, testNode)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if script != string(want) {
				t.Errorf("startup script differs from %s (go test -update rewrites it):\n%s", path, script)
			}
			if bash, err := exec.LookPath("bash"); err == nil {
				if out, err := exec.Command(bash, "-n", "-c", script).CombinedOutput(); err != nil {
					t.Errorf("bash -n: %v: %s", err, out)
				}
			}
		})
	}
}

// A node whose spec names another project and zone (burla cluster up --project
// --zone) is deleted there, not in the provider's own.
func TestDeleteInTheSpecsZone(t *testing.T) {
	other := "/compute/v1/projects/other-proj/zones/europe-west1-b/instances/burla-default-1"
	p, _ := newProvider(t, testConfig(), exchange{method: http.MethodDelete, path: other, check: checkRequestID, status: http.StatusNotFound, file: "not-found.json"})
	if err := p.Delete(t.Context(), provider.NodeSpec{ID: "default-1", Project: "other-proj", Zone: "europe-west1-b"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if p.cfg.Project != project || p.cfg.Zone != zone {
		t.Errorf("the provider's own project and zone changed to %s/%s", p.cfg.Project, p.cfg.Zone)
	}
}

// gce nodes are made to measure: the provider declares that it chooses their
// GPUs, region, disk and zone, and placement grows GPU, region and disk jobs on
// it for that alone.
func TestDeclaresWhatItChooses(t *testing.T) {
	want := provider.Capabilities{GPUs: true, Regions: true, Disks: true, Zones: true}
	if got := provider.Declared()[Name]; got != want {
		t.Errorf("provider.Declared()[%q] = %+v; want %+v", Name, got, want)
	}
}
