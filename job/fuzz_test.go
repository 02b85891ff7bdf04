package job

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fuzz targets below check the job spec and job IDs where they cross from the
// SDK and the API into the servers: a spec that validates is one every component
// can use, and IDs, tenants and TenantOf agree. Their seed corpora are in
// testdata/fuzz; scripts/fuzz.sh runs them.

// goodSpec is a spec that validates, in JSON.
const goodSpec = `{"id":"j-acme-0123456789abcdefghij","tenant":"acme","function":"double",` +
	`"binary":"0000000000000000000000000000000000000000000000000000000000000000",` +
	`"inputs":3,"func_cpu":1,"lease":10000000000,"client_timeout":5000000000,"created":"2025-01-02T03:04:05Z"}`

func FuzzSpecDecode(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte(strings.Replace(goodSpec, `"tenant":"acme"`, `"tenant":"other"`, 1)))
	f.Add([]byte(strings.Replace(goodSpec, `"func_cpu":1`, `"func_cpu":0`, 1)))
	f.Add([]byte(strings.Replace(goodSpec, `"inputs":3`, `"inputs":-1`, 1)))
	f.Add([]byte(strings.Replace(goodSpec, `"lease":10000000000`, `"lease":-1`, 1)))
	f.Add([]byte(strings.Replace(goodSpec, `"function":"double"`, `"function":"\xff"`, 1)))
	f.Add([]byte(`{"id":"j-0123456789abcdefghij","function":"f","command":["sh","-c","cat"],"image":"alpine","func_cpu":1,"lease":1}`))
	f.Add([]byte(`{"id":"j-x","function":"f","command":[""],"func_cpu":1,"lease":1}`))
	f.Add([]byte(`{"id":"J-UPPER","function":"f"}`))
	f.Add([]byte(`{"id":"j-x","created":"10000-01-01T00:00:00Z"}`))
	f.Add([]byte(goodSpec[:40]))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		if err := s.Validate(); err != nil {
			if msg := err.Error(); s.ID != "" && !strings.Contains(msg, s.ID) && !strings.Contains(msg, strconv.Quote(s.ID)) {
				t.Fatalf("Validate error %q does not name job %q", err, s.ID)
			}
			return
		}
		switch {
		case !ValidID(s.ID):
			t.Fatalf("spec with invalid ID %q validates", s.ID)
		case TenantOf(s.ID) == "":
			t.Fatalf("spec with ID %q, which names no tenant, validates", s.ID)
		case s.Tenant != "" && (s.Tenant != TenantOf(s.ID) || !ValidTenant(s.Tenant)):
			t.Fatalf("spec of tenant %q with ID %q (tenant %q) validates", s.Tenant, s.ID, TenantOf(s.ID))
		case s.Function == "":
			t.Fatalf("spec %s without a function validates", s.ID)
		case len(s.Command) > 0 && s.Command[0] == "":
			t.Fatalf("spec %s with an empty command validates", s.ID)
		case len(s.Command) == 0 && !ValidDigest(s.Binary):
			t.Fatalf("spec %s with binary digest %q validates", s.ID, s.Binary)
		case s.Inputs < 0 || s.FuncCPU < 1 || s.MaxParallelism < 0 || s.Lease <= 0:
			t.Fatalf("spec %s with inputs %d, func_cpu %d, max_parallelism %d, lease %v validates", s.ID, s.Inputs, s.FuncCPU, s.MaxParallelism, s.Lease)
		}
		// A valid spec is handed from component to component as JSON: it must
		// survive that unchanged and still validate.
		b, err := json.Marshal(&s)
		if err != nil {
			t.Fatalf("valid spec %+v does not encode: %v", s, err)
		}
		var again Spec
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("valid spec %s does not decode: %v", b, err)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("valid spec %s no longer validates: %v", b, err)
		}
		if !again.Created.Equal(s.Created) {
			t.Fatalf("created %v read back as %v", s.Created, again.Created)
		}
		again.Created, s.Created = time.Time{}, time.Time{} // equal instants may differ in *Location
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("spec %+v read back as %+v", s, again)
		}
	})
}

// FuzzTenantID checks NewID, TenantOf, ValidID and ValidTenant against each other,
// for a tenant and a time made up by the fuzzer and for an arbitrary ID.
func FuzzTenantID(f *testing.F) {
	f.Add("acme", int64(1735787045), "j-acme-0123456789abcdefghij")
	f.Add("", int64(0), "j-0123456789abcdefghij")
	f.Add(DefaultTenant, int64(1<<32-1), "j-default-0123456789abcdefghij")
	f.Add("a", int64(-1), "j-9x-0123456789abcdefghij")
	f.Add(strings.Repeat("t", 32), int64(1<<40), "j-"+strings.Repeat("t", 33)+"-0123456789abcdefghij")
	f.Add("a-", int64(7), "j-a--0123456789abcdefghij")
	f.Add("Acme", int64(7), "x-acme-0123456789abcdefghij")
	f.Add("ac\xffme", int64(7), "j-ac\xffme-0123456789abcdefghij")
	f.Fuzz(func(t *testing.T, tenant string, unix int64, id string) {
		if got := TenantOf(id); got != "" && !ValidTenant(got) {
			t.Fatalf("TenantOf(%q) = %q, not a valid tenant", id, got)
		} else if !strings.HasPrefix(id, "j-") && got != "" {
			t.Fatalf("TenantOf(%q) = %q; want \"\" for an ID without the j- prefix", id, got)
		}
		if ValidID(id) && (len(id) > 66 || strings.ContainsAny(id, "/.:_ ")) {
			t.Fatalf("ValidID accepts %q", id)
		}

		if tenant == "" {
			tenant = DefaultTenant // NewID's "no tenant"
		}
		if !ValidTenant(tenant) {
			return
		}
		if !ValidID("j-" + tenant) {
			t.Errorf("valid tenant %q does not make a valid ID", tenant)
		}
		now := time.Unix(unix, 0)
		got := NewID(now, tenant)
		if !ValidID(got) || TenantOf(got) != tenant {
			t.Fatalf("NewID(%v, %q) = %q: ValidID %v, TenantOf %q", now, tenant, got, ValidID(got), TenantOf(got))
		}
		// IDs sort by creation time, to the second, within the 32 bits they keep.
		if sec := uint32(unix); sec < 1<<32-1 {
			if later := NewID(time.Unix(int64(sec)+1, 0), tenant); later <= NewID(time.Unix(int64(sec), 0), tenant) {
				t.Fatalf("NewID for second %d, %q, sorts before the one for the second before", sec+1, later)
			}
		}
	})
}
