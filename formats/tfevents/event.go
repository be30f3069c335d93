package tfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed reports bytes that are not a valid serialized Event.
var ErrMalformed = errors.New("tfevents: malformed event")

// FileVersion is the file_version the first Event of every file carries.
const FileVersion = "brain.Event:2"

// ScalarsPlugin is the plugin name of TF2-style scalar summaries.
const ScalarsPlugin = "scalars"

// Event is the part of tensorflow.Event this package reads and writes.
type Event struct {
	// WallTime is the time of the event in seconds since the Unix epoch.
	WallTime float64
	// Step is the global step of the event.
	Step int64
	// FileVersion is set on the first event of a file only.
	FileVersion string
	// Values are the summary values, in file order; empty if the event
	// holds no summary.
	Values []Value
	// HasSummary reports that the event holds a summary (perhaps empty).
	HasSummary bool
}

// ValueKind is what a summary value holds, as far as this package knows.
type ValueKind int

// The kinds of summary value.
const (
	// KindOther is a value this package does not interpret (histogram,
	// image, audio, or a tensor that is not a numeric scalar).
	KindOther ValueKind = iota
	// KindSimple is a TF1 simple_value scalar.
	KindSimple
	// KindTensor is a TF2 scalar: a numeric one-element tensor (rank 0 as
	// tf.summary.scalar writes it), plugin "scalars" or no plugin named.
	KindTensor
)

// Value is one tensorflow.Summary.Value.
type Value struct {
	// Tag names the series, such as "loss/train".
	Tag string
	// Kind says whether Scalar holds the value's number.
	Kind ValueKind
	// Scalar is the number of a KindSimple or KindTensor value.
	Scalar float64
	// Plugin is the metadata's plugin_data.plugin_name ("scalars" for
	// TF2 scalars); writers often store metadata only with the first value
	// of a tag, and Reader fills it in on later ones.
	Plugin string
}

// IsScalar reports whether v holds a scalar in either form.
func (v Value) IsScalar() bool { return v.Kind == KindSimple || v.Kind == KindTensor }

// Field numbers from tensorflow/core/util/event.proto, summary.proto,
// tensor.proto and tensor_shape.proto.
const (
	evWallTime    = 1
	evStep        = 2
	evFileVersion = 3
	evSummary     = 5

	sumValue = 1

	valTag         = 1
	valSimpleValue = 2
	valTensor      = 8
	valMetadata    = 9

	metaPluginData = 1
	metaDataClass  = 4
	pluginName     = 1

	tensorDtype   = 1
	tensorShape   = 2
	tensorContent = 4
	tensorFloat   = 5
	tensorDouble  = 6
	tensorInt     = 7
	tensorInt64   = 10

	shapeDim     = 2
	shapeUnknown = 3
	dimSize      = 1

	dtFloat  = 1
	dtDouble = 2
	dtInt32  = 3
	dtInt64  = 9

	dataClassScalar = 1
)

// DecodeEvent parses a serialized tensorflow.Event. Fields it does not read
// (graphs, log messages, session logs, run metadata) are skipped.
func DecodeEvent(b []byte) (*Event, error) {
	ev := &Event{}
	err := walk(b, "Event", func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == evWallTime && typ == protowire.Fixed64Type:
			ev.WallTime = math.Float64frombits(binary.LittleEndian.Uint64(v))
		case num == evStep && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			ev.Step = int64(x)
		case num == evFileVersion && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return fmt.Errorf("file_version is not UTF-8: %w", ErrMalformed)
			}
			ev.FileVersion = string(v)
		case num == evSummary && typ == protowire.BytesType:
			ev.HasSummary = true
			return walk(v, "Summary", func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != sumValue || typ != protowire.BytesType {
					return nil
				}
				val, err := decodeValue(v)
				if err != nil {
					return err
				}
				ev.Values = append(ev.Values, val)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

type tensorInfo struct {
	present  bool
	dtype    uint64
	elems    int64 // element count: -1 unknown, 0, 1, or 2 for more than one
	content  []byte
	floats   []float32
	doubles  []float64
	ints     []int64
	haveVals bool
}

func decodeValue(b []byte) (Value, error) {
	var val Value
	var simple, hasSimple bool
	var t tensorInfo
	var simpleV float32
	err := walk(b, "Summary.Value", func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == valTag && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return fmt.Errorf("tag %q is not UTF-8: %w", v, ErrMalformed)
			}
			val.Tag = string(v)
		case num == valSimpleValue && typ == protowire.Fixed32Type:
			simpleV = math.Float32frombits(binary.LittleEndian.Uint32(v))
			simple, hasSimple = true, true
		case num == valMetadata && typ == protowire.BytesType:
			return walk(v, "SummaryMetadata", func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != metaPluginData || typ != protowire.BytesType {
					return nil
				}
				return walk(v, "PluginData", func(num protowire.Number, typ protowire.Type, v []byte) error {
					if num == pluginName && typ == protowire.BytesType {
						if !utf8.Valid(v) {
							return fmt.Errorf("plugin name is not UTF-8: %w", ErrMalformed)
						}
						val.Plugin = string(v)
					}
					return nil
				})
			})
		case num == valTensor && typ == protowire.BytesType:
			t.present = true
			simple = false
			return decodeTensor(v, &t)
		default:
			// Another member of the value oneof (image, histo, audio)
			// replaces a simple_value seen before it.
			if num >= 3 && num <= 6 && typ == protowire.BytesType {
				simple = false
			}
		}
		return nil
	})
	if err != nil {
		return val, err
	}
	switch {
	case simple && hasSimple:
		val.Kind, val.Scalar = KindSimple, float64(simpleV)
	case t.present && (val.Plugin == "" || val.Plugin == ScalarsPlugin):
		if x, ok := t.scalar(); ok {
			val.Kind, val.Scalar = KindTensor, x
		}
	}
	return val, nil
}

func decodeTensor(b []byte, t *tensorInfo) error {
	t.elems = 1
	return walk(b, "TensorProto", func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == tensorDtype && typ == protowire.VarintType:
			t.dtype, _ = protowire.ConsumeVarint(v)
		case num == tensorShape && typ == protowire.BytesType:
			t.elems = 1
			return walk(v, "TensorShapeProto", func(num protowire.Number, typ protowire.Type, v []byte) error {
				switch {
				case num == shapeUnknown && typ == protowire.VarintType:
					if x, _ := protowire.ConsumeVarint(v); x != 0 {
						t.elems = -1
					}
				case num == shapeDim && typ == protowire.BytesType:
					var size int64
					err := walk(v, "TensorShapeProto.Dim", func(num protowire.Number, typ protowire.Type, v []byte) error {
						if num == dimSize && typ == protowire.VarintType {
							x, _ := protowire.ConsumeVarint(v)
							size = int64(x)
						}
						return nil
					})
					if err != nil {
						return err
					}
					// elems only needs to tell 0, 1 and "more" apart: 2
					// stands for any count above one.
					switch {
					case t.elems < 0:
					case size < 0:
						t.elems = -1
					case size == 0:
						t.elems = 0
					case size > 1 && t.elems > 0:
						t.elems = 2
					}
				}
				return nil
			})
		case num == tensorContent && typ == protowire.BytesType:
			t.content = v
		case num == tensorFloat:
			return appendFixed32(typ, v, func(x uint32) { t.floats = append(t.floats, math.Float32frombits(x)) })
		case num == tensorDouble:
			return appendFixed64(typ, v, func(x uint64) { t.doubles = append(t.doubles, math.Float64frombits(x)) })
		case num == tensorInt || num == tensorInt64:
			return appendVarint(typ, v, func(x uint64) {
				if num == tensorInt {
					t.ints = append(t.ints, int64(int32(x)))
				} else {
					t.ints = append(t.ints, int64(x))
				}
			})
		}
		return nil
	})
}

// scalar returns the number a one-element numeric tensor holds. A value list
// of one element stands for the whole tensor, as TensorFlow allows.
func (t *tensorInfo) scalar() (float64, bool) {
	if t.elems != 1 {
		return 0, false
	}
	switch t.dtype {
	case dtFloat:
		if len(t.content) == 4 {
			return float64(math.Float32frombits(binary.LittleEndian.Uint32(t.content))), true
		}
		if len(t.content) == 0 && len(t.floats) == 1 {
			return float64(t.floats[0]), true
		}
	case dtDouble:
		if len(t.content) == 8 {
			return math.Float64frombits(binary.LittleEndian.Uint64(t.content)), true
		}
		if len(t.content) == 0 && len(t.doubles) == 1 {
			return t.doubles[0], true
		}
	case dtInt32:
		if len(t.content) == 4 {
			return float64(int32(binary.LittleEndian.Uint32(t.content))), true
		}
		if len(t.content) == 0 && len(t.ints) == 1 {
			return float64(t.ints[0]), true
		}
	case dtInt64:
		if len(t.content) == 8 {
			return float64(int64(binary.LittleEndian.Uint64(t.content))), true
		}
		if len(t.content) == 0 && len(t.ints) == 1 {
			return float64(t.ints[0]), true
		}
	}
	return 0, false
}

func appendFixed32(typ protowire.Type, v []byte, add func(uint32)) error {
	switch typ {
	case protowire.Fixed32Type:
		add(binary.LittleEndian.Uint32(v))
	case protowire.BytesType:
		if len(v)%4 != 0 {
			return fmt.Errorf("packed fixed32 list of %d bytes: %w", len(v), ErrMalformed)
		}
		for ; len(v) > 0; v = v[4:] {
			add(binary.LittleEndian.Uint32(v))
		}
	}
	return nil
}

func appendFixed64(typ protowire.Type, v []byte, add func(uint64)) error {
	switch typ {
	case protowire.Fixed64Type:
		add(binary.LittleEndian.Uint64(v))
	case protowire.BytesType:
		if len(v)%8 != 0 {
			return fmt.Errorf("packed fixed64 list of %d bytes: %w", len(v), ErrMalformed)
		}
		for ; len(v) > 0; v = v[8:] {
			add(binary.LittleEndian.Uint64(v))
		}
	}
	return nil
}

func appendVarint(typ protowire.Type, v []byte, add func(uint64)) error {
	switch typ {
	case protowire.VarintType:
		x, _ := protowire.ConsumeVarint(v)
		add(x)
	case protowire.BytesType:
		for len(v) > 0 {
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return fmt.Errorf("packed varint list: %v: %w", protowire.ParseError(n), ErrMalformed)
			}
			add(x)
			v = v[n:]
		}
	}
	return nil
}

// walk calls fn for each field of the message b with the field's value: the
// encoded bytes of varint and fixed fields, the contents of length-delimited
// ones. Groups are skipped.
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

// Encoding of events, in field order as TensorFlow writes them.

// AppendEncode appends the serialized Event to b. A Value of KindSimple is
// written as simple_value; one of KindTensor as a rank-0 DT_FLOAT tensor
// with float_val and metadata naming the "scalars" plugin (or v.Plugin);
// values of KindOther are written with their tag only.
func (e *Event) AppendEncode(b []byte) []byte {
	b = protowire.AppendTag(b, evWallTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(e.WallTime))
	if e.Step != 0 {
		b = protowire.AppendTag(b, evStep, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Step))
	}
	if e.FileVersion != "" {
		b = protowire.AppendTag(b, evFileVersion, protowire.BytesType)
		b = protowire.AppendString(b, e.FileVersion)
	}
	if e.HasSummary || len(e.Values) > 0 {
		var sum []byte
		for _, v := range e.Values {
			sum = protowire.AppendTag(sum, sumValue, protowire.BytesType)
			sum = protowire.AppendBytes(sum, v.appendEncode(nil))
		}
		b = protowire.AppendTag(b, evSummary, protowire.BytesType)
		b = protowire.AppendBytes(b, sum)
	}
	return b
}

func (v Value) appendEncode(b []byte) []byte {
	b = protowire.AppendTag(b, valTag, protowire.BytesType)
	b = protowire.AppendString(b, v.Tag)
	switch v.Kind {
	case KindSimple:
		b = protowire.AppendTag(b, valSimpleValue, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(float32(v.Scalar)))
	case KindTensor:
		var t []byte
		t = protowire.AppendTag(t, tensorDtype, protowire.VarintType)
		t = protowire.AppendVarint(t, dtFloat)
		t = protowire.AppendTag(t, tensorShape, protowire.BytesType)
		t = protowire.AppendBytes(t, nil) // rank 0
		t = protowire.AppendTag(t, tensorFloat, protowire.BytesType)
		t = protowire.AppendBytes(t, protowire.AppendFixed32(nil, math.Float32bits(float32(v.Scalar))))
		b = protowire.AppendTag(b, valTensor, protowire.BytesType)
		b = protowire.AppendBytes(b, t)
		plugin := v.Plugin
		if plugin == "" {
			plugin = ScalarsPlugin
		}
		pd := protowire.AppendString(protowire.AppendTag(nil, pluginName, protowire.BytesType), plugin)
		meta := protowire.AppendBytes(protowire.AppendTag(nil, metaPluginData, protowire.BytesType), pd)
		meta = protowire.AppendVarint(protowire.AppendTag(meta, metaDataClass, protowire.VarintType), dataClassScalar)
		b = protowire.AppendTag(b, valMetadata, protowire.BytesType)
		b = protowire.AppendBytes(b, meta)
	}
	return b
}
