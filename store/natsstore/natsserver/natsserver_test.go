package natsserver

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/burla-temporal/burla/auth"
)

// The server remembers the key of each client it admitted only while the client
// is connected, so that clients coming and going do not grow it without bound.
func TestAdmittedClientsAreForgottenWhenTheyGo(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	key, err := auth.Add(keysFile, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(keysFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Config{StoreDir: t.TempDir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	admitted := func() int {
		s.auth.connsMu.Lock()
		defer s.auth.connsMu.Unlock()
		return len(s.auth.conns)
	}

	var ncs []*nats.Conn
	for range 5 {
		nc, err := nats.Connect(s.URL(), nats.Token(key))
		if err != nil {
			t.Fatal(err)
		}
		ncs = append(ncs, nc)
	}
	if n := admitted(); n != len(ncs) {
		t.Fatalf("%d clients remembered; want %d", n, len(ncs))
	}
	for _, nc := range ncs[1:] {
		nc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for admitted() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients remembered 5s after all but one left", admitted())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ncs[0].IsConnected() {
		t.Fatal("the client that stayed was disconnected")
	}
	ncs[0].Close()
}
