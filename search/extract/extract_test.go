package extract

import (
	"archive/zip"
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func extract(t *testing.T, content []byte, contentType, name string, maxBytes int) (string, bool, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Text(ctx, bytes.NewReader(content), contentType, name, maxBytes)
}

func mustText(t *testing.T, content []byte, contentType, name string) string {
	t.Helper()
	text, ok, err := extract(t, content, contentType, name, 1<<20)
	if err != nil || !ok {
		t.Fatalf("Text(%q, %q) = ok %v, err %v", contentType, name, ok, err)
	}
	if !utf8.ValidString(text) {
		t.Fatalf("Text(%q, %q) is not valid UTF-8: %q", contentType, name, text)
	}
	return text
}

func wantWords(t *testing.T, text string, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(text, w) {
			t.Errorf("text lacks %q:\n%s", w, text)
		}
	}
}

func wantNot(t *testing.T, text string, words ...string) {
	t.Helper()
	for _, w := range words {
		if strings.Contains(text, w) {
			t.Errorf("text has %q:\n%s", w, text)
		}
	}
}

func TestDetect(t *testing.T) {
	cases := []struct {
		contentType, name string
		want              format
	}{
		{"text/plain; charset=utf-8", "notes.txt", fmtPlain},
		{"text/plain", "noext", fmtPlain},
		{"application/octet-stream", "main.go", fmtPlain},
		{"", "src/lib.rs", fmtPlain},
		{"application/octet-stream", "Makefile", fmtPlain},
		{"text/x-python", "x", fmtPlain},
		{"application/javascript", "app.js", fmtPlain},
		{"text/markdown", "x", fmtMarkdown},
		{"application/octet-stream", "README.MD", fmtMarkdown},
		{"text/plain", "README.md", fmtMarkdown},
		{"text/html; charset=utf-8", "", fmtHTML},
		{"text/csv", "", fmtCSV},
		{"text/plain", "data.tsv", fmtTSV},
		{"application/json", "", fmtJSON},
		{"application/ld+json", "", fmtJSON},
		{"application/pdf", "", fmtPDF},
		{"application/octet-stream", "report.PDF", fmtPDF},
		{docxType, "", fmtDOCX},
		{"application/octet-stream", "letter.docx", fmtDOCX},
		{"image/png", "photo.png", fmtNone},
		{"application/zip", "code.zip", fmtNone},
		{"application/zip", "letter.docx", fmtDOCX},
		{"application/octet-stream", "blob.bin", fmtNone},
		{"application/octet-stream", "", fmtNone},
		{"image/png", "looks-like.txt", fmtNone}, // a specific type is trusted over the name
		{"not a / type;;", "a.txt", fmtNone},
	}
	for _, c := range cases {
		if got := detect(c.contentType, c.name); got != c.want {
			t.Errorf("detect(%q, %q) = %v, want %v", c.contentType, c.name, got, c.want)
		}
	}
}

func TestPlainText(t *testing.T) {
	src := "package main\n\nfunc main() {\n\tprintln(\"héllo\")\n}\n"
	if got := mustText(t, []byte(src), "application/octet-stream", "main.go"); got != src {
		t.Errorf("got %q, want it as is", got)
	}
	if got := mustText(t, []byte("\xEF\xBB\xBFwith bom"), "text/plain", "a.txt"); got != "with bom" {
		t.Errorf("BOM: got %q", got)
	}
	utf16le := []byte{0xFF, 0xFE, 'h', 0, 'i', 0, ' ', 0, 0xE9, 0}
	if got := mustText(t, utf16le, "text/plain", "a.txt"); got != "hi é" {
		t.Errorf("UTF-16: got %q", got)
	}
}

func TestInvalidUTF8(t *testing.T) {
	got := mustText(t, []byte("ok \xff\xfe bad \xc3"), "text/plain", "a.txt")
	if want := "ok \uFFFD\uFFFD bad \uFFFD"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// In an extracted format too.
	got = mustText(t, []byte("a,b\xff\n"), "text/csv", "")
	if got != "a b\uFFFD" {
		t.Errorf("csv: got %q", got)
	}
}

func TestTruncation(t *testing.T) {
	src := []byte("añb€c") // a(1) ñ(2) b(1) €(3) c(1)
	for maxBytes, want := range map[int]string{1: "a", 2: "a", 3: "añ", 4: "añb", 5: "añb", 6: "añb", 7: "añb€", 8: "añb€c", 100: "añb€c"} {
		got, ok, err := extract(t, src, "text/plain", "", maxBytes)
		if err != nil || !ok || got != want {
			t.Errorf("maxBytes %d: got %q, %v, %v; want %q", maxBytes, got, ok, err, want)
		}
	}
	// Invalid bytes expand to three-byte U+FFFD: the cut still lands on a rune boundary.
	got, _, _ := extract(t, []byte("\xff\xff\xff"), "text/plain", "", 4)
	if got != "\uFFFD" {
		t.Errorf("got %q", got)
	}
	// Extracted formats are cut the same way.
	got, _, _ = extract(t, []byte("<p>añb€c</p>"), "text/html", "", 6)
	if got != "añb" {
		t.Errorf("html: got %q", got)
	}
	if got, _, _ := extract(t, src, "text/plain", "", math.MaxInt); got != string(src) {
		t.Errorf("maxBytes MaxInt: got %q", got)
	}
	// A Markdown line longer than the read buffer.
	long := strings.Repeat("word ", 50000)
	got, _, _ = extract(t, []byte("# T\n"+long+"\nend"), "text/markdown", "", 1<<20)
	if strings.Count(got, "word") != 50000 || !strings.HasPrefix(got, "T\nword") || !strings.HasSuffix(got, "\nend") {
		t.Errorf("long markdown line: %d words, prefix %q", strings.Count(got, "word"), got[:min(len(got), 20)])
	}
	if got, ok, err := extract(t, src, "text/plain", "", 0); got != "" || !ok || err != nil {
		t.Errorf("maxBytes 0: got %q, %v, %v", got, ok, err)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestReadsBounded(t *testing.T) {
	big := strings.NewReader(strings.Repeat("x", 10<<20))
	cr := &countingReader{r: big}
	got, ok, err := Text(context.Background(), cr, "text/plain", "", 100)
	if err != nil || !ok || len(got) != 100 {
		t.Fatalf("got %d bytes, %v, %v", len(got), ok, err)
	}
	if cr.n > 100+utf8.UTFMax+4096 { // bufio may read one buffer ahead
		t.Errorf("plain text read %d bytes for 100", cr.n)
	}

	// A PDF or DOCX over MaxInputBytes is not extracted, and not read beyond the limit.
	for _, ct := range []string{"application/pdf", docxType} {
		cr := &countingReader{r: io.LimitReader(zeros{}, MaxInputBytes+10<<20)}
		got, ok, err := Text(context.Background(), cr, ct, "", 1000)
		if got != "" || ok || err != nil {
			t.Errorf("%s over limit: got %q, %v, %v", ct, got, ok, err)
		}
		if cr.n > MaxInputBytes+64<<10 {
			t.Errorf("%s: read %d bytes", ct, cr.n)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestMarkdown(t *testing.T) {
	src := "# Project *Atlas*\n\n" +
		"Some **bold** and _italic_ text with a [link text](https://example.com/secret-url \"Title\") " +
		"and ![alt words](img/pic.png) and `inline_code` and snake_case_name.\n\n" +
		"> quoted line\n\n" +
		"- item one\n* item two\n1. numbered\n- [x] done task\n\n" +
		"```go\nfunc fenced() {}\n```\n\n" +
		"| col a | col b |\n|---|:---:|\n| cell 1 | cell 2 |\n\n" +
		"Setext heading\n===\n\n---\n\n" +
		"<div class=\"x\">html inside</div> <https://auto.example/link>\n\n" +
		"[ref text][r1]\n\n[r1]: https://example.com/hidden-ref\n"
	got := mustText(t, []byte(src), "text/markdown", "README.md")
	wantWords(t, got, "Project Atlas", "bold", "italic", "link text", "alt words", "inline_code",
		"snake_case_name", "quoted line", "item one", "item two", "numbered", "done task",
		"func fenced() {}", "col a", "cell 2", "Setext heading", "html inside", "https://auto.example/link", "ref text")
	wantNot(t, got, "#", "**", "```", "secret-url", "img/pic.png", "hidden-ref", "<div", "---", "===", "[x]", "> ", "|", "_italic_")
}

func TestHTML(t *testing.T) {
	src := `<!DOCTYPE html><html><head><title>Page Title</title>
<style>body { color: red; } .hidden-style {}</style>
<script>var secret = "do not index"; if (a < b) { alert("x"); }</script></head>
<body><h1>Main  heading</h1><p>First &amp; second<br>line two</p>
<noscript>enable javascript</noscript>
<table><tr><td>cell1</td><td>cell2</td></tr></table>
<!-- a comment -->
<ul><li>one</li><li>two</li></ul></body></html>`
	got := mustText(t, []byte(src), "text/html; charset=utf-8", "page.html")
	wantWords(t, got, "Page Title", "Main heading", "First & second", "line two", "cell1 cell2", "one\ntwo")
	wantNot(t, got, "secret", "do not index", "color", "hidden-style", "enable javascript", "a comment", "<")
}

func TestCSV(t *testing.T) {
	src := "name,city,note\nAda,London,\"said \"\"hi\"\"\"\nBob,,bare \"quote\nshort\n"
	got := mustText(t, []byte(src), "text/csv", "people.csv")
	want := "name city note\nAda London said \"hi\"\nBob bare \"quote\nshort"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = mustText(t, []byte("a\tb\nc\td\n"), "text/tab-separated-values", "")
	if got != "a b\nc d" {
		t.Errorf("tsv: got %q", got)
	}
}

func TestJSON(t *testing.T) {
	src := `{"title": "Quarterly report", "count": 42, "ok": true, "none": null,
"tags": ["finance", "q3"], "nested": {"author": {"name": "Ada"}}}`
	got := mustText(t, []byte(src), "application/json", "doc.json")
	want := "title\nQuarterly report\ncount\nok\nnone\ntags\nfinance\nq3\nnested\nauthor\nname\nAda"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = mustText(t, []byte("{\"a\":\"x\"}\n{\"b\":\"y\"}\n"), "application/octet-stream", "events.ndjson")
	if got != "a\nx\nb\ny" {
		t.Errorf("ndjson: got %q", got)
	}
	// Truncated JSON keeps what was read; garbage is an error.
	got = mustText(t, []byte(`{"a": "kept", "b": [`), "application/json", "")
	if got != "a\nkept\nb" {
		t.Errorf("truncated: got %q", got)
	}
	if _, ok, err := extract(t, []byte("not json"), "application/json", "", 100); err == nil || !ok {
		t.Errorf("garbage: ok %v, err %v", ok, err)
	}
	// Deep nesting ends extraction instead of growing the decoder's stack.
	deep := strings.Repeat("[", 50000) + `"x"` + strings.Repeat("]", 50000)
	if _, _, err := extract(t, []byte(deep), "application/json", "", 100); err != nil {
		t.Errorf("deep: %v", err)
	}
}

// docx builds a DOCX with the given word/document.xml body.
func docx(t *testing.T, body string) []byte {
	t.Helper()
	return zipFiles(t, map[string]string{
		"[Content_Types].xml": `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`,
		"word/document.xml": `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` +
			`<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>` +
			body + `</w:body></w:document>`,
	})
}

func zipFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDOCX(t *testing.T) {
	body := `<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>` +
		`<w:r><w:t>Hello</w:t></w:r><w:r><w:t xml:space="preserve"> wor</w:t></w:r><w:r><w:t>ld</w:t></w:r></w:p>` +
		`<w:p><w:r><w:t>Second</w:t><w:tab/><w:t>para &amp; more</w:t><w:br/><w:t>after break</w:t></w:r></w:p>` +
		`<w:p><w:r><w:delText>deleted words</w:delText><w:instrText>PAGE</w:instrText></w:r></w:p>` +
		`<w:tbl><w:tr><w:tc><w:p><w:r><w:t>c1</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>c2</w:t></w:r></w:p></w:tc></w:tr></w:tbl>`
	got := mustText(t, docx(t, body), docxType, "letter.docx")
	want := "Hello world\nSecond para & more\nafter break\nc1\nc2"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// By extension, with a generic type.
	if got := mustText(t, docx(t, body), "application/octet-stream", "letter.docx"); got != want {
		t.Errorf("by extension: got %q", got)
	}
}

func TestCorruptDOCX(t *testing.T) {
	valid := docx(t, `<w:p><w:r><w:t>text</w:t></w:r></w:p>`)
	cases := map[string][]byte{
		"not a zip":   []byte("this is not a zip file at all"),
		"empty":       nil,
		"no document": zipFiles(t, map[string]string{"other.xml": "<a/>"}),
		"bad xml":     zipFiles(t, map[string]string{"word/document.xml": "<w:document><<<"}),
		"truncated":   valid[:len(valid)/2],
	}
	for name, data := range cases {
		got, _, err := extract(t, data, docxType, "x.docx", 1000)
		if err == nil && got != "" {
			t.Errorf("%s: got %q and no error", name, got)
		}
	}
	// Every truncation of a valid file: no panic, no hang.
	for i := range len(valid) {
		_, _, _ = extract(t, valid[:i], docxType, "x.docx", 1000)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	for j := i; j < i+20 && j < len(c); j++ {
		c[j] ^= 0x5A
	}
	return c
}

func TestDOCXZipBomb(t *testing.T) {
	old := decompressedLimit
	decompressedLimit = 1 << 20
	defer func() { decompressedLimit = old }()

	// 16 MiB of empty runs compresses to a few KiB; the text after them is never reached.
	body := `<w:p><w:r><w:t>start</w:t></w:r></w:p>` + strings.Repeat("<w:r/>", 16<<20/6) +
		`<w:p><w:r><w:t>beyond the limit</w:t></w:r></w:p>`
	data := docx(t, body)
	if len(data) > 1<<20 {
		t.Fatalf("bomb is %d bytes compressed", len(data))
	}
	start := time.Now()
	got, ok, err := extract(t, data, docxType, "bomb.docx", 1000)
	if err != nil || !ok {
		t.Fatalf("ok %v, err %v", ok, err)
	}
	if got != "start" {
		t.Errorf("got %q, want the text before the limit only", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

const winAnsi = " /Encoding /WinAnsiEncoding"

// pdfDoc builds a PDF whose pages show the given content streams with font F1 (Helvetica,
// with the extra font dictionary entries fontExtra). With compress, the streams are FlateDecode'd.
func pdfDoc(t *testing.T, compress bool, fontExtra string, pages ...string) []byte {
	t.Helper()
	var objs []string
	n := len(pages)
	// 1: catalog, 2: pages, 3: font, then page and content objects in pairs.
	kids := make([]string, n)
	for i := range n {
		kids[i] = fmt.Sprintf("%d 0 R", 4+2*i)
	}
	objs = append(objs,
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d /Resources << /Font << /F1 3 0 R >> >> >>", strings.Join(kids, " "), n),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"+fontExtra+" >>",
	)
	for i, content := range pages {
		objs = append(objs, fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>", 5+2*i))
		data, filter := []byte(content), ""
		if compress {
			var buf bytes.Buffer
			zw := zlib.NewWriter(&buf)
			_, _ = zw.Write(data)
			_ = zw.Close()
			data, filter = buf.Bytes(), " /Filter /FlateDecode"
		}
		objs = append(objs, fmt.Sprintf("<< /Length %d%s >>\nstream\n%s\nendstream", len(data), filter, data))
	}
	var buf bytes.Buffer
	buf.WriteString("%PDF-1.4\n%\xE2\xE3\xCF\xD3\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = buf.Len()
		fmt.Fprintf(&buf, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := buf.Len()
	fmt.Fprintf(&buf, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&buf, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&buf, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return buf.Bytes()
}

func TestPDF(t *testing.T) {
	page1 := "BT /F1 24 Tf 72 720 Td (Hello PDF world) Tj 0 -30 Td [(Ker) 20 (ning) -300 (works)] TJ ET"
	page2 := "q 1 0 0 1 0 0 cm BI /W 2 /H 2 /BPC 8 /CS /G ID \x00\xffEI\x01 EI Q\n" +
		"BT /F1 12 Tf 72 700 Td (Second \\(page\\) caf\\351) Tj T* <416C706861> Tj ET"
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			data := pdfDoc(t, compress, winAnsi, page1, page2)
			got := mustText(t, data, "application/pdf", "doc.pdf")
			wantWords(t, got, "Hello PDF world", "Kerning works", "Second (page) café", "Alpha")
			wantNot(t, got, "EI", "\x00")
			if !strings.Contains(got, "works\nSecond") && !strings.Contains(got, "works\n\nSecond") {
				t.Errorf("pages not on separate lines: %q", got)
			}
		})
	}
	// Standard encoding (no /Encoding) and a generic type with a .pdf name.
	got := mustText(t, pdfDoc(t, false, "", "BT /F1 12 Tf (Plain words) Tj ET"), "application/octet-stream", "x.pdf")
	if got != "Plain words" {
		t.Errorf("got %q", got)
	}
	// Word breaks from positioning: with glyph widths (every glyph 500/1000 em here), a Td past
	// the end of the shown text is a space and one that continues it is not.
	widths := " /FirstChar 32 /LastChar 126 /Widths [" + strings.Repeat("500 ", 95) + "]"
	got = mustText(t, pdfDoc(t, false, winAnsi+widths,
		"BT /F1 10 Tf 72 700 Td (Hello) Tj 30 0 Td (world) Tj 25 0 Td (wide) Tj 0 -12 Td [(kern)-20(ed) -500 (gap)] TJ ET"),
		"application/pdf", "")
	if got != "Hello worldwide\nkerned gap" {
		t.Errorf("positioning: got %q", got)
	}
	// Truncation applies to PDF text too.
	got, ok, err := extract(t, pdfDoc(t, false, winAnsi, page1), "application/pdf", "", 5)
	if got != "Hello" || !ok || err != nil {
		t.Errorf("truncated: %q, %v, %v", got, ok, err)
	}
}

func TestCorruptPDF(t *testing.T) {
	valid := pdfDoc(t, true, winAnsi, "BT /F1 24 Tf (Hello) Tj ET", "BT /F1 24 Tf (World) Tj ET")
	cases := map[string][]byte{
		"empty":       nil,
		"garbage":     []byte("%PDF-1.4\nthis is not really a pdf\n%%EOF\n"),
		"no header":   []byte("hello world"),
		"bad xref":    bytes.Replace(valid, []byte("xref\n0 "), []byte("xref\n9 "), 1),
		"flipped":     flip(valid, len(valid)/2),
		"bad filter":  bytes.Replace(pdfDoc(t, false, winAnsi, "BT (x) Tj ET"), []byte("/Length"), []byte("/Filter /Bogus /Length"), 1),
		"huge column": bytes.Replace(pdfDoc(t, true, winAnsi, "BT (x) Tj ET"), []byte("/Filter /FlateDecode"), []byte("/Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 9999999999 >>"), 1),
		"page cycle":  bytes.Replace(valid, []byte("/Kids [4 0 R 6 0 R]"), []byte("/Kids [2 0 R 2 0 R]"), 1),
	}
	for name, data := range cases {
		got, _, err := extract(t, data, "application/pdf", "x.pdf", 1000)
		if name != "flipped" {
			if err == nil && got != "" {
				t.Errorf("%s: want no text, got %q", name, got)
			}
		}
	}
	// Every truncation and many single-byte corruptions: no panic, no hang.
	for i := 0; i < len(valid); i += 3 {
		_, _, _ = extract(t, valid[:i], "application/pdf", "x.pdf", 1000)
		c := bytes.Clone(valid)
		c[i] ^= 0xFF
		_, _, _ = extract(t, c, "application/pdf", "x.pdf", 1000)
	}
}

func TestUnsupported(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	for _, c := range []struct{ ct, name string }{
		{"image/png", "photo.png"},
		{"application/zip", "a.zip"},
		{"application/octet-stream", "blob.bin"},
		{"", "noext"},
		{"video/mp4", "clip.mp4"},
	} {
		got, ok, err := extract(t, png, c.ct, c.name, 100)
		if got != "" || ok || err != nil {
			t.Errorf("%q %q: got %q, %v, %v", c.ct, c.name, got, ok, err)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("storage down") }

func TestErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ct := range []string{"text/plain", "text/html", "text/csv", "application/json", "text/markdown", "application/pdf", docxType} {
		if _, ok, err := Text(ctx, strings.NewReader("x"), ct, "", 100); !errors.Is(err, context.Canceled) || !ok {
			t.Errorf("%s canceled: ok %v, err %v", ct, ok, err)
		}
		if _, ok, err := Text(context.Background(), failingReader{}, ct, "", 100); err == nil || !ok {
			t.Errorf("%s failing reader: ok %v, err %v", ct, ok, err)
		}
	}
	// Canceled while reading a long stream.
	ctx, cancel = context.WithCancel(context.Background())
	r := &cancelAfter{n: 1 << 20, cancel: cancel}
	if _, _, err := Text(ctx, r, "text/html", "", 1<<30); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled mid-read: %v", err)
	}
}

// cancelAfter yields spaces and cancels after n bytes.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	for i := range p {
		p[i] = ' '
	}
	c.n -= len(p)
	return len(p), nil
}

// FuzzText checks that no input panics, hangs or yields invalid or oversized text.
func FuzzText(f *testing.F) {
	types := []string{"text/plain", "text/markdown", "text/html", "text/csv", "application/json", "application/pdf", docxType}
	pdfSeed := pdfDoc(&testing.T{}, false, winAnsi, "BT /F1 12 Tf (Hi) Tj [(a) -300 (b)] TJ ET")
	f.Add(uint8(5), pdfSeed, 100)
	f.Add(uint8(6), docx(&testing.T{}, `<w:p><w:r><w:t>Hi</w:t></w:r></w:p>`), 100)
	f.Add(uint8(2), []byte("<p>a<script>x</script>b</p>"), 10)
	f.Add(uint8(1), []byte("# h\n[a](b) **c**"), 10)
	f.Add(uint8(4), []byte(`{"a":["b",1]}`), 10)
	f.Add(uint8(3), []byte("a,\"b\nc"), 3)
	f.Fuzz(func(t *testing.T, kind uint8, data []byte, maxBytes int) {
		maxBytes %= 1 << 16
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		text, _, err := Text(ctx, bytes.NewReader(data), types[int(kind)%len(types)], "", maxBytes)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("timed out")
		}
		if len(text) > max(maxBytes, 0) || !utf8.ValidString(text) {
			t.Fatalf("bad text: %d bytes for %d, valid %v", len(text), maxBytes, utf8.ValidString(text))
		}
	})
}
