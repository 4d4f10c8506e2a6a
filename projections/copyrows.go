package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// copyRows builds the input of a COPY ... FROM STDIN (FORMAT binary) in memory, in PostgreSQL's
// binary copy format: a signature and header, then per row its field count and each field as a
// length (-1 for NULL) and its binary value, then a trailer. A rebuild writes its copies this way:
// pgx's CopyFrom takes each value as an interface and plans its encoding every time, which cost this
// process more than all of PostgreSQL's parsing of the rows.
type copyRows struct {
	buf    []byte
	fields int16 // per row
	rows   int
}

// copySignature starts every binary COPY input; flags and header extension length (both 0) follow.
const copySignature = "PGCOPY\n\xff\r\n\x00"

func newCopyRows(fields int, sizeHint int) *copyRows {
	c := &copyRows{buf: make([]byte, 0, sizeHint), fields: int16(fields)}
	c.buf = append(c.buf, copySignature...)
	c.buf = binary.BigEndian.AppendUint32(c.buf, 0)
	c.buf = binary.BigEndian.AppendUint32(c.buf, 0)
	return c
}

// row starts a row; its fields follow, in the column order given to copyInto.
func (c *copyRows) row() {
	c.buf = binary.BigEndian.AppendUint16(c.buf, uint16(c.fields))
	c.rows++
}

func (c *copyRows) null() { c.buf = binary.BigEndian.AppendUint32(c.buf, 0xffffffff) }

func (c *copyRows) uuid(v pgtype.UUID) {
	if !v.Valid {
		c.null()
		return
	}
	c.buf = binary.BigEndian.AppendUint32(c.buf, 16)
	c.buf = append(c.buf, v.Bytes[:]...)
}

func (c *copyRows) text(v string) {
	c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(len(v)))
	c.buf = append(c.buf, v...)
}

func (c *copyRows) int8(v int64) {
	c.buf = binary.BigEndian.AppendUint32(c.buf, 8)
	c.buf = binary.BigEndian.AppendUint64(c.buf, uint64(v))
}

// postgresEpoch is where PostgreSQL's binary timestamps count microseconds from.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

// timestamptz writes t to the microsecond (truncated, as pgx encodes it).
func (c *copyRows) timestamptz(t time.Time) {
	c.buf = binary.BigEndian.AppendUint32(c.buf, 8)
	c.buf = binary.BigEndian.AppendUint64(c.buf, uint64(t.UnixMicro()-postgresEpoch))
}

// copyInto sends the rows to table (as the search path resolves it) into columns, which must be
// as many as each row's fields, in the same order and of the types written.
func (c *copyRows) copyInto(ctx context.Context, tx pgx.Tx, table string, columns []string) error {
	if len(columns) != int(c.fields) {
		return fmt.Errorf("copy into %s: %d columns for rows of %d fields", table, len(columns), c.fields)
	}
	if c.rows == 0 {
		return nil
	}
	cols := make([]string, len(columns))
	for i, col := range columns {
		cols[i] = pgx.Identifier{col}.Sanitize()
	}
	data := binary.BigEndian.AppendUint16(c.buf, 0xffff) // the trailer
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data),
		"COPY "+pgx.Identifier{table}.Sanitize()+" ("+strings.Join(cols, ", ")+") FROM STDIN (FORMAT binary)")
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	if tag.RowsAffected() != int64(c.rows) {
		return fmt.Errorf("copy into %s: %d rows written of %d", table, tag.RowsAffected(), c.rows)
	}
	return nil
}
