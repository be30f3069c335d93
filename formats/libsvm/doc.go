// Package libsvm reads LIBSVM (svmlight) text data sets: one example per
// line, a label followed by sparse index:value features,
//
//	+1 1:0.708333 2:1 3:1 4:-0.320755 12:1 13:-1
//
// with 1-based, strictly ascending indices. Comments ('#'), blank lines,
// tabs, trailing blanks and CRLF line ends are accepted; malformed lines
// yield errors that wrap ErrSyntax and name the line.
//
// The result is a compressed-sparse-row Data with 0-based columns (file
// index i is column i-1), ready for sparse logistic regression, or dense
// after Dense:
//
//	d, err := libsvm.ReadFile("heart_scale", libsvm.Options{})
//	if err != nil { ... }
//	x, err := d.Dense(d.Dim)     // N()×Dim row-major float32
//	y, err := d.BinaryLabels()   // +1 → 1, -1 → 0
//	cols, vals := d.Row(0)       // the sparse form of row 0
//
// Test data may lack the last columns of the training data: densify both
// with the training set's Dim.
package libsvm
