package ps

import (
	"context"
	"errors"
	"strings"
)

// Sentinel errors. Servers wrap them with context; transports carry their
// Code across the wire and rebuild an error that matches the same sentinel
// with errors.Is on the client.
var (
	ErrNotOwner        = errors.New("ps: not owner")
	ErrUnknownVariable = errors.New("ps: unknown variable")
	ErrSpecMismatch    = errors.New("ps: variable spec mismatch")
	ErrShapeMismatch   = errors.New("ps: shape mismatch")
	ErrNonFinite       = errors.New("ps: non-finite gradient")
	ErrStale           = errors.New("ps: stale step")
	ErrInvalidArgument = errors.New("ps: invalid argument")
	ErrTooLarge        = errors.New("ps: message too large")
	ErrUnavailable     = errors.New("ps: server unavailable")
	ErrClosed          = errors.New("ps: closed")
)

// Code is the stable wire name of a sentinel error.
type Code string

// The codes, one per sentinel.
const (
	CodeOK              Code = ""
	CodeNotOwner        Code = "not_owner"
	CodeUnknownVariable Code = "unknown_variable"
	CodeSpecMismatch    Code = "spec_mismatch"
	CodeShapeMismatch   Code = "shape_mismatch"
	CodeNonFinite       Code = "non_finite"
	CodeStale           Code = "stale"
	CodeInvalidArgument Code = "invalid_argument"
	CodeTooLarge        Code = "too_large"
	CodeUnavailable     Code = "unavailable"
	CodeClosed          Code = "closed"
	CodeCanceled        Code = "canceled"
	CodeDeadline        Code = "deadline_exceeded"
	CodeInternal        Code = "internal"
)

var codeOf = []struct {
	err  error
	code Code
}{
	{ErrNotOwner, CodeNotOwner},
	{ErrUnknownVariable, CodeUnknownVariable},
	{ErrSpecMismatch, CodeSpecMismatch},
	{ErrShapeMismatch, CodeShapeMismatch},
	{ErrNonFinite, CodeNonFinite},
	{ErrStale, CodeStale},
	{ErrInvalidArgument, CodeInvalidArgument},
	{ErrTooLarge, CodeTooLarge},
	{ErrUnavailable, CodeUnavailable},
	{ErrClosed, CodeClosed},
	{context.Canceled, CodeCanceled},
	{context.DeadlineExceeded, CodeDeadline},
}

// CodeOf returns the code of the first sentinel err wraps, CodeOK for nil
// and CodeInternal for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// wireError is an error rebuilt from a code and message that matches its
// sentinel with errors.Is.
type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }

// ErrorFromCode rebuilds an error received over a wire. msg is the remote
// error's text; the result matches the code's sentinel with errors.Is. An
// unknown code yields a plain error with msg.
func ErrorFromCode(code Code, msg string) error {
	if code == CodeOK {
		return nil
	}
	for _, c := range codeOf {
		if c.code == code {
			if !strings.Contains(msg, c.err.Error()) {
				msg = c.err.Error() + ": " + msg
			}
			return &wireError{sentinel: c.err, msg: msg}
		}
	}
	return errors.New(msg)
}

// Retryable reports whether a client should refresh its membership view and
// retry a request that failed with err.
func Retryable(err error) bool {
	return errors.Is(err, ErrNotOwner) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed)
}
