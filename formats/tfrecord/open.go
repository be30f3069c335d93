package tfrecord

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Files expands pattern into the record files it names, in order:
//   - an existing regular file: that file;
//   - a directory: its files named part-* (as Spark and Hadoop write them),
//     sorted by name; if it holds none, its other regular files except hidden
//     ones, those starting with '_' (such as _SUCCESS) and *.crc checksums;
//   - otherwise a glob (path/filepath.Match syntax): the matching regular
//     files, sorted.
//
// A pattern that names no file yields an error wrapping ErrNoFiles.
func Files(pattern string) ([]string, error) {
	if st, err := os.Stat(pattern); err == nil {
		if !st.IsDir() {
			return []string{pattern}, nil
		}
		return dirFiles(pattern)
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("tfrecord: pattern %q: %w", pattern, err)
	}
	var files []string
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		files = append(files, m)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("tfrecord: %q matches no files: %w", pattern, ErrNoFiles)
	}
	sort.Strings(files)
	return files, nil
}

func dirFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tfrecord: %w", err)
	}
	var parts, others []string
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "part-"):
			parts = append(parts, filepath.Join(dir, name))
		case strings.HasPrefix(name, "."), strings.HasPrefix(name, "_"), strings.HasSuffix(name, ".crc"):
		default:
			others = append(others, filepath.Join(dir, name))
		}
	}
	files := parts
	if len(files) == 0 {
		files = others
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("tfrecord: directory %s holds no record files: %w", dir, ErrNoFiles)
	}
	sort.Strings(files)
	return files, nil
}

// MultiReader reads the records of several files in order, detecting each
// file's compression on its own. It is not safe for concurrent use.
type MultiReader struct {
	files []string
	opts  ReaderOptions
	i     int // index of the current file in files
	f     *os.File
	r     *Reader
	err   error
}

// Open returns a MultiReader over the files that pattern names (see Files).
// opts apply to every file; opts.Name is replaced by each file's path.
func Open(pattern string) (*MultiReader, error) {
	return OpenOptions(pattern, ReaderOptions{})
}

// OpenOptions is Open with reader options.
func OpenOptions(pattern string, opts ReaderOptions) (*MultiReader, error) {
	files, err := Files(pattern)
	if err != nil {
		return nil, err
	}
	return &MultiReader{files: files, opts: opts, i: -1}, nil
}

// Files returns the files the reader reads, in order.
func (m *MultiReader) Files() []string { return append([]string(nil), m.files...) }

// File returns the path of the file the last record came from.
func (m *MultiReader) File() string {
	if m.i < 0 || m.i >= len(m.files) {
		return ""
	}
	return m.files[m.i]
}

// Index returns the index within its file of the record the next call to
// Next would read in the current file.
func (m *MultiReader) Index() int64 {
	if m.r == nil {
		return 0
	}
	return m.r.Index()
}

// Next returns the next record, moving on to the next file at the end of
// each; io.EOF after the last. The slice is valid until the next call.
// Errors name the file, record index and offset, and are sticky.
func (m *MultiReader) Next() ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	for {
		if m.r == nil {
			if m.i+1 >= len(m.files) {
				m.err = io.EOF
				return nil, io.EOF
			}
			if err := m.openNext(); err != nil {
				m.err = err
				return nil, err
			}
		}
		rec, err := m.r.Next()
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, io.EOF) {
			m.err = err
			return nil, err
		}
		if err := m.closeCurrent(); err != nil {
			m.err = err
			return nil, err
		}
	}
}

// All returns an iterator over the remaining records of all files and a
// final error, if any (io.EOF is not reported).
func (m *MultiReader) All() iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for {
			rec, err := m.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}
}

func (m *MultiReader) openNext() error {
	m.i++
	path := m.files[m.i]
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tfrecord: %w", err)
	}
	opts := m.opts
	opts.Name = path
	r, err := NewReaderOptions(f, opts)
	if err != nil {
		f.Close()
		return err
	}
	m.f, m.r = f, r
	return nil
}

func (m *MultiReader) closeCurrent() error {
	if m.r == nil {
		return nil
	}
	err := errors.Join(m.r.Close(), m.f.Close())
	m.r, m.f = nil, nil
	if err != nil && !errors.Is(err, fs.ErrClosed) {
		return fmt.Errorf("tfrecord: close %s: %w", m.files[m.i], err)
	}
	return nil
}

// Close closes the current file. Next returns io.EOF afterwards.
func (m *MultiReader) Close() error {
	err := m.closeCurrent()
	m.i = len(m.files)
	if m.err == nil {
		m.err = io.EOF
	}
	return err
}

// ReadAll reads every record that pattern names into memory, copied.
func ReadAll(pattern string) ([][]byte, error) {
	m, err := Open(pattern)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var out [][]byte
	for rec, err := range m.All() {
		if err != nil {
			return nil, err
		}
		out = append(out, append([]byte(nil), rec...))
	}
	return out, nil
}
