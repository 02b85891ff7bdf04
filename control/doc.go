// Package control is the control contract: everything that crosses a process
// boundary between the SDK, the command, the dashboard, the control plane's
// workflows and activities, and the node agents.
//
//   - names.go: task queues, workflow and activity types, workflow IDs, updates,
//     signals, queries and search attributes. Temporal calls everything by name: a
//     workflow registered as "JobWorkflow" must be started as "JobWorkflow".
//   - errors.go: the application error types (ErrorType) that end a job, an
//     activity or a request, which the receiving side switches on.
//   - job.go, cluster.go, node.go, env.go: the inputs and outputs of every
//     workflow and activity, and the cluster's state, in the shape their payloads
//     are recorded in histories: a field renamed here is a payload that no longer
//     replays (the workflows' replay tests hold that).
//   - client.go: Client, the typed calls over a Temporal client (start a job, build
//     an environment, bring a cluster up, read it, change it, shut it down, wait
//     for it) that every program uses instead of spelling the names itself.
//
// It imports the job spec, and Temporal's client for the typed calls, and nothing
// of the workflows, activities or stores: the SDK links it without them.
package control
