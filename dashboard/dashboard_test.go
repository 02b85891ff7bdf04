package dashboard

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burla-temporal/burla/auth"
	"github.com/burla-temporal/burla/job"
)

// A cancel is refused before it reaches Temporal (this dashboard has none) when
// another site's page sends it, when the key may not cancel, or when the job is
// another tenant's.
func TestCancelRefusals(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	acme, err := auth.Add(file, auth.RoleTenant, "acme")
	if err != nil {
		t.Fatal(err)
	}
	node, err := auth.Add(file, auth.RoleNode, "")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{Keys: keys})
	globexJob := job.NewID(time.Now(), "globex")
	acmeJob := job.NewID(time.Now(), "acme")
	for _, c := range []struct {
		name, method, path, key string
		header                  map[string]string
		cookie                  bool
		code                    int
		says                    string
	}{
		{"from another site, with the key's cookie", "POST", "/api/jobs/" + acmeJob + "/cancel", acme,
			map[string]string{"Sec-Fetch-Site": "cross-site"}, true, http.StatusForbidden, "cross-origin"},
		{"from another origin, by Origin", "POST", "/api/jobs/" + acmeJob + "/cancel", acme,
			map[string]string{"Origin": "https://evil.example"}, true, http.StatusForbidden, "cross-origin"},
		{"with a node's key", "POST", "/api/jobs/" + acmeJob + "/cancel", node, nil, false, http.StatusForbidden, "a node key cannot cancel jobs"},
		{"another tenant's job", "POST", "/api/jobs/" + globexJob + "/cancel", acme, nil, false, http.StatusForbidden, "is not tenant acme's"},
		{"no key", "POST", "/api/jobs/" + acmeJob + "/cancel", "", nil, false, http.StatusUnauthorized, "needs an API key"},
		{"not a job ID", "POST", "/api/jobs/nonsense/cancel", acme, nil, false, http.StatusBadRequest, "not a job ID"},
		{"by GET", "GET", "/api/jobs/" + acmeJob + "/cancel", acme, nil, false, http.StatusNotFound, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, "http://dashboard.test"+c.path, nil)
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			if c.key != "" && c.cookie {
				r.AddCookie(&http.Cookie{Name: keyCookie, Value: c.key})
			} else if c.key != "" {
				r.Header.Set("Authorization", "Bearer "+c.key)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.says) {
				t.Errorf("%s %s: %d %q; want %d saying %q", c.method, c.path, w.Code, w.Body.String(), c.code, c.says)
			}
		})
	}
}

// A log stream's filter and resume point are checked before any store is read
// (this dashboard has none).
func TestLogsBadRequests(t *testing.T) {
	h := New(Config{})
	id := job.NewID(time.Now(), "acme")
	for _, c := range []struct {
		query, lastID, says string
	}{
		{"?input=-1", "", "is not an input's index"},
		{"?input=x", "", "is not an input's index"},
		{"", "ten", "is not a count of lines"},
	} {
		r := httptest.NewRequest("GET", "http://dashboard.test/api/jobs/"+id+"/logs"+c.query, nil)
		if c.lastID != "" {
			r.Header.Set("Last-Event-ID", c.lastID)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), c.says) {
			t.Errorf("logs%s, Last-Event-ID %q: %d %q; want 400 saying %q", c.query, c.lastID, w.Code, w.Body.String(), c.says)
		}
	}
}
