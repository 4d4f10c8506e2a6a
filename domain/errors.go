// Package domain holds what every aggregate shares: the error type with its machine codes, and the
// event interfaces. It imports nothing of Atlas's and does no I/O.
package domain

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Code is a machine-readable error kind. The HTTP layer maps each code to one status in one table.
type Code string

// The error kinds. Every method that fails with a domain error documents which of these it returns.
const (
	CodeInvalid         Code = "validation_failed" // input breaks a field rule; Details names the fields
	CodeBadRequest      Code = "invalid_request"   // the request itself is malformed
	CodeUnauthenticated Code = "unauthenticated"
	CodeForbidden       Code = "forbidden"
	CodeNotFound        Code = "not_found"
	CodeConflict        Code = "conflict"
	CodeVersionConflict Code = "version_conflict"
	CodeTooLarge        Code = "too_large"
	CodeNotReady        Code = "not_ready"
	CodeRateLimited     Code = "rate_limited"
	CodeInternal        Code = "internal"
)

// Error is Atlas's one error type: a code, a human message and optional per-field details.
type Error struct {
	Code    Code
	Message string
	Details map[string]string
}

func (e *Error) Error() string {
	if len(e.Details) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + e.Details[k]
	}
	return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, strings.Join(parts, "; "))
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal for any other error,
// and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Validation collects per-field rule violations and turns them into one CodeInvalid error.
type Validation map[string]string

// Add records a violation for field unless one is already recorded.
func (v Validation) Add(field, msg string) {
	if _, ok := v[field]; !ok {
		v[field] = msg
	}
}

// Err returns nil when nothing was recorded, else a CodeInvalid *Error naming each field.
func (v Validation) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalid, Message: "the request breaks field rules", Details: map[string]string(v)}
}

// CheckDisplayText returns why s is not acceptable as a short display text (a name, a title) of at
// most max characters, or "": it must be valid UTF-8, not blank, and free of control characters.
func CheckDisplayText(s string, max int) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.TrimSpace(s) == "":
		return "is required"
	case utf8.RuneCountInString(s) > max:
		return fmt.Sprintf("must be at most %d characters", max)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "must not contain control characters"
		}
	}
	return ""
}
