package job

import (
	"strings"
	"testing"
)

func TestCheckVersion(t *testing.T) {
	for v, want := range map[int]string{
		0:               "", // a client from before versions speaks 1
		MinSpecVersion:  "",
		SpecVersion:     "",
		SpecVersion + 1: "upgrade the cluster",
	} {
		s := Spec{ID: "j-x", Version: v}
		err := s.CheckVersion()
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("version %d: %v; want %q", v, err, want)
		}
	}
}
