package temporalserver

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestLeakExperiment(t *testing.T) {
	if os.Getenv("LEAKEXP") == "" {
		t.Skip()
	}
	base := runtime.NumGoroutine()
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("goroutines running: %d (base %d)", runtime.NumGoroutine(), base)
	time.Sleep(2 * time.Second)
	s.Stop()
	for i := 0; i < 6; i++ {
		t.Logf("%ds after stop goroutines: %d", i*5, runtime.NumGoroutine())
		time.Sleep(5 * time.Second)
	}
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	os.WriteFile("/tmp/leak_stacks.txt", buf[:n], 0o644)
}
