package burla

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"strings"
)

// Inputs and outputs travel as JSON. Some Go types would not survive the trip
// and fail no call: a struct whose fields are all unexported arrives as its zero
// value, a complex number or a channel cannot be encoded at all. Func refuses
// such a type when it registers the function (checkType). An integer past 2^53
// held in an interface value (any) arrives as a float64 that lost its last
// digits; that is a value, not a type, so it is refused as the input is
// uploaded, or the output returned (checkExact).

// maxExactInt is the largest integer a float64 holds exactly: 2^53.
const maxExactInt = 1 << 53

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	jsonNumber    = reflect.TypeFor[json.Number]()
)

// custom reports whether t encodes itself.
func custom(t reflect.Type) bool {
	return t.Implements(jsonMarshaler) || t.Implements(textMarshaler) ||
		reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler)
}

// typeCheck walks a type for checkType.
type typeCheck struct {
	seen     map[reflect.Type]bool
	dynamic  bool // the type holds an interface somewhere: its values need checkExact
	problems []string
}

// checkType reports what of t JSON cannot carry faithfully, and whether t holds
// interface values, whose contents only checkExact can judge.
func checkType(t reflect.Type) (dynamic bool, err error) {
	c := &typeCheck{seen: map[reflect.Type]bool{}}
	c.walk(t, t.String())
	if len(c.problems) > 0 {
		return c.dynamic, fmt.Errorf("%s cannot travel as JSON: %s", t, strings.Join(c.problems, "; "))
	}
	return c.dynamic, nil
}

func (c *typeCheck) walk(t reflect.Type, path string) {
	if c.seen[t] || custom(t) {
		return
	}
	c.seen[t] = true
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer:
		c.problems = append(c.problems, fmt.Sprintf("%s is a %s", path, t.Kind()))
	case reflect.Complex64, reflect.Complex128:
		c.problems = append(c.problems, fmt.Sprintf("%s is a complex number", path))
	case reflect.Interface:
		c.dynamic = true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		c.walk(t.Elem(), path+"[…]")
	case reflect.Map:
		switch k := t.Key(); {
		case k.Kind() == reflect.String, k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr, k.Implements(textMarshaler):
		default:
			c.problems = append(c.problems, fmt.Sprintf("%s has keys of type %s, which cannot be JSON object keys", path, k))
		}
		c.walk(t.Elem(), path+"[…]")
	case reflect.Struct:
		exported := 0
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-":
			case f.IsExported():
				exported++
				c.walk(f.Type, path+"."+f.Name)
			case f.Anonymous && f.Type.Kind() == reflect.Struct:
				// An unexported embedded struct's exported fields are encoded.
				exported++
				c.walk(f.Type, path+"."+f.Name)
			}
		}
		if exported == 0 && t.NumField() > 0 {
			c.problems = append(c.problems, fmt.Sprintf("%s has no exported field, so JSON would carry it as {} and the other side get a zero value (export its fields, or give it MarshalJSON and UnmarshalJSON)", path))
		}
	}
}

// checkExact refuses an integer past 2^53 in an interface value of v, which
// JSON would turn into a float64 that lost digits; it names where it is.
func checkExact(v reflect.Value, path string) error { return exact(v, path, 0) }

// maxDepth bounds the walk, as encoding/json bounds its own: a value deeper
// than this is a cycle, which encoding refuses anyway.
const maxDepth = 1000

func exact(v reflect.Value, path string, depth int) error {
	if depth > maxDepth || !v.IsValid() || v.Kind() != reflect.Interface && custom(v.Type()) {
		return nil
	}
	depth++
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		e := v.Elem()
		switch e.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if n := e.Int(); n > maxExactInt || n < -maxExactInt {
				return inexact(path, fmt.Sprint(n))
			}
			return nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if n := e.Uint(); n > maxExactInt {
				return inexact(path, fmt.Sprint(n))
			}
			return nil
		case reflect.String:
			if e.Type() == jsonNumber {
				if i, ok := new(big.Int).SetString(e.String(), 10); ok && i.CmpAbs(big.NewInt(maxExactInt)) > 0 {
					return inexact(path, e.String())
				}
			}
			return nil
		}
		return exact(e, path, depth)
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return exact(v.Elem(), path, depth)
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := exact(v.Index(i), fmt.Sprintf("%s[%d]", path, i), depth); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if err := exact(it.Value(), fmt.Sprintf("%s[%v]", path, it.Key()), depth); err != nil {
				return err
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() || f.Anonymous {
				if err := exact(v.Field(i), path+"."+f.Name, depth); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func inexact(path, n string) error {
	return fmt.Errorf("%s holds the integer %s in an interface value, which JSON would carry as a float64 that loses its last digits: give it a typed field (int64, uint64) or a string", path, n)
}
