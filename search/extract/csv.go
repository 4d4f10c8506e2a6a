package extract

import (
	"encoding/csv"
	"errors"
	"io"
	"strings"
)

// extractCSV writes the non-empty cells of each record joined by spaces, records by newlines.
// Parsing is lenient (LazyQuotes, any number of fields); a malformed record ends extraction
// with the text collected so far.
func extractCSV(r io.Reader, comma rune, out *textBuf) error {
	cr := csv.NewReader(r)
	cr.Comma = comma
	cr.LazyQuotes = true
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	for !out.full {
		record, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // a read error of r is reported by Text
		}
		for _, cell := range record {
			if cell = strings.TrimSpace(cell); cell != "" {
				out.sep(' ')
				out.WriteString(cell)
			}
		}
		out.sep('\n')
	}
	return nil
}
