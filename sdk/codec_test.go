package burla

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

type (
	hidden     struct{ a, b int }
	withHidden struct {
		Name string
		In   hidden
	}
	custom1 struct{ a int }
	skipped struct {
		Name string
		C    complex128 `json:"-"`
	}
	embeds   struct{ inner }
	inner    struct{ X int }
	selfList struct {
		Next *selfList
		V    any
	}
)

func (c custom1) MarshalJSON() ([]byte, error) { return json.Marshal(c.a) }

// Func refuses types JSON cannot carry, saying where in the type the trouble
// is, and takes every other.
func TestCheckType(t *testing.T) {
	for _, tc := range []struct {
		t       reflect.Type
		want    string // in the error; "" for none
		dynamic bool
	}{
		{reflect.TypeFor[int](), "", false},
		{reflect.TypeFor[struct{}](), "", false},
		{reflect.TypeFor[time.Time](), "", false},
		{reflect.TypeFor[custom1](), "", false},
		{reflect.TypeFor[skipped](), "", false},
		{reflect.TypeFor[embeds](), "", false},
		{reflect.TypeFor[selfList](), "", true},
		{reflect.TypeFor[map[string]any](), "", true},
		{reflect.TypeFor[map[int][]string](), "", false},
		{reflect.TypeFor[hidden](), "burla.hidden has no exported field", false},
		{reflect.TypeFor[[]withHidden](), "[]burla.withHidden[…].In has no exported field", false},
		{reflect.TypeFor[complex128](), "complex128 is a complex number", false},
		{reflect.TypeFor[struct{ F func() }](), ".F is a func", false},
		{reflect.TypeFor[map[[2]int]string](), "has keys of type [2]int", false},
		{reflect.TypeFor[*chan int](), "is a chan", false},
	} {
		dynamic, err := checkType(tc.t)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v; want it taken", tc.t, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v; want an error saying %q", tc.t, err, tc.want)
		case tc.want == "" && dynamic != tc.dynamic:
			t.Errorf("%v: holds interfaces %v; want %v", tc.t, dynamic, tc.dynamic)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), `burla.Func("sdk-test-hidden"): its input type burla.hidden cannot travel as JSON`) {
			t.Errorf("Func of a type with no exported field: panic %v", r)
		}
	}()
	Func("sdk-test-hidden", func(context.Context, hidden) (int, error) { return 0, nil })
}

// An integer past 2^53 in an interface value is refused, wherever it is; one
// at 2^53, or in a typed field, is not.
func TestCheckExact(t *testing.T) {
	type rec struct {
		ID    uint64
		Extra any
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{map[string]any{"n": 1 << 53}, ""},
		{map[string]any{"n": -(1 << 53)}, ""},
		{rec{ID: 1 << 60, Extra: 3}, ""},
		{[]any{1.5, "x", nil, json.Number("12")}, ""},
		{map[string]any{"n": 1<<53 + 1}, "x[n] holds the integer 9007199254740993"},
		{[]any{int64(-(1 << 60))}, "x[0] holds the integer -1152921504606846976"},
		{rec{Extra: []any{map[string]any{"deep": uint64(1 << 63)}}}, "x.Extra[0][deep] holds the integer 9223372036854775808"},
		{&rec{Extra: json.Number("123456789012345678901")}, "x.Extra holds the integer 123456789012345678901"},
	} {
		v := reflect.ValueOf(&tc.v).Elem()
		err := checkExact(v, "x")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%#v: %v; want it taken", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%#v: %v; want an error saying %q", tc.v, err, tc.want)
		}
	}
	cycle := &selfList{}
	cycle.Next = cycle
	if err := checkExact(reflect.ValueOf(cycle), "x"); err != nil {
		t.Errorf("a cycle: %v; want it left to the encoder", err)
	}
}
