package eventstore

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is where an event sits in delivery order: its transaction id, then its global position.
// Subscribers consume in this order, so a read model whose checkpoint is at or past a Position has
// applied every event up to it. Its String form is the consistency token handed to clients.
type Position struct {
	TransactionID  uint64
	GlobalPosition int64
}

// String returns the consistency token "<transaction id>.<global position>".
func (p Position) String() string {
	return strconv.FormatUint(p.TransactionID, 10) + "." + strconv.FormatInt(p.GlobalPosition, 10)
}

// IsZero reports whether p is the position before the first event.
func (p Position) IsZero() bool { return p == Position{} }

// Less reports whether p comes before o in delivery order.
func (p Position) Less(o Position) bool {
	if p.TransactionID != o.TransactionID {
		return p.TransactionID < o.TransactionID
	}
	return p.GlobalPosition < o.GlobalPosition
}

// ParsePosition parses a consistency token.
func ParsePosition(token string) (Position, error) {
	a, b, ok := strings.Cut(token, ".")
	if !ok {
		return Position{}, fmt.Errorf("consistency token %q is not <transaction>.<position>", token)
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	g, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || g < 0 {
		return Position{}, fmt.Errorf("consistency token %q is not <transaction>.<position>", token)
	}
	return Position{TransactionID: x, GlobalPosition: g}, nil
}
