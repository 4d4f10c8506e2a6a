// Package extract turns stored file content into plain text for search indexing.
//
// The single entry point is [Text]. It picks a format from the media type and,
// when the media type is generic (empty, application/octet-stream or text/plain),
// from the file name's extension:
//
//   - plain text (text/*, common source, config and script files): as is, each byte of
//     invalid UTF-8 replaced with U+FFFD (in every format); a UTF-8 byte order mark is
//     dropped and UTF-16 with a byte order mark is decoded. Other charsets are not converted.
//   - Markdown: the words, without fence markers, heading and quote markers, list bullets,
//     emphasis markers, HTML tags, link and image URLs (link text and image alt text stay).
//   - HTML: the visible text; script, style, noscript and template contents are dropped.
//   - CSV and TSV: the non-empty cells of a row joined by spaces, rows by newlines.
//   - JSON (and NDJSON): object keys and string values in document order, one per line.
//     Numbers, booleans and null are skipped: they are rarely useful search terms.
//   - PDF: the text shown by the pages' content streams, in content order, decoded with the
//     fonts' encodings; pages and text lines on separate lines. Encrypted PDFs are read only
//     when the empty user password opens them. Scanned (image-only) PDFs yield "".
//   - DOCX: the text of the <w:t> runs of word/document.xml, one paragraph per line.
//
// Everything else (images, archives, audio, unknown binaries) is not read: Text
// returns "", false, nil and the caller indexes such files by name and metadata only.
//
// Input is untrusted. Text never panics, and it bounds what it reads and keeps:
//
//   - Plain text reads at most maxBytes+4 bytes of r (2*maxBytes+4 for UTF-16).
//   - Markdown, HTML, CSV, TSV and JSON are streamed from at most [MaxInputBytes] of r
//     (only the first MaxInputBytes count) and stop as soon as maxBytes of text are collected.
//   - PDF and DOCX need random access, so they are read into memory, at most
//     [MaxInputBytes]; a larger file is not extracted (Text returns "", false, nil).
//   - A DOCX's word/document.xml is decompressed up to [MaxDecompressedBytes] (zip bombs
//     stop there); the PDF content streams of a document are decompressed up to
//     MaxDecompressedBytes in total, font ToUnicode maps up to 4 MiB each, and at most
//     [MaxPDFPages] pages are read.
//   - JSON nested deeper than 10,000 levels ends extraction, as does a PDF page tree deeper
//     than 64 levels or with more than 4*MaxPDFPages nodes (cycles).
//   - The result holds at most maxBytes bytes (cut at a rune boundary): the text in memory
//     while extracting is bounded by maxBytes too.
//   - ctx is checked on every read and regularly while parsing; when it is done, Text
//     returns its error.
//
// Known limit: the PDF parser (github.com/ledongthuc/pdf) cannot be interrupted in
// the middle of resolving an object. Text still returns as soon as ctx is done, but a
// crafted PDF may keep a background goroutine busy until that library call ends; run
// extraction in a separate process when that matters.
package extract

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

const (
	// MaxInputBytes is the most Text reads from r for any format (plain text reads less).
	MaxInputBytes = 32 << 20
	// MaxDecompressedBytes bounds the decompressed size of a DOCX's word/document.xml
	// and of all content streams of a PDF taken together.
	MaxDecompressedBytes = 64 << 20
	// MaxPDFPages is the most pages read from a PDF.
	MaxPDFPages = 10000

	maxNesting = 10000
)

// decompressedLimit is MaxDecompressedBytes, lowered by tests.
var decompressedLimit int64 = MaxDecompressedBytes

type format int

const (
	fmtNone format = iota
	fmtPlain
	fmtMarkdown
	fmtHTML
	fmtCSV
	fmtTSV
	fmtJSON
	fmtPDF
	fmtDOCX
)

const docxType = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

// Text returns the searchable text of content of the given media type and file name, at most
// maxBytes of UTF-8 (cut at a rune boundary), and whether the type is one it extracts from. For types
// it does not read (images, archives, unknown binaries) it returns "", false, nil: the caller indexes
// such files by name and metadata only. r may be read only up to a bounded amount: see the package
// documentation for the limits. maxBytes <= 0 yields "" without reading r.
//
// A PDF or DOCX larger than MaxInputBytes is reported as not extracted ("", false, nil).
// Errors are returned for content that cannot be parsed at all (a corrupt PDF or DOCX, JSON
// that yields nothing), for read errors of r and when ctx is done; a partly damaged document
// yields the text that could be read.
func Text(ctx context.Context, r io.Reader, contentType, name string, maxBytes int) (string, bool, error) {
	f := detect(contentType, name)
	if f == fmtNone {
		return "", false, nil
	}
	if err := ctx.Err(); err != nil {
		return "", true, err
	}
	if maxBytes <= 0 {
		return "", true, nil
	}
	cr := &ctxReader{ctx: ctx, r: r}
	out := newTextBuf(maxBytes)
	var err error
	supported := true
	switch f {
	case fmtPlain:
		err = extractPlain(cr, out)
	case fmtMarkdown:
		err = extractMarkdown(io.LimitReader(cr, MaxInputBytes), out)
	case fmtHTML:
		err = extractHTML(io.LimitReader(cr, MaxInputBytes), out)
	case fmtCSV:
		err = extractCSV(io.LimitReader(cr, MaxInputBytes), ',', out)
	case fmtTSV:
		err = extractCSV(io.LimitReader(cr, MaxInputBytes), '\t', out)
	case fmtJSON:
		err = extractJSON(io.LimitReader(cr, MaxInputBytes), out)
	case fmtPDF:
		supported, err = extractPDF(ctx, cr, out)
	case fmtDOCX:
		supported, err = extractDOCX(ctx, cr, out)
	}
	// A failed read of r or a done ctx wins over whatever partial text was collected.
	if cerr := ctx.Err(); cerr != nil {
		return "", true, cerr
	}
	if cr.err != nil {
		return "", true, cr.err
	}
	if err != nil {
		return "", true, err
	}
	if !supported {
		return "", false, nil
	}
	return out.String(), true, nil
}

// detect picks the format from the media type, or from the name when the type is generic.
func detect(contentType, name string) format {
	mt := strings.ToLower(strings.TrimSpace(contentType))
	if parsed, _, err := mime.ParseMediaType(mt); err == nil {
		mt = parsed
	} else if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	switch mt {
	case "", "application/octet-stream", "binary/octet-stream", "text/plain":
		if f := byName(name); f != fmtNone {
			return f
		}
		if mt == "text/plain" {
			return fmtPlain
		}
		return fmtNone
	case "text/html", "application/xhtml+xml":
		return fmtHTML
	case "text/markdown", "text/x-markdown":
		return fmtMarkdown
	case "text/csv", "application/csv":
		return fmtCSV
	case "text/tab-separated-values":
		return fmtTSV
	case "application/json", "application/x-ndjson", "application/ndjson", "application/jsonl", "text/json":
		return fmtJSON
	case "application/pdf", "application/x-pdf":
		return fmtPDF
	case docxType:
		return fmtDOCX
	case "application/zip", "application/x-zip-compressed":
		// DOCX files are sometimes labeled as the zip archives they are.
		if byName(name) == fmtDOCX {
			return fmtDOCX
		}
		return fmtNone
	}
	if strings.HasSuffix(mt, "+json") {
		return fmtJSON
	}
	if strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+xml") || textApplicationTypes[mt] {
		return fmtPlain
	}
	return fmtNone
}

var textApplicationTypes = map[string]bool{
	"application/javascript": true, "application/x-javascript": true, "application/ecmascript": true,
	"application/typescript": true, "application/xml": true, "application/yaml": true,
	"application/x-yaml": true, "application/toml": true, "application/sql": true,
	"application/x-sh": true, "application/x-shellscript": true, "application/x-httpd-php": true,
	"application/graphql": true, "application/x-tex": true, "application/x-latex": true,
}

func byName(name string) format {
	base := name
	if i := strings.LastIndexAny(base, `/\`); i >= 0 {
		base = base[i+1:]
	}
	lower := strings.ToLower(base)
	ext := ""
	if i := strings.LastIndexByte(lower, '.'); i > 0 {
		ext = lower[i+1:]
	}
	switch ext {
	case "md", "markdown", "mdown", "mkd", "mkdn":
		return fmtMarkdown
	case "html", "htm", "xhtml":
		return fmtHTML
	case "csv":
		return fmtCSV
	case "tsv", "tab":
		return fmtTSV
	case "json", "jsonl", "ndjson", "geojson":
		return fmtJSON
	case "pdf":
		return fmtPDF
	case "docx":
		return fmtDOCX
	}
	if textExtensions[ext] || textNames[lower] {
		return fmtPlain
	}
	return fmtNone
}

var textExtensions = setOf(
	"txt", "text", "log", "rst", "adoc", "asciidoc", "org", "tex", "bib", "srt", "vtt",
	"go", "py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "java", "kt", "kts", "scala",
	"groovy", "gradle", "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "m", "mm", "cs",
	"fs", "vb", "rs", "rb", "php", "pl", "pm", "lua", "r", "jl", "swift", "dart", "ex", "exs",
	"erl", "hrl", "hs", "ml", "mli", "clj", "cljs", "elm", "zig", "nim", "v", "sv", "vhd",
	"sh", "bash", "zsh", "fish", "ps1", "bat", "cmd", "sql", "graphql", "gql", "proto",
	"thrift", "yaml", "yml", "toml", "ini", "cfg", "conf", "properties", "env", "xml",
	"xsd", "xsl", "svg", "css", "scss", "sass", "less", "vue", "svelte", "tf", "hcl",
	"mk", "cmake", "dockerfile", "gitignore", "editorconfig", "diff", "patch",
)

var textNames = setOf(
	"makefile", "dockerfile", "readme", "license", "licence", "copying", "authors",
	"changelog", "notice", "contributing", "gemfile", "rakefile", "procfile", "vagrantfile",
	"jenkinsfile", "go.mod", "go.sum",
)

func setOf(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, s := range items {
		m[s] = true
	}
	return m
}

// extractPlain keeps text as is. It reads only as much as can end up in the output: each
// input byte yields at least one output byte (U+FFFD replaces one invalid byte with three),
// and the extra utf8.UTFMax bytes complete a rune cut by the read limit.
func extractPlain(r io.Reader, out *textBuf) error {
	br := bufio.NewReader(r)
	head, _ := br.Peek(3) // a short or failed peek is handled by the reads below
	limit := min(int64(out.max), MaxInputBytes) + utf8.UTFMax
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		_, _ = br.Discard(3)
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		littleEndian := head[0] == 0xFF
		_, _ = br.Discard(2)
		data, err := readLimited(br, 2*limit)
		if err != nil {
			return err
		}
		out.WriteString(decodeUTF16(data, littleEndian))
		return nil
	}
	data, err := readLimited(br, limit)
	if err != nil {
		return err
	}
	out.WriteString(string(data))
	return nil
}

func decodeUTF16(b []byte, littleEndian bool) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		if littleEndian {
			u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		} else {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
	}
	return string(utf16.Decode(u))
}

// readLimited reads r up to n bytes, clamped to MaxInputBytes.
func readLimited(r io.Reader, n int64) ([]byte, error) {
	n = min(n, MaxInputBytes)
	var buf bytes.Buffer
	_, err := buf.ReadFrom(io.LimitReader(r, n))
	return buf.Bytes(), err
}

// readAll reads all of r into memory if it is at most limit bytes; over reports a larger input.
func readAll(r io.Reader, limit int64) (data []byte, over bool, err error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, false, err
	}
	if n > limit {
		return nil, true, nil
	}
	return buf.Bytes(), false, nil
}

// ctxReader fails reads once ctx is done and remembers the first read error other than EOF,
// so that a parser that stops on any error does not hide a failed read.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	return n, err
}

// textBuf collects at most max bytes of valid UTF-8. Separators are written lazily, only
// between pieces of text, so the result has no leading or trailing separator and no runs.
type textBuf struct {
	b       []byte
	max     int
	full    bool
	pending byte // separator to write before the next text: 0, ' ' or '\n'
}

func newTextBuf(maxBytes int) *textBuf {
	return &textBuf{max: maxBytes, b: make([]byte, 0, min(maxBytes, 64<<10))}
}

// sep asks for a separator before the next text; '\n' wins over ' '.
func (t *textBuf) sep(c byte) {
	if c == '\n' || t.pending == 0 {
		t.pending = c
	}
}

// WriteString appends s, with invalid UTF-8 replaced, and reports whether there is room for more.
func (t *textBuf) WriteString(s string) bool {
	if t.full {
		return false
	}
	if s == "" {
		return true
	}
	if !utf8.ValidString(s) {
		s = replaceInvalid(s)
	}
	if t.pending != 0 {
		if len(t.b) > 0 && !isSpaceByte(t.b[len(t.b)-1]) && !isSpaceByte(s[0]) {
			t.add(string(t.pending))
		}
		t.pending = 0
	}
	t.add(s)
	return !t.full
}

func (t *textBuf) add(s string) {
	if t.full {
		return
	}
	room := t.max - len(t.b)
	if len(s) <= room {
		t.b = append(t.b, s...)
		return
	}
	cut := room
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	t.b = append(t.b, s[:cut]...)
	t.full = true
}

// writeCollapsed writes s with runs of white space collapsed to single separators.
func (t *textBuf) writeCollapsed(s string) bool {
	if s == "" {
		return !t.full
	}
	first := true
	for field := range strings.FieldsSeq(s) {
		if !first || isSpaceByte(s[0]) {
			t.sep(' ')
		}
		first = false
		if !t.WriteString(field) {
			return false
		}
	}
	if isSpaceByte(s[len(s)-1]) {
		t.sep(' ')
	}
	return !t.full
}

func (t *textBuf) String() string { return string(t.b) }

// replaceInvalid replaces each byte that is not part of valid UTF-8 with U+FFFD (as ranging
// over a string does), so that the text of a prefix of the input is a prefix of the text.
func replaceInvalid(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'
}
