package job

import (
	"errors"
	"strings"
	"testing"
)

func TestSharedKeysNameTheirTenant(t *testing.T) {
	for key, want := range map[string]string{
		SharedKey("acme", "data/in.csv"):           "acme",
		SharedKey("", "x"):                         DefaultTenant,
		SharedPrefix("acme"):                       "acme",
		SharedPrefix("acme") + "sub/":              "acme",
		"shared-acme":                              "", // no slash: not a prefix that names the tenant
		"shared-Acme/x":                            "",
		"shared-/x":                                "",
		"shared-" + strings.Repeat("t", 33) + "/x": "",
	} {
		if got := BlobTenant(key); got != want {
			t.Errorf("BlobTenant(%q) = %q; want %q", key, got, want)
		}
	}
}

func TestCheckSharedName(t *testing.T) {
	for _, name := range []string{"a", "data/in.csv", "a b/c-d_e.f", ".hidden", "x/..y/z..", "é/ü", strings.Repeat("n", MaxSharedName)} {
		if err := CheckSharedName(name); err != nil {
			t.Errorf("CheckSharedName(%q) = %v; want nil", name, err)
		}
	}
	for name, says := range map[string]string{
		"":                       "empty",
		"/etc/passwd":            "absolute",
		"dir/":                   "ends with /",
		"a//b":                   "empty segment",
		"..":                     `".."`,
		"a/../../b":              `".."`,
		"./a":                    `"."`,
		"bad\xffutf8":            "UTF-8",
		"line\nbreak":            "CR or LF",
		"nul\x00":                "NUL",
		"d/.burla-tmp-1":         ".burla-",
		strings.Repeat("n", 901): "longer than 900",
	} {
		err := CheckSharedName(name)
		if !errors.Is(err, ErrBadSharedName) || !strings.Contains(err.Error(), says) {
			t.Errorf("CheckSharedName(%.20q) = %v; want ErrBadSharedName saying %q", name, err, says)
		}
	}
}
