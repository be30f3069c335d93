package tfevents

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowps/flowps/formats/tfrecord"
)

// ErrClosed reports a write to a closed Writer.
var ErrClosed = errors.New("tfevents: writer closed")

// DefaultFlushInterval is how long written events may stay buffered when
// WriterOptions.FlushInterval is zero: TensorBoard polls files every few
// seconds, so a shorter interval buys nothing.
const DefaultFlushInterval = 2 * time.Second

// WriterOptions configure a Writer. The zero value is ready to use.
type WriterOptions struct {
	// Host is the host name in the file name; empty means os.Hostname().
	Host string
	// Suffix is appended to the file name (TensorFlow's filename_suffix),
	// such as ".rank-1"; may be empty.
	Suffix string
	// FlushInterval bounds, in wall time, how long an event stays buffered:
	// a write flushes the file when the previous flush is older. Zero means
	// DefaultFlushInterval; negative means only Flush and Close flush.
	FlushInterval time.Duration
	// TensorForm makes Scalar write TF2-style values (a rank-0 DT_FLOAT
	// tensor with plugin "scalars") instead of TF1 simple_value. TensorBoard
	// reads both.
	TensorForm bool
	// Now is the clock for wall times and flush timing; nil means
	// time.Now. Tests set it.
	Now func() time.Time
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// fileSeq numbers the event files of this process, as TensorFlow's global
// counter does, so two writers started in the same second get distinct
// names.
var fileSeq atomic.Int64

// Writer writes a TensorBoard event file. It is safe for concurrent use.
type Writer struct {
	mu        sync.Mutex
	f         *os.File
	rec       *tfrecord.Writer
	path      string
	opts      WriterOptions
	buf       []byte
	lastFlush time.Time
	closed    bool
	log       *slog.Logger
}

// NewWriter creates dir if needed and a new event file in it named
// events.out.tfevents.<10-digit Unix seconds>.<host>.<pid>.<n><suffix>, and
// writes the file_version event.
func NewWriter(dir string, opts WriterOptions) (*Writer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		opts.Host = h
	}
	if strings.ContainsRune(opts.Host+opts.Suffix, os.PathSeparator) {
		return nil, fmt.Errorf("tfevents: host %q or suffix %q contains a path separator", opts.Host, opts.Suffix)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	now := opts.Now()
	var f *os.File
	var path string
	for {
		name := fmt.Sprintf("events.out.tfevents.%010d.%s.%d.%d%s", now.Unix(), opts.Host, os.Getpid(), fileSeq.Add(1)-1, opts.Suffix)
		path = filepath.Join(dir, name)
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("tfevents: %w", err)
		}
	}
	rec, err := tfrecord.NewWriter(f, tfrecord.WriterOptions{})
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &Writer{f: f, rec: rec, path: path, opts: opts, lastFlush: now, log: log.With("file", path)}
	if err := w.write(&Event{WallTime: wallTime(now), FileVersion: FileVersion}); err != nil {
		f.Close()
		return nil, err
	}
	// The first record is flushed at once so TensorBoard sees the run.
	if err := w.flush(); err != nil {
		f.Close()
		return nil, err
	}
	w.log.Debug("event file created")
	return w, nil
}

func wallTime(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

// Path returns the path of the event file.
func (w *Writer) Path() string { return w.path }

// Scalar writes one scalar summary: value for series tag at step.
func (w *Writer) Scalar(tag string, step int64, value float32) error {
	return w.Scalars(step, map[string]float32{tag: value})
}

// Scalars writes one event holding a scalar for each tag at step, in tag
// order.
func (w *Writer) Scalars(step int64, values map[string]float32) error {
	tags := make([]string, 0, len(values))
	for t := range values {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	kind := KindSimple
	if w.opts.TensorForm {
		kind = KindTensor
	}
	ev := &Event{Step: step, HasSummary: true, Values: make([]Value, 0, len(tags))}
	for _, t := range tags {
		ev.Values = append(ev.Values, Value{Tag: t, Kind: kind, Scalar: float64(values[t])})
	}
	return w.WriteEvent(ev)
}

// WriteEvent writes ev; a zero WallTime is set to now.
func (w *Writer) WriteEvent(ev *Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	now := w.opts.Now()
	if ev.WallTime == 0 {
		e := *ev
		e.WallTime = wallTime(now)
		ev = &e
	}
	if err := w.write(ev); err != nil {
		return err
	}
	if w.opts.FlushInterval > 0 && now.Sub(w.lastFlush) >= w.opts.FlushInterval {
		return w.flush()
	}
	return nil
}

func (w *Writer) write(ev *Event) error {
	w.buf = ev.AppendEncode(w.buf[:0])
	if err := w.rec.Write(w.buf); err != nil {
		return fmt.Errorf("tfevents: %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) flush() error {
	w.lastFlush = w.opts.Now()
	if err := w.rec.Flush(); err != nil {
		return fmt.Errorf("tfevents: %s: %w", w.path, err)
	}
	return nil
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	return w.flush()
}

// Close flushes and closes the file. Later calls return ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	err := errors.Join(w.rec.Close(), w.f.Close())
	if err != nil {
		return fmt.Errorf("tfevents: close %s: %w", w.path, err)
	}
	w.log.Debug("event file closed")
	return nil
}

var _ io.Closer = (*Writer)(nil)
