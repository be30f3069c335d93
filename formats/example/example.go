package example

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed reports bytes that are not a valid serialized message.
var ErrMalformed = errors.New("example: malformed message")

// ErrFeature reports a feature that is missing or not of the kind asked for.
var ErrFeature = errors.New("example: bad feature")

// Kind is which list a Feature holds (the oneof of tf.train.Feature).
type Kind int

// The kinds of feature. KindNone is a feature with no list set, which the
// format allows.
const (
	KindNone Kind = iota
	KindBytes
	KindFloat
	KindInt64
)

// String returns the proto field name of the kind.
func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindBytes:
		return "bytes_list"
	case KindFloat:
		return "float_list"
	case KindInt64:
		return "int64_list"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Feature is one tf.train.Feature: a list of one kind. Only the slice that
// matches Kind is used.
type Feature struct {
	Kind   Kind
	Bytes  [][]byte
	Floats []float32
	Int64s []int64
}

// Len returns the number of values in the feature's list.
func (f Feature) Len() int {
	switch f.Kind {
	case KindBytes:
		return len(f.Bytes)
	case KindFloat:
		return len(f.Floats)
	case KindInt64:
		return len(f.Int64s)
	}
	return 0
}

// BytesFeature returns a bytes_list feature.
func BytesFeature(v ...[]byte) Feature { return Feature{Kind: KindBytes, Bytes: v} }

// FloatFeature returns a float_list feature.
func FloatFeature(v ...float32) Feature { return Feature{Kind: KindFloat, Floats: v} }

// Int64Feature returns an int64_list feature.
func Int64Feature(v ...int64) Feature { return Feature{Kind: KindInt64, Int64s: v} }

// Example is a tf.train.Example: named features. A nil Features map is an
// empty Example.
type Example struct {
	Features map[string]Feature
}

// New returns an empty Example ready for Set.
func New() *Example { return &Example{Features: map[string]Feature{}} }

// Set stores f under key, replacing any feature there.
func (e *Example) Set(key string, f Feature) {
	if e.Features == nil {
		e.Features = map[string]Feature{}
	}
	e.Features[key] = f
}

// Keys returns the feature names, sorted.
func (e *Example) Keys() []string {
	keys := make([]string, 0, len(e.Features))
	for k := range e.Features {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (e *Example) get(key string, k Kind) (Feature, error) {
	f, ok := e.Features[key]
	if !ok {
		return f, fmt.Errorf("feature %q missing (have %v): %w", key, e.Keys(), ErrFeature)
	}
	if f.Kind != k {
		return f, fmt.Errorf("feature %q is %v, want %v: %w", key, f.Kind, k, ErrFeature)
	}
	return f, nil
}

// Floats returns the float_list of feature key.
func (e *Example) Floats(key string) ([]float32, error) {
	f, err := e.get(key, KindFloat)
	return f.Floats, err
}

// Int64s returns the int64_list of feature key.
func (e *Example) Int64s(key string) ([]int64, error) {
	f, err := e.get(key, KindInt64)
	return f.Int64s, err
}

// BytesList returns the bytes_list of feature key.
func (e *Example) BytesList(key string) ([][]byte, error) {
	f, err := e.get(key, KindBytes)
	return f.Bytes, err
}

// Field numbers of the messages (tensorflow/core/example/{example,feature}.proto).
const (
	fieldExampleFeatures = 1 // Example.features
	fieldFeaturesFeature = 1 // Features.feature (map<string, Feature>)
	fieldMapKey          = 1
	fieldMapValue        = 2
	fieldBytesList       = 1 // Feature.bytes_list
	fieldFloatList       = 2 // Feature.float_list
	fieldInt64List       = 3 // Feature.int64_list
	fieldListValue       = 1 // {Bytes,Float,Int64}List.value
)

// Decode parses a serialized tf.train.Example. It follows protobuf's
// parsing rules: unknown fields are skipped, repeated values accept both
// packed and unpacked encodings, a message field that appears twice is
// merged, and a map key that appears twice keeps the last value. Byte slices
// in the result are copies, so b may be reused.
func Decode(b []byte) (*Example, error) {
	e := &Example{Features: map[string]Feature{}}
	err := walk(b, "Example", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == fieldExampleFeatures && typ == protowire.BytesType {
			return decodeFeatures(v, e.Features)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

func decodeFeatures(b []byte, into map[string]Feature) error {
	return walk(b, "Features", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldFeaturesFeature || typ != protowire.BytesType {
			return nil
		}
		var key string
		var f Feature
		err := walk(v, "Features.feature entry", func(num protowire.Number, typ protowire.Type, v []byte) error {
			switch {
			case num == fieldMapKey && typ == protowire.BytesType:
				if !utf8.Valid(v) {
					return fmt.Errorf("feature name %q is not UTF-8: %w", v, ErrMalformed)
				}
				key = string(v)
			case num == fieldMapValue && typ == protowire.BytesType:
				return decodeFeature(v, &f)
			}
			return nil
		})
		if err != nil {
			return err
		}
		into[key] = f
		return nil
	})
}

// decodeFeature merges the serialized Feature b into f. A list of another
// kind than f's replaces it (oneof semantics); a list of the same kind is
// appended (merge semantics of repeated fields).
func decodeFeature(b []byte, f *Feature) error {
	return walk(b, "Feature", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		var k Kind
		switch num {
		case fieldBytesList:
			k = KindBytes
		case fieldFloatList:
			k = KindFloat
		case fieldInt64List:
			k = KindInt64
		default:
			return nil
		}
		if f.Kind != k {
			*f = Feature{Kind: k}
		}
		return decodeList(v, f)
	})
}

func decodeList(b []byte, f *Feature) error {
	return walk(b, f.Kind.String(), func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldListValue {
			return nil
		}
		switch f.Kind {
		case KindBytes:
			if typ == protowire.BytesType {
				f.Bytes = append(f.Bytes, append([]byte{}, v...))
			}
		case KindFloat:
			switch typ {
			case protowire.Fixed32Type:
				x, _ := protowire.ConsumeFixed32(v)
				f.Floats = append(f.Floats, math.Float32frombits(x))
			case protowire.BytesType: // packed
				if len(v)%4 != 0 {
					return fmt.Errorf("packed float_list of %d bytes, not a multiple of 4: %w", len(v), ErrMalformed)
				}
				f.Floats = slices.Grow(f.Floats, len(v)/4)
				for len(v) > 0 {
					x, n := protowire.ConsumeFixed32(v)
					f.Floats = append(f.Floats, math.Float32frombits(x))
					v = v[n:]
				}
			}
		case KindInt64:
			switch typ {
			case protowire.VarintType:
				x, _ := protowire.ConsumeVarint(v)
				f.Int64s = append(f.Int64s, int64(x))
			case protowire.BytesType: // packed
				for len(v) > 0 {
					x, n := protowire.ConsumeVarint(v)
					if n < 0 {
						return fmt.Errorf("packed int64_list: %v: %w", protowire.ParseError(n), ErrMalformed)
					}
					f.Int64s = append(f.Int64s, int64(x))
					v = v[n:]
				}
			}
		}
		return nil
	})
}

// walk calls fn for each field of the message b with the field's value:
// for varint and fixed fields the encoded bytes, for length-delimited fields
// the contents. Groups are skipped.
func walk(b []byte, what string, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Errorf("%s at byte %d: %v: %w", what, off, protowire.ParseError(n), ErrMalformed)
		}
		start := off + n
		m := protowire.ConsumeFieldValue(num, typ, b[start:])
		if m < 0 {
			return fmt.Errorf("%s field %d at byte %d: %v: %w", what, num, off, protowire.ParseError(m), ErrMalformed)
		}
		v := b[start : start+m]
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(v)
		}
		if err := fn(num, typ, v); err != nil {
			return fmt.Errorf("%s field %d: %w", what, num, err)
		}
		off = start + m
	}
	return nil
}

// Encode serializes e as a tf.train.Example the way TensorFlow does: float
// and int64 lists packed. Features are written in sorted key order, so equal
// Examples encode to equal bytes.
func (e *Example) Encode() []byte {
	return e.AppendEncode(nil)
}

// AppendEncode appends the serialized Example to b and returns it.
func (e *Example) AppendEncode(b []byte) []byte {
	if len(e.Features) == 0 {
		return b
	}
	// Example.features is a message: compute its size first.
	keys := e.Keys()
	size := 0
	for _, k := range keys {
		es := entrySize(k, e.Features[k])
		size += protowire.SizeTag(fieldFeaturesFeature) + protowire.SizeBytes(es)
	}
	b = protowire.AppendTag(b, fieldExampleFeatures, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	for _, k := range keys {
		f := e.Features[k]
		b = protowire.AppendTag(b, fieldFeaturesFeature, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entrySize(k, f)))
		b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(featureSize(f)))
		b = appendFeature(b, f)
	}
	return b
}

func entrySize(key string, f Feature) int {
	return protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(key)) +
		protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(featureSize(f))
}

// listSize is the size of the list message inside a Feature.
func listSize(f Feature) int {
	switch f.Kind {
	case KindBytes:
		n := 0
		for _, v := range f.Bytes {
			n += protowire.SizeTag(fieldListValue) + protowire.SizeBytes(len(v))
		}
		return n
	case KindFloat:
		if len(f.Floats) == 0 {
			return 0
		}
		return protowire.SizeTag(fieldListValue) + protowire.SizeBytes(4*len(f.Floats))
	case KindInt64:
		if len(f.Int64s) == 0 {
			return 0
		}
		return protowire.SizeTag(fieldListValue) + protowire.SizeBytes(packedVarintSize(f.Int64s))
	}
	return 0
}

func packedVarintSize(v []int64) int {
	n := 0
	for _, x := range v {
		n += protowire.SizeVarint(uint64(x))
	}
	return n
}

func featureSize(f Feature) int {
	if f.Kind == KindNone {
		return 0
	}
	return protowire.SizeTag(fieldBytesList) + protowire.SizeBytes(listSize(f))
}

func appendFeature(b []byte, f Feature) []byte {
	var num protowire.Number
	switch f.Kind {
	case KindBytes:
		num = fieldBytesList
	case KindFloat:
		num = fieldFloatList
	case KindInt64:
		num = fieldInt64List
	default:
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(listSize(f)))
	switch f.Kind {
	case KindBytes:
		for _, v := range f.Bytes {
			b = protowire.AppendTag(b, fieldListValue, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		}
	case KindFloat:
		if len(f.Floats) > 0 {
			b = protowire.AppendTag(b, fieldListValue, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(4*len(f.Floats)))
			for _, x := range f.Floats {
				b = protowire.AppendFixed32(b, math.Float32bits(x))
			}
		}
	case KindInt64:
		if len(f.Int64s) > 0 {
			b = protowire.AppendTag(b, fieldListValue, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(packedVarintSize(f.Int64s)))
			for _, x := range f.Int64s {
				b = protowire.AppendVarint(b, uint64(x))
			}
		}
	}
	return b
}
