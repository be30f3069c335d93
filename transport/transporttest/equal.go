package transporttest

import (
	"fmt"
	"math"
	"reflect"
)

// strictNil names the slice fields whose nil and empty values mean different
// things (Rows: nil = whole partition, empty = no rows) or that a transport
// must carry as given (Values, Grad). Every other slice may come back as nil
// when it was sent empty, or the other way round.
var strictNil = map[string]bool{"Rows": true, "Values": true, "Grad": true}

// localOnly names the fields that stay in the caller's process (a pull's
// destination buffers and allocator): no transport carries them, so Diff
// skips them.
var localOnly = map[string]bool{"Dst": true, "Alloc": true}

// Diff compares two values of the same type field by field and returns the
// differences, one per line, or "" when they are equal. Floats are compared
// by bit pattern, so NaN payloads, -0 and the infinities must survive
// exactly. Slices compare by length and element; nil and empty differ only
// for the fields named Rows, Values and Grad. Dst and Alloc are skipped.
func Diff(want, got any) string {
	var out []string
	diff(&out, "", reflect.ValueOf(want), reflect.ValueOf(got), false)
	s := ""
	for i, l := range out {
		if i == 20 {
			s += fmt.Sprintf("... and %d more\n", len(out)-20)
			break
		}
		s += l + "\n"
	}
	return s
}

func diff(out *[]string, path string, a, b reflect.Value, strict bool) {
	if a.IsValid() != b.IsValid() {
		*out = append(*out, fmt.Sprintf("%s: validity %v != %v", path, a.IsValid(), b.IsValid()))
		return
	}
	if !a.IsValid() {
		return
	}
	if a.Type() != b.Type() {
		*out = append(*out, fmt.Sprintf("%s: type %v != %v", path, a.Type(), b.Type()))
		return
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: nil %v != %v", path, a.IsNil(), b.IsNil()))
			}
			return
		}
		diff(out, path, a.Elem(), b.Elem(), false)
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			f := a.Type().Field(i)
			if !f.IsExported() || localOnly[f.Name] {
				continue
			}
			diff(out, path+"."+f.Name, a.Field(i), b.Field(i), strictNil[f.Name])
		}
	case reflect.Slice:
		if strict && a.IsNil() != b.IsNil() {
			*out = append(*out, fmt.Sprintf("%s: nil %v != %v", path, a.IsNil(), b.IsNil()))
			return
		}
		if a.Len() != b.Len() {
			*out = append(*out, fmt.Sprintf("%s: len %d != %d", path, a.Len(), b.Len()))
			return
		}
		if a.Type().Elem().Kind() == reflect.Float32 {
			diffFloats(out, path, a, b)
			return
		}
		for i := 0; i < a.Len(); i++ {
			diff(out, fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i), false)
		}
	case reflect.Float32, reflect.Float64:
		if bits(a) != bits(b) {
			*out = append(*out, fmt.Sprintf("%s: %v (%#x) != %v (%#x)", path, a.Float(), bits(a), b.Float(), bits(b)))
		}
	default:
		if !a.Equal(b) {
			*out = append(*out, fmt.Sprintf("%s: %v != %v", path, a, b))
		}
	}
}

// bits returns the raw bit pattern of a float value without converting a
// float32 through float64 (which would quiet a signalling NaN).
func bits(v reflect.Value) uint64 {
	if f, ok := v.Interface().(float32); ok {
		return uint64(math.Float32bits(f))
	}
	return math.Float64bits(v.Float())
}

func diffFloats(out *[]string, path string, a, b reflect.Value) {
	as, bs := a.Interface().([]float32), b.Interface().([]float32)
	n := 0
	for i := range as {
		if math.Float32bits(as[i]) != math.Float32bits(bs[i]) {
			if n < 5 {
				*out = append(*out, fmt.Sprintf("%s[%d]: %#x != %#x", path, i, math.Float32bits(as[i]), math.Float32bits(bs[i])))
			}
			n++
		}
	}
	if n > 5 {
		*out = append(*out, fmt.Sprintf("%s: %d elements differ", path, n))
	}
}
