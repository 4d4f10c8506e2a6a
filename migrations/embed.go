// Package migrations holds Atlas's versioned SQL schema, embedded into the binary and applied by
// `atlas migrate` and at start-up.
package migrations

import "embed"

// FS holds the numbered goose migration files.
//
//go:embed *.sql
var FS embed.FS
