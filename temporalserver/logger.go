package temporalserver

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.uber.org/zap/zapcore"
)

// The server logs a lot at INFO (every shard, every service lifecycle step),
// which is useless noise for a developer running `burla dev`, so only WARN and
// above get through. Once Stop is called everything is muted: while stopping,
// the server's services, system workers and clients complain (some at ERROR)
// about every poll and connection cut short, and a few of its goroutines
// outlive Stop, retrying against the closed frontend.
const (
	levelRunning = slog.LevelWarn
	levelStopped = slog.Level(1 << 20)
)

// ignoredMessages are known-harmless warnings the server prints on every
// start.
var ignoredMessages = []string{
	// We do not enable the frontend's HTTP API (nor Nexus).
	"HTTP API port has not been set.",
}

// quietHandler drops records below a (changeable) level, and the known
// harmless warnings, before they reach the wrapped handler.
type quietHandler struct {
	slog.Handler
	level *slog.LevelVar
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, m := range ignoredMessages {
		if strings.HasPrefix(r.Message, m) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs), h.level}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.level}
}

// quietSlog returns l (or a discarding logger if l is nil) filtered by level.
func quietSlog(l *slog.Logger, level *slog.LevelVar) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(quietHandler{l.Handler(), level})
}

// serverLogger adapts a *slog.Logger to the Temporal server's log.Logger
// interface. Tags added with With are kept unconverted until a record is
// actually emitted: the server creates many short-lived tagged loggers on hot
// paths, and almost none of them ever log at WARN or above.
type serverLogger struct {
	sl    *slog.Logger // filtered by quietHandler
	fatal *slog.Logger // unfiltered, for the message explaining an exit
	tags  []tag.Tag
}

var (
	_ log.Logger      = (*serverLogger)(nil)
	_ log.WithLogger  = (*serverLogger)(nil)
	_ log.SLogWrapper = (*serverLogger)(nil)
)

func newServerLogger(sl, fatal *slog.Logger) *serverLogger {
	if fatal == nil {
		fatal = slog.New(slog.DiscardHandler)
	}
	return &serverLogger{sl: sl, fatal: fatal}
}

func (l *serverLogger) Debug(msg string, tags ...tag.Tag) { l.emit(slog.LevelDebug, msg, tags) }
func (l *serverLogger) Info(msg string, tags ...tag.Tag)  { l.emit(slog.LevelInfo, msg, tags) }
func (l *serverLogger) Warn(msg string, tags ...tag.Tag)  { l.emit(slog.LevelWarn, msg, tags) }
func (l *serverLogger) Error(msg string, tags ...tag.Tag) { l.emit(slog.LevelError, msg, tags) }

// DPanic only panics in development builds of the server; here it is an error.
func (l *serverLogger) DPanic(msg string, tags ...tag.Tag) { l.emit(slog.LevelError, msg, tags) }

func (l *serverLogger) Panic(msg string, tags ...tag.Tag) {
	l.emit(slog.LevelError, msg, tags)
	panic(msg)
}

// Fatal keeps the server's contract that Fatal does not return (the zap
// logger it normally uses exits the process too). Start checks the ports it is
// given beforehand so that the common causes (a port already in use) become
// ordinary errors instead.
func (l *serverLogger) Fatal(msg string, tags ...tag.Tag) {
	(&serverLogger{sl: l.fatal, tags: l.tags}).emit(slog.LevelError, "temporal server fatal error, exiting: "+msg, tags)
	os.Exit(1)
}

func (l *serverLogger) With(tags ...tag.Tag) log.Logger {
	return &serverLogger{sl: l.sl, fatal: l.fatal, tags: append(slices.Clip(l.tags), tags...)}
}

// SLog lets server components that log through slog use our logger directly.
func (l *serverLogger) SLog() *slog.Logger { return l.sl }

func (l *serverLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	ctx := context.Background()
	if !l.sl.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(l.tags)+len(tags))
	for _, t := range l.tags {
		attrs = appendTag(attrs, t)
	}
	for _, t := range tags {
		attrs = appendTag(attrs, t)
	}
	l.sl.LogAttrs(ctx, level, msg, attrs...)
}

func appendTag(attrs []slog.Attr, t tag.Tag) []slog.Attr {
	if t == nil || t.Key() == "" {
		return attrs
	}
	if zt, ok := t.(tag.ZapTag); ok {
		// Encode the zap field ourselves: ZapTag.Value picks an arbitrary
		// entry when a field expands to several keys (errors do).
		enc := zapcore.NewMapObjectEncoder()
		zt.Field().AddTo(enc)
		if v, ok := enc.Fields[zt.Key()]; ok {
			return append(attrs, slog.Any(zt.Key(), v))
		}
	}
	v := t.Value()
	if err, ok := v.(error); ok {
		v = err.Error()
	}
	return append(attrs, slog.Any(t.Key(), v))
}
