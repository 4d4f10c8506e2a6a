package extract

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// extractJSON writes object keys and string values in document order, one per line.
// Numbers, booleans and null are skipped. A stream of values (NDJSON) is read to its end.
// A syntax error ends extraction: with the text collected so far, or with an error when
// nothing was collected.
func extractJSON(r io.Reader, out *textBuf) error {
	dec := json.NewDecoder(r)
	dec.UseNumber() // numbers are skipped; this avoids converting them
	depth := 0
	for !out.full {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if len(out.b) == 0 {
				return fmt.Errorf("extract: json: %w", err)
			}
			return nil
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				if depth++; depth > maxNesting {
					return nil
				}
			} else {
				depth--
			}
		case string:
			out.sep('\n')
			out.WriteString(v)
		}
	}
	return nil
}
