package temporalserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/control"
	"github.com/burla-temporal/burla/job"
)

// guard admits calls to the frontend by API key (auth.Keys) and keeps each tenant
// to its own jobs:
//   - a tenant may start a JobWorkflow only under an ID of its own (job.TenantOf),
//     and the job's BurlaTenant search attribute is set here, whatever the caller
//     sent, so that a job records its tenant on the server's word;
//   - it may describe, read, signal, query, cancel or terminate only its own jobs
//     (and read the builds of its own environments);
//   - its lists and counts are narrowed to BurlaTenant = its tenant;
//   - nothing else: no task queue polling, no other workflows, no operator calls.
//
// The cluster's own components (control plane, node agents) and operators hold
// keys of a system role and pass. The server's worker service reaches the
// frontend through the internal frontend, on loopback, which the guard passes too
// when the caller proved, with the internode client certificate, that it is this
// process (see internal).
type guard struct {
	keys         *auth.Keys
	internalPort string // the internal frontend's port
	internode    *internodeTLS
	log          *slog.Logger
}

func (g *guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	if g.internal(ctx) || strings.HasPrefix(info.FullMethod, "/grpc.health.") {
		return handler(ctx, req)
	}
	p, err := g.principal(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "burla: "+err.Error())
	}
	if p.Role.System() {
		return handler(ctx, req)
	}
	if err := tenantMay(p.Tenant, method, req); err != nil {
		g.log.Info("refused a tenant's call", "tenant", p.Tenant, "key", p.ID, "method", method, "reason", err)
		return nil, status.Error(codes.PermissionDenied, fmt.Sprintf("burla: tenant %s: %v", p.Tenant, err))
	}
	return handler(ctx, req)
}

func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if g.internal(ss.Context()) {
		return handler(srv, ss)
	}
	p, err := g.principal(ss.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, "burla: "+err.Error())
	}
	if !p.Role.System() {
		return status.Error(codes.PermissionDenied, "burla: tenants may not open streams")
	}
	return handler(srv, ss)
}

// internal reports whether the call came in on the internal frontend from this
// process. The port alone proves nothing, since any process on the machine can
// dial loopback: the internal frontend's listener demands the internode client
// certificate in its TLS handshake, and the caller must have presented exactly
// that one, so that neither a listener configured otherwise nor a certificate
// from somewhere else can let a call through without a key.
func (g *guard) internal(ctx context.Context) bool {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.LocalAddr == nil {
		return false
	}
	_, port, err := net.SplitHostPort(pr.LocalAddr.String())
	return err == nil && port == g.internalPort && g.internode.ours(pr)
}

func (g *guard) principal(ctx context.Context) (auth.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return auth.Principal{}, fmt.Errorf("no API key: this cluster needs one (set %s, or burla.APIKey)", auth.EnvKey)
	}
	key, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return auth.Principal{}, fmt.Errorf("the authorization header is not a bearer API key")
	}
	return g.keys.Lookup(key)
}

// tenantMay says why tenant may not make the call, or nil; it narrows lists and
// stamps started jobs in place.
func tenantMay(tenant, method string, req any) error {
	switch r := req.(type) {
	case *workflowservice.GetSystemInfoRequest, *workflowservice.DescribeNamespaceRequest,
		*workflowservice.GetClusterInfoRequest, *workflowservice.GetSearchAttributesRequest:
		return nil
	case *workflowservice.StartWorkflowExecutionRequest:
		return mayStart(tenant, r)
	case *workflowservice.DescribeWorkflowExecutionRequest:
		return mayRead(tenant, r.GetExecution())
	case *workflowservice.GetWorkflowExecutionHistoryRequest:
		return mayRead(tenant, r.GetExecution())
	case *workflowservice.GetWorkflowExecutionHistoryReverseRequest:
		return mayRead(tenant, r.GetExecution())
	case *workflowservice.QueryWorkflowRequest:
		return mayTouch(tenant, r.GetExecution())
	case *workflowservice.RequestCancelWorkflowExecutionRequest:
		return mayTouch(tenant, r.GetWorkflowExecution())
	case *workflowservice.TerminateWorkflowExecutionRequest:
		return mayTouch(tenant, r.GetWorkflowExecution())
	case *workflowservice.SignalWorkflowExecutionRequest:
		// A job's signals (nodes granted or lost) come from its cluster alone: a
		// tenant that sent them could run its job on nodes it was never granted.
		return fmt.Errorf("may not signal %q: a job's signals come from its cluster", r.GetWorkflowExecution().GetWorkflowId())
	case *workflowservice.ListWorkflowExecutionsRequest:
		return narrow(tenant, &r.Query)
	case *workflowservice.CountWorkflowExecutionsRequest:
		return narrow(tenant, &r.Query)
	case *workflowservice.ScanWorkflowExecutionsRequest:
		return narrow(tenant, &r.Query)
	}
	return fmt.Errorf("%s is for the cluster's own components", method)
}

func mayStart(tenant string, r *workflowservice.StartWorkflowExecutionRequest) error {
	id, typ := r.GetWorkflowId(), r.GetWorkflowType().GetName()
	switch {
	case r.GetTaskQueue().GetName() != control.TaskQueueControl:
		return fmt.Errorf("%s %q: workflows run on task queue %s, not %q", typ, id, control.TaskQueueControl, r.GetTaskQueue().GetName())
	case r.GetCronSchedule() != "" || r.GetRequestEagerExecution() || len(r.GetCompletionCallbacks()) > 0 || r.GetVersioningOverride() != nil:
		// Eager execution would hand the caller the workflow's first task, and
		// callbacks make the server call out; a tenant's job needs neither, nor a
		// schedule or a pinned worker version.
		return fmt.Errorf("%s %q: a tenant's start may not ask for a cron schedule, eager execution, completion callbacks or a versioning override", typ, id)
	case typ == control.WorkflowEnvBuild && ownsEnv(tenant, id):
		return nil
	case typ != control.WorkflowJob:
		return fmt.Errorf("may start jobs and environment builds, not %s %q", typ, id)
	case !job.ValidID(id) || job.TenantOf(id) != tenant:
		return fmt.Errorf("job ID %q is not one of this tenant's (they read j-%s-…)", id, tenant)
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(tenant)
	if err != nil {
		return err
	}
	if r.SearchAttributes == nil {
		r.SearchAttributes = &commonpb.SearchAttributes{}
	}
	if r.SearchAttributes.IndexedFields == nil {
		r.SearchAttributes.IndexedFields = map[string]*commonpb.Payload{}
	}
	p.Metadata["type"] = []byte("Keyword")
	r.SearchAttributes.IndexedFields[control.SearchTenant] = p
	return nil
}

// mayRead allows a tenant's own jobs and environment builds.
func mayRead(tenant string, ex *commonpb.WorkflowExecution) error {
	if ownsEnv(tenant, ex.GetWorkflowId()) {
		return nil
	}
	return mayTouch(tenant, ex)
}

// mayTouch allows a tenant's own jobs.
func mayTouch(tenant string, ex *commonpb.WorkflowExecution) error {
	id := ex.GetWorkflowId()
	if job.ValidID(id) && job.TenantOf(id) == tenant {
		return nil
	}
	return fmt.Errorf("no job %q of this tenant", id)
}

func ownsEnv(tenant, id string) bool {
	t, _, ok := control.ParseEnvBuildWorkflowID(id)
	return ok && t == tenant
}

// narrow confines the visibility query q to tenant's workflows, in place. The
// caller's query goes in parentheses, so it must not be able to close them: one
// whose brackets do not balance outside its string literals is refused.
func narrow(tenant string, q *string) error {
	clause := fmt.Sprintf("%s = '%s'", control.SearchTenant, tenant) // ValidTenant: no quotes
	if err := balanced(*q); err != nil {
		return err
	}
	if strings.TrimSpace(*q) == "" {
		*q = clause
	} else {
		*q = clause + " AND (" + *q + ")"
	}
	return nil
}

// balanced checks that q's parentheses pair up and its quotes close.
func balanced(q string) error {
	depth := 0
	var quote rune
	escaped := false
	for _, c := range q {
		switch {
		case quote != 0:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == quote:
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth < 0 {
				return errors.New("list query closes a parenthesis it did not open")
			}
		}
	}
	if quote != 0 || depth != 0 {
		return errors.New("list query has an unclosed quote or parenthesis")
	}
	return nil
}
