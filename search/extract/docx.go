package extract

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

const docxMainPart = "word/document.xml"

// extractDOCX writes the text of the <w:t> elements of word/document.xml, one paragraph
// (<w:p>) per line, tabs as spaces and breaks as newlines. Deleted text (<w:delText>) and
// field codes (<w:instrText>) are not text elements and are skipped. The file is read into
// memory only up to MaxInputBytes (a larger one is reported as not extracted), and
// document.xml is decompressed only up to MaxDecompressedBytes.
func extractDOCX(ctx context.Context, r io.Reader, out *textBuf) (bool, error) {
	data, over, err := readAll(r, MaxInputBytes)
	if err != nil {
		return true, err
	}
	if over {
		return false, nil
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, zip.ErrInsecurePath) && zr != nil {
		err = nil // names such as "../x" do not matter: nothing is written to disk
	}
	if err != nil {
		return true, fmt.Errorf("extract: docx: %w", err)
	}
	var part *zip.File
	for _, f := range zr.File {
		if f.Name == docxMainPart {
			part = f
			break
		}
	}
	if part == nil {
		return true, fmt.Errorf("extract: docx: no %s", docxMainPart)
	}
	rc, err := part.Open()
	if err != nil {
		return true, fmt.Errorf("extract: docx: %w", err)
	}
	defer func() { _ = rc.Close() }()

	// The limit ends decompression of a zip bomb; whatever was read until then is kept.
	lr := &io.LimitedReader{R: &ctxReader{ctx: ctx, r: rc}, N: decompressedLimit}
	dec := xml.NewDecoder(lr)
	// RawToken neither checks nesting nor keeps a stack of open elements, so deeply nested
	// input costs no memory; element names are matched by local name (w:t, and a:t / m:t
	// of text boxes and equations).
	inText := false
	for !out.full {
		tok, err := dec.RawToken()
		if err != nil {
			if errors.Is(err, io.EOF) || lr.N <= 0 || len(out.b) > 0 {
				return true, nil
			}
			return true, fmt.Errorf("extract: docx: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "t":
				inText = true
			case "tab":
				out.sep(' ')
			case "br", "cr":
				out.sep('\n')
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inText = false
			case "p":
				out.sep('\n')
			case "tc":
				out.sep(' ')
			}
		case xml.CharData:
			if inText {
				out.WriteString(string(t))
			}
		}
	}
	return true, nil
}
