// Package temporalmetrics exposes the Temporal Go SDK's own metrics
// (temporal_request, temporal_activity_execution_latency,
// temporal_worker_task_slots_available, …) through Prometheus, so the control
// plane and the node agents serve them on their /metrics endpoints next to
// burla's metrics.
//
// The SDK reports through client.MetricsHandler: it names a metric and attaches
// tags at run time, and it uses one name with several tag sets (temporal_request
// with and without status_code, for instance). New adapts that to a Prometheus
// registry:
//
//   - counters become counters named <name>_total,
//   - gauges become gauges named <name>,
//   - timers become histograms in seconds named <name>_seconds,
//
// with names and tag keys made valid for Prometheus.
package temporalmetrics

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// New returns a Temporal SDK metrics handler that records into a collector it
// registers on reg. Set it as client.Options.MetricsHandler: the client and
// every worker made from it then report through it.
//
// The handler and everything obtained from it are safe for concurrent use.
// Once a tag set and a metric name have been seen, WithTags, Counter, Gauge and
// Timer return cached values, so the SDK's per-request calls do not allocate.
// Series are never removed, like the series of a Prometheus vec.
//
// Call New once per registry: two handlers on one registry would both expose
// the same series, and the registry would refuse to gather them. A nil reg
// gives a handler that discards everything.
func New(reg prometheus.Registerer) client.MetricsHandler {
	if reg == nil {
		return client.MetricsNopHandler
	}
	s := &series{byKey: make(map[string]prometheus.Metric)}
	reg.MustRegister(s) // cannot fail: s is unchecked (see series)
	return newHandler(s, nil)
}

// timerBuckets are the upper bounds, in seconds, of the histograms timers
// become: from 1 ms (a request to a nearby server) to 60 s (a slow activity).
// Longer observations, such as the SDK's 70 s long polls, land in +Inf.
var timerBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Help strings are per kind, not per SDK name: two SDK names that sanitize to
// one family must agree on help, or the registry refuses to gather them.
const (
	counterHelp = "Counter reported by the Temporal Go SDK."
	gaugeHelp   = "Gauge reported by the Temporal Go SDK."
	timerHelp   = "Timer reported by the Temporal Go SDK, in seconds."
)

// kind is the kind of metric the SDK asked for.
type kind uint8

const (
	counterKind kind = iota
	gaugeKind
	timerKind
)

// tag is one tag, as the SDK passed it or, once sanitized, as a label.
type tag struct{ key, value string }

// handler is the client.MetricsHandler for one set of tags.
type handler struct {
	series *series
	tags   []tag // sorted by key; never modified

	// The caches make the hot path two read-locked map lookups: the SDK
	// calls WithTags(…).Counter(…).Inc(1) around every request. mu is taken
	// before series.mu, never while holding it.
	mu       sync.RWMutex
	children map[string]*handler // by the encoding of the tags passed to WithTags
	counters map[string]*counter
	gauges   map[string]*gauge
	timers   map[string]*timer
}

var _ client.MetricsHandler = (*handler)(nil)

func newHandler(s *series, tags []tag) *handler {
	return &handler{
		series:   s,
		tags:     tags,
		children: make(map[string]*handler),
		counters: make(map[string]*counter),
		gauges:   make(map[string]*gauge),
		timers:   make(map[string]*timer),
	}
}

// WithTags returns the handler for h's tags overridden and extended by tags.
// The result is cached, so repeated calls with equal tags return one handler.
func (h *handler) WithTags(tags map[string]string) client.MetricsHandler {
	if len(tags) == 0 {
		return h
	}
	// Small arrays keep the lookup key on the stack for the SDK's usual
	// two or three tags.
	var keysBuf [8]string
	keys := keysBuf[:0]
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var keyBuf [256]byte
	key := keyBuf[:0]
	for _, k := range keys {
		key = appendString(appendString(key, k), tags[k])
	}

	h.mu.RLock()
	child := h.children[string(key)]
	h.mu.RUnlock()
	if child != nil {
		return child
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if child := h.children[string(key)]; child != nil {
		return child
	}
	child = newHandler(h.series, mergeTags(h.tags, keys, tags))
	h.children[string(key)] = child
	return child
}

// Counter returns the counter named name with h's tags.
func (h *handler) Counter(name string) client.MetricsCounter {
	return cached(&h.mu, h.counters, name, func() *counter {
		return &counter{h.series.get(counterKind, name, h.tags).(prometheus.Counter)}
	})
}

// Gauge returns the gauge named name with h's tags.
func (h *handler) Gauge(name string) client.MetricsGauge {
	return cached(&h.mu, h.gauges, name, func() *gauge {
		return &gauge{h.series.get(gaugeKind, name, h.tags).(prometheus.Gauge)}
	})
}

// Timer returns the timer named name with h's tags.
func (h *handler) Timer(name string) client.MetricsTimer {
	return cached(&h.mu, h.timers, name, func() *timer {
		return &timer{h.series.get(timerKind, name, h.tags).(prometheus.Histogram)}
	})
}

// cached returns cache[name], storing create() there first if it is missing.
// mu guards cache.
func cached[V any](mu *sync.RWMutex, cache map[string]V, name string, create func() V) V {
	mu.RLock()
	v, ok := cache[name]
	mu.RUnlock()
	if ok {
		return v
	}
	mu.Lock()
	defer mu.Unlock()
	if v, ok := cache[name]; ok {
		return v
	}
	v = create()
	cache[name] = v
	return v
}

// mergeTags returns old (sorted by key) with tags set, sorted by key; keys are
// the keys of tags, sorted. A key in both takes its value from tags.
func mergeTags(old []tag, keys []string, tags map[string]string) []tag {
	merged := make([]tag, 0, len(old)+len(keys))
	i := 0
	for _, k := range keys {
		for ; i < len(old) && old[i].key < k; i++ {
			merged = append(merged, old[i])
		}
		if i < len(old) && old[i].key == k {
			i++
		}
		merged = append(merged, tag{k, tags[k]})
	}
	return append(merged, old[i:]...)
}

// appendString appends s to b, length first, so that concatenated strings
// decode one way only and equal keys mean equal tag sets.
func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// The adapters are stored in the handlers' caches as pointers, so returning one
// as an interface does not allocate.

type counter struct{ c prometheus.Counter }

// Inc adds d. A Prometheus counter never goes down and panics if asked to,
// so a negative d, which the SDK never passes, is ignored.
func (c *counter) Inc(d int64) {
	if d > 0 {
		c.c.Add(float64(d))
	}
}

type gauge struct{ g prometheus.Gauge }

func (g *gauge) Update(v float64) { g.g.Set(v) }

type timer struct{ h prometheus.Histogram }

func (t *timer) Record(d time.Duration) { t.h.Observe(d.Seconds()) }

// series holds every counter, gauge and histogram the SDK has asked for, one
// per family name and label set, and is the Prometheus collector that exposes
// them.
//
// It is an unchecked collector (Describe sends nothing). The SDK chooses names
// and tags at run time and uses one name with several tag key sets; a registry
// refuses a second descriptor of a name with other label names, and a vec needs
// its label names up front, so neither registered metrics nor vecs could take
// what the SDK emits without panicking or dropping series. The registry still
// checks what an unchecked collector emits when it gathers, and one bad series
// fails the whole scrape, so series keeps that check passing by construction:
// names and labels are sanitized (see familyName and labelsFor), there is one
// series per name and label set, help depends on the kind only, and each kind
// owns its name suffix so that no name, or histogram suffix, has two types.
// A family whose series have different label names is valid Prometheus.
type series struct {
	mu    sync.RWMutex
	byKey map[string]prometheus.Metric
	all   []prometheus.Metric // append-only, so Collect reads it without holding mu
}

// get returns the series of kind k for the SDK's name and tags (sorted by
// key), making it if it does not exist.
func (s *series) get(k kind, name string, tags []tag) prometheus.Metric {
	family, labels := familyName(k, name), labelsFor(k, tags)
	key := appendString([]byte{byte(k)}, family)
	for _, l := range labels {
		key = appendString(appendString(key, l.key), l.value)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.byKey[string(key)]; ok {
		return m
	}
	constLabels := make(prometheus.Labels, len(labels))
	for _, l := range labels {
		constLabels[l.key] = l.value
	}
	var m prometheus.Metric
	switch k {
	case counterKind:
		m = prometheus.NewCounter(prometheus.CounterOpts{Name: family, Help: counterHelp, ConstLabels: constLabels})
	case gaugeKind:
		m = prometheus.NewGauge(prometheus.GaugeOpts{Name: family, Help: gaugeHelp, ConstLabels: constLabels})
	case timerKind:
		m = prometheus.NewHistogram(prometheus.HistogramOpts{Name: family, Help: timerHelp, ConstLabels: constLabels, Buckets: timerBuckets})
	}
	s.byKey[string(key)] = m
	s.all = append(s.all, m)
	return m
}

// Describe sends nothing, which makes series an unchecked collector.
func (s *series) Describe(chan<- *prometheus.Desc) {}

// Collect sends every series.
func (s *series) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	all := s.all
	s.mu.RUnlock()
	for _, m := range all {
		ch <- m
	}
}

// familyName returns the Prometheus family name for the SDK's metric name:
// the name made valid, with the suffix of its kind. Counters end in _total and
// histograms in _seconds; a gauge whose name would end in either, or in a
// histogram's _seconds_bucket, _seconds_count or _seconds_sum, gets _gauge
// appended. So families of different kinds never share a name, whatever the
// SDK calls them, and no scrape fails on a type conflict.
func familyName(k kind, name string) string {
	name = sanitize(name)
	switch k {
	case counterKind:
		return withSuffix(name, "_total")
	case timerKind:
		return withSuffix(name, "_seconds")
	}
	for _, suffix := range []string{"_total", "_seconds", "_seconds_bucket", "_seconds_count", "_seconds_sum"} {
		if strings.HasSuffix(name, suffix) {
			return name + "_gauge"
		}
	}
	return name
}

func withSuffix(name, suffix string) string {
	if strings.HasSuffix(name, suffix) {
		return name
	}
	return name + suffix
}

// labelsFor returns the labels of a series of kind k with the SDK's tags
// (sorted by key): keys made valid label names, values valid UTF-8, sorted by
// name. Tags with empty values are left out, as Prometheus treats an empty
// label as no label and would see two series where we expose one. A timer's
// "le" tag becomes "tag_le", as le holds a histogram's bucket bounds. If keys
// collide once sanitized ("a-b" and "a_b"), the smallest original key wins.
func labelsFor(k kind, tags []tag) []tag {
	labels := make([]tag, 0, len(tags))
	for _, t := range tags {
		if t.value == "" {
			continue
		}
		name := sanitize(t.key)
		if strings.HasPrefix(name, "__") { // reserved for Prometheus
			name = "_" + strings.TrimLeft(name, "_")
		}
		if k == timerKind && name == "le" {
			name = "tag_le"
		}
		labels = append(labels, tag{name, strings.ToValidUTF8(t.value, "\uFFFD")})
	}
	// Stable, so among keys that collide the one first in tags, the smallest,
	// comes first and survives.
	slices.SortStableFunc(labels, func(a, b tag) int { return strings.Compare(a.key, b.key) })
	return slices.CompactFunc(labels, func(a, b tag) bool { return a.key == b.key })
}

// sanitize returns s with every character that is not an ASCII letter, digit
// or underscore replaced by an underscore, and an underscore before a leading
// digit: a name valid for both metrics and labels in every Prometheus
// exposition format. Colons are replaced too, as they are left to recording
// rules.
func sanitize(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			b.WriteRune(r)
		case '0' <= r && r <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}
