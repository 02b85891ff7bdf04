// Package dashboard serves the cluster's web dashboard: its nodes and their
// containers, its jobs with their progress, a job's logs live, the standby settings,
// and links into the Temporal Web UI for every workflow. It reads everything through
// package status, so it shows what `burla jobs` and `burla cluster status` show.
//
// The page is plain HTML and JavaScript embedded in the binary; it polls a small
// JSON API and follows a job's logs with server-sent events:
//
//	GET /api/cluster           the cluster: standby settings and nodes
//	GET /api/jobs              recent jobs (?state=Running&limit=N), with progress
//	                           and, for a job that runs no call, what it waits for
//	GET /api/jobs/{id}         one job
//	GET /api/jobs/{id}/logs    the job's lines from the first, as server-sent events,
//	                           until the job ends (an "end" event); ?input=N, the
//	                           lines of input N alone. Each event's ID counts the
//	                           lines so far, so a reconnecting EventSource, which
//	                           sends the last as Last-Event-ID, resumes after them
//	POST /api/jobs/{id}/cancel cancels the job, as `burla jobs cancel` does: a
//	                           tenant's key its own jobs, an admin's any; a
//	                           request from another site is refused
package dashboard

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
	"github.com/burla-temporal/burla/status"
	"github.com/burla-temporal/burla/store"
)

// Config is what the dashboard reads from.
type Config struct {
	Temporal client.Client
	Store    store.Store
	// Cluster is the cluster shown; empty means control.DefaultCluster.
	Cluster string
	// Namespace and TemporalUI (the Web UI's base URL, such as
	// http://127.0.0.1:8233) make the links into the Temporal UI; without a
	// TemporalUI there are none.
	Namespace  string
	TemporalUI string
	// Keys, when set, makes the dashboard ask for an API key (package auth): a
	// tenant's key shows that tenant's jobs only; an admin's, every job.
	Keys   *auth.Keys
	Logger *slog.Logger
}

//go:embed ui
var ui embed.FS

// New returns the dashboard's handler.
func New(cfg Config) http.Handler {
	cfg.Cluster = cmp.Or(cfg.Cluster, control.DefaultCluster)
	cfg.Namespace = cmp.Or(cfg.Namespace, "default")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &dashboard{cfg: cfg}
	mux := http.NewServeMux()
	static, _ := fs.Sub(ui, "ui")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/cluster", d.cluster)
	mux.HandleFunc("GET /api/jobs", d.jobs)
	mux.HandleFunc("GET /api/jobs/{id}", d.job)
	mux.HandleFunc("GET /api/jobs/{id}/logs", d.logs)
	mux.HandleFunc("POST /api/jobs/{id}/cancel", d.cancel)
	var h http.Handler = mux
	if cfg.Keys != nil {
		h = d.authenticate(h)
	}
	// A page of another site cannot make a browser that holds the key's cookie
	// cancel a job: a request that is not GET or HEAD must come from this
	// origin (Sec-Fetch-Site, or else Origin, as browsers send them).
	return http.NewCrossOriginProtection().Handler(h)
}

// keyCookie holds the API key a browser logged in with.
const keyCookie = "burla_key"

type principalKey struct{}

// authenticate admits requests that present a key the keys file holds: in the
// Authorization header ("Bearer KEY"), or in the cookie that opening /?key=KEY
// once sets (the redirect takes the key out of the address bar).
func (d *dashboard) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := r.URL.Query().Get("key"); k != "" && r.URL.Path == "/" {
			if _, err := d.cfg.Keys.Lookup(k); err != nil {
				httpError(w, http.StatusUnauthorized, err)
				return
			}
			// Over TLS the cookie is Secure: a browser never sends it in plaintext.
			http.SetCookie(w, &http.Cookie{Name: keyCookie, Value: k, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			if c, err := r.Cookie(keyCookie); err == nil {
				key = c.Value
			}
		}
		if key == "" {
			httpError(w, http.StatusUnauthorized, errors.New("this dashboard needs an API key: open /?key=YOUR_KEY once, or send Authorization: Bearer YOUR_KEY"))
			return
		}
		p, err := d.cfg.Keys.Lookup(key)
		if err != nil {
			httpError(w, http.StatusUnauthorized, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// tenant is the tenant whose jobs alone the request may see, or "" for every
// tenant's (no keys, or a key of a system role).
func tenant(r *http.Request) string {
	p, ok := r.Context().Value(principalKey{}).(auth.Principal)
	if !ok || p.Role.System() {
		return ""
	}
	return p.Tenant
}

// viewer is whose job IDs the request may see named in what a job waits for.
func viewer(r *http.Request) string {
	if t := tenant(r); t != "" {
		return t
	}
	return status.AllTenants
}

// mayCancel refuses the request if its key may not cancel jobs: only a tenant's
// (its own, as maySee checks) and an admin's may, not a node's nor the control
// plane's.
func mayCancel(w http.ResponseWriter, r *http.Request) bool {
	p, ok := r.Context().Value(principalKey{}).(auth.Principal)
	if ok && p.Role != auth.RoleTenant && p.Role != auth.RoleAdmin {
		httpError(w, http.StatusForbidden, fmt.Errorf("a %s key cannot cancel jobs", p.Role))
		return false
	}
	return true
}

// maySee refuses the request if it may not see job id.
func maySee(w http.ResponseWriter, r *http.Request, id string) bool {
	if t := tenant(r); t != "" && job.TenantOf(id) != t {
		httpError(w, http.StatusForbidden, fmt.Errorf("job %s is not tenant %s's", id, t))
		return false
	}
	return true
}

type dashboard struct {
	cfg Config
}

// apiTimeout bounds one API request but the log stream.
const apiTimeout = 10 * time.Second

// Cluster is the body of GET /api/cluster.
type Cluster struct {
	Name         string              `json:"name"`
	Standby      control.StandbySpec `json:"standby"`
	ShuttingDown bool                `json:"shutting_down,omitempty"`
	Lost         int                 `json:"lost"`
	Nodes        []status.Node       `json:"nodes"`
	Jobs         []*control.JobClaim `json:"jobs"` // jobs holding nodes
	Links        map[string]string   `json:"links,omitempty"`
	Error        string              `json:"error,omitempty"`
	Temporal     map[string]string   `json:"temporal"`
}

func (d *dashboard) cluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	out := Cluster{Name: d.cfg.Cluster, Temporal: map[string]string{"namespace": d.cfg.Namespace, "ui": d.cfg.TemporalUI}}
	cs, err := control.NewClient(d.cfg.Temporal).Status(ctx, d.cfg.Cluster)
	if err != nil {
		// The nodes' own records still say something; the cluster may be down.
		out.Error = err.Error()
	}
	records, err := d.cfg.Store.ListNodes(ctx)
	if err != nil {
		httpError(w, http.StatusBadGateway, fmt.Errorf("list nodes: %w", err))
		return
	}
	out.Standby, out.ShuttingDown, out.Lost = cs.Standby, cs.ShuttingDown, cs.Lost
	out.Nodes = status.Nodes(cs, records)
	out.Jobs = []*control.JobClaim{}
	t := tenant(r)
	for _, c := range cs.Jobs {
		if t == "" || job.TenantOf(c.JobID) == t {
			out.Jobs = append(out.Jobs, c)
		}
	}
	for i, n := range out.Nodes {
		if t != "" && n.Job != "" && job.TenantOf(n.Job) != t {
			out.Nodes[i].Job = "(another tenant's)"
		}
	}
	if out.Nodes == nil {
		out.Nodes = []status.Node{}
	}
	if l := d.link(control.ClusterWorkflowID(d.cfg.Cluster)); l != "" {
		out.Links = map[string]string{"workflow": l}
	}
	writeJSON(w, out)
}

// Job is a job with its links into the Temporal UI.
type Job struct {
	status.Job
	Link string `json:"link,omitempty"`
}

func (d *dashboard) jobs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	f := status.Filter{State: job.State(r.URL.Query().Get("state")), Tenant: tenant(r), Limit: 50}
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
		f.Limit = min(n, 500)
	}
	list, err := status.List(ctx, d.cfg.Temporal, f)
	if err != nil {
		httpError(w, http.StatusBadGateway, err)
		return
	}
	// Each job that has not ended gets its progress and what it waits for.
	status.Explain(ctx, d.cfg.Temporal, d.cfg.Store, viewer(r), list, nil)
	out := make([]Job, len(list))
	for i, j := range list {
		out[i] = Job{Job: j, Link: d.link(j.ID)}
	}
	writeJSON(w, out)
}

func (d *dashboard) job(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	if !maySee(w, r, r.PathValue("id")) {
		return
	}
	j, err := status.GetFor(ctx, d.cfg.Temporal, d.cfg.Store, r.PathValue("id"), viewer(r))
	switch {
	case errors.Is(err, status.ErrNoJob):
		httpError(w, http.StatusNotFound, err)
		return
	case err != nil && !job.ValidID(r.PathValue("id")):
		httpError(w, http.StatusBadRequest, err)
		return
	case err != nil:
		httpError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, Job{Job: j, Link: d.link(j.ID)})
}

// Cancelled is the body of POST /api/jobs/{id}/cancel.
type Cancelled struct {
	Job             string `json:"job"`
	CancelRequested bool   `json:"cancel_requested"`
}

func (d *dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	id := r.PathValue("id")
	if !job.ValidID(id) {
		httpError(w, http.StatusBadRequest, fmt.Errorf("%q is not a job ID", id))
		return
	}
	if !mayCancel(w, r) || !maySee(w, r, id) {
		return
	}
	if _, err := status.GetFor(ctx, d.cfg.Temporal, d.cfg.Store, id, viewer(r)); errors.Is(err, status.ErrNoJob) {
		httpError(w, http.StatusNotFound, err)
		return
	} else if err != nil {
		httpError(w, http.StatusBadGateway, err)
		return
	}
	if err := d.cfg.Temporal.CancelWorkflow(ctx, id, ""); err != nil {
		httpError(w, http.StatusBadGateway, fmt.Errorf("cancel job %s: %w", id, err))
		return
	}
	d.cfg.Logger.Info("job cancelled from the dashboard", "job", id, "by", viewer(r))
	writeJSON(w, Cancelled{Job: id, CancelRequested: true})
}

// Line is one log line as the dashboard sends it.
type Line struct {
	Index  int64  `json:"i"`
	Stderr bool   `json:"e,omitempty"`
	Text   string `json:"t"`
}

// maxEventLines bounds the lines in one server-sent event.
const maxEventLines = 1000

// logs streams a job's lines from the first as server-sent events ("lines", a
// JSON array of Line), and an "end" event with the job's state once the job has
// ended and every line it printed has been sent.
func (d *dashboard) logs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !job.ValidID(id) {
		httpError(w, http.StatusBadRequest, fmt.Errorf("%q is not a job ID", id))
		return
	}
	if !maySee(w, r, id) {
		return
	}
	box := &lineBox{ready: make(chan struct{}, 1), input: -1}
	if q := r.URL.Query().Get("input"); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 0 {
			httpError(w, http.StatusBadRequest, fmt.Errorf("input %q is not an input's index", q))
			return
		}
		box.input = n
	}
	// The lines an earlier connection of this stream delivered, skipped.
	var seen, after int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httpError(w, http.StatusBadRequest, fmt.Errorf("Last-Event-ID %q is not a count of lines", v))
			return
		}
		after = n
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	ctx := r.Context()
	watch, err := d.cfg.Store.WatchLogs(ctx, id, box.put)
	if err != nil {
		httpError(w, http.StatusBadGateway, fmt.Errorf("logs of job %s: %w", id, err))
		return
	}
	defer watch.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	send := func(event string, v any) bool {
		b, _ := json.Marshal(v)
		id := ""
		if event == "lines" {
			id = fmt.Sprintf("id: %d\n", seen)
		}
		if _, err := fmt.Fprintf(w, "event: %s\n%sdata: %s\n\n", event, id, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	drain := func() bool {
		lines := box.take()
		skip := min(int64(len(lines)), max(0, after-seen))
		lines, seen = lines[skip:], seen+skip
		for len(lines) > 0 {
			n := min(len(lines), maxEventLines)
			seen += int64(n)
			if !send("lines", lines[:n]) {
				return false
			}
			lines = lines[n:]
		}
		return true
	}
	ended := make(chan job.State, 1)
	go func() {
		// The job's end comes after its last line is stored.
		err := d.cfg.Temporal.GetWorkflow(ctx, id, "").Get(ctx, nil)
		if ctx.Err() != nil {
			return
		}
		state := job.StateSucceeded
		dctx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		if resp, derr := d.cfg.Temporal.DescribeWorkflowExecution(dctx, id, ""); derr == nil {
			state = status.StateOf(resp.GetWorkflowExecutionInfo())
		} else if err != nil {
			state = job.StateFailed
		}
		ended <- state
	}()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-box.ready:
			if !drain() {
				return
			}
		case state := <-ended:
			sctx, cancel := context.WithTimeout(ctx, apiTimeout)
			err := watch.Sync(sctx)
			cancel()
			if err != nil {
				d.cfg.Logger.Warn("dashboard: sync logs", "job", id, "error", err)
			}
			if drain() {
				send("end", map[string]string{"state": string(state)})
			}
			return
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// lineBox collects lines from a store watch, whose callback must never block:
// those of input alone, unless it is -1.
type lineBox struct {
	mu    sync.Mutex
	lines []Line
	ready chan struct{}
	input int64
}

func (b *lineBox) put(batch []store.LogLine) {
	b.mu.Lock()
	for _, l := range batch {
		if b.input >= 0 && l.Index != b.input {
			continue
		}
		b.lines = append(b.lines, Line{Index: l.Index, Stderr: l.Stream == store.Stderr, Text: l.Text})
	}
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

func (b *lineBox) take() []Line {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := b.lines
	b.lines = nil
	return lines
}

// link is the Temporal UI's page of a workflow, or "" without a UI.
func (d *dashboard) link(workflowID string) string {
	if d.cfg.TemporalUI == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", d.cfg.TemporalUI, url.PathEscape(d.cfg.Namespace), url.PathEscape(workflowID))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
