package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeysFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	acme, err := Add(path, RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := Add(path, RoleAdmin, "")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode: %v %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), acme) || strings.Contains(string(data), admin) {
		t.Fatal("the keys file holds a key, not only its hash")
	}
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := k.Lookup(acme); err != nil || p.Role != RoleTenant || p.Tenant != "acme" {
		t.Fatalf("acme's key: %+v %v", p, err)
	}
	if p, err := k.Lookup(admin); err != nil || p.Role != RoleAdmin || p.Tenant != "" || !p.Role.System() {
		t.Fatalf("admin's key: %+v %v", p, err)
	}
	// A well-formed key the file does not hold, and one that claims another tenant.
	other, _ := NewKey(RoleTenant, "acme")
	if _, err := k.Lookup(other); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	forged := strings.Replace(acme, "_acme_", "_evil_", 1)
	if _, err := k.Lookup(forged); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a key with its tenant changed: %v", err)
	}
	for _, bad := range []string{"", "bk_tenant_acme", "bk_root_cluster_" + strings.Repeat("a", 52), strings.Repeat("x", 200)} {
		if _, err := k.Lookup(bad); err == nil {
			t.Errorf("Lookup(%q) succeeded", bad)
		}
	}

	// Revoking takes effect without reopening.
	time.Sleep(1100 * time.Millisecond) // Lookup looks at the file at most once a second
	if n, err := Revoke(path, KeyID(acme)); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if _, err := k.Lookup(acme); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a revoked key still works: %v", err)
	}
	if _, err := k.Lookup(admin); err != nil {
		t.Fatalf("revoking one key revoked another: %v", err)
	}
}

func TestEphemeralAndBadNames(t *testing.T) {
	k := NewMemory()
	key, err := k.AddEphemeral(RoleNode, "")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := k.Lookup(key); err != nil || p.Role != RoleNode {
		t.Fatalf("ephemeral key: %+v %v", p, err)
	}
	for _, tenant := range []string{"", "Acme", "a_b", "-a", "a-", strings.Repeat("a", 33), "a.b"} {
		if _, err := NewKey(RoleTenant, tenant); err == nil {
			t.Errorf("NewKey accepted tenant %q", tenant)
		}
	}
	if _, err := NewKey("root", ""); err == nil {
		t.Error("NewKey accepted role root")
	}
}

func TestChildEnv(t *testing.T) {
	env := ChildEnv([]string{"A=1", EnvKey + "=mine", "B=2"}, "theirs")
	if strings.Join(env, " ") != "A=1 B=2 "+EnvKey+"=theirs" {
		t.Fatalf("ChildEnv: %q", env)
	}
	if env := ChildEnv([]string{EnvKey + "=mine"}, ""); len(env) != 0 {
		t.Fatalf("ChildEnv without a key kept %q", env)
	}
}
