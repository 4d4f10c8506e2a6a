package extract

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/ledongthuc/pdf"
)

// PDF extraction uses github.com/ledongthuc/pdf for the file structure (cross-reference
// table, objects, stream filters, font encodings) and its own small content-stream scanner
// for the text operators, so that decompressed content is bounded, ctx is checked while
// scanning and operands cannot pile up. The library reports malformed input by panicking;
// every call into it runs under recover.

const (
	maxPDFTreeDepth   = 64      // page tree levels
	maxCMapBytes      = 4 << 20 // decompressed ToUnicode map of one font
	maxPredictorCols  = 1 << 16 // PNG predictor columns of a stream (the library allocates them)
	maxPDFOperands    = 1 << 10 // operands kept before an operator; more are dropped
	maxPDFArray       = 1 << 16 // elements kept of a TJ array
	maxPDFString      = 1 << 20 // bytes kept of one string operand
	maxPDFToken       = 1 << 10 // bytes kept of one name, number or operator
	pdfSpaceThreshold = -180    // TJ displacement (thousandths of an em) read as a word break
)

var errPDFBudget = errors.New("extract: pdf: decompressed content limit reached")

// extractPDF reads the PDF into memory (at most MaxInputBytes) and writes the text of its
// pages. It runs the extraction on its own goroutine so that it returns as soon as ctx is
// done, even while the library is busy.
func extractPDF(ctx context.Context, r io.Reader, out *textBuf) (bool, error) {
	data, over, err := readAll(r, MaxInputBytes)
	if err != nil {
		return true, err
	}
	if over {
		return false, nil
	}
	type result struct {
		text *textBuf
		err  error
	}
	budget := decompressedLimit
	done := make(chan result, 1)
	go func() {
		local := newTextBuf(out.max)
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("extract: pdf: malformed document: %v", p)
				}
			}()
			err = pdfText(ctx, data, budget, local)
		}()
		done <- result{local, err}
	}()
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case res := <-done:
		if res.err != nil {
			return true, res.err
		}
		*out = *res.text
		return true, nil
	}
}

type pdfExtractor struct {
	ctx    context.Context
	out    *textBuf
	budget int64 // decompressed content bytes left
	pages  int
	nodes  int // page tree nodes visited
	// firstErr is the first error met on a page; it is returned only when no text was found.
	firstErr error
}

func pdfText(ctx context.Context, data []byte, budget int64, out *textBuf) error {
	doc, err := pdf.NewReader(&ctxReaderAt{ctx: ctx, r: bytes.NewReader(data)}, int64(len(data)))
	if err != nil {
		return fmt.Errorf("extract: pdf: %w", err)
	}
	e := &pdfExtractor{ctx: ctx, out: out, budget: budget}
	root := doc.Trailer().Key("Root").Key("Pages")
	if root.Kind() != pdf.Dict {
		return errors.New("extract: pdf: no page tree")
	}
	e.walk(root, 0)
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(out.b) == 0 && e.firstErr != nil {
		return e.firstErr
	}
	return nil
}

// walk visits the page tree depth first and reports whether to go on. A malformed node is
// skipped.
func (e *pdfExtractor) walk(node pdf.Value, depth int) (goOn bool) {
	defer func() {
		if r := recover(); r != nil {
			if e.firstErr == nil {
				e.firstErr = fmt.Errorf("extract: pdf: malformed page tree: %v", r)
			}
			goOn = !e.stop()
		}
	}()
	if depth > maxPDFTreeDepth || e.stop() {
		return false
	}
	// Kids may form cycles: the depth limit ends each path, this the whole walk.
	if e.nodes++; e.nodes > 4*MaxPDFPages {
		return false
	}
	kids := node.Key("Kids")
	if node.Key("Type").Name() == "Page" || (kids.Kind() != pdf.Array && node.Key("Contents").Kind() != pdf.Null) {
		e.pages++
		e.page(node)
		return !e.stop()
	}
	for i := range kids.Len() {
		if !e.walk(kids.Index(i), depth+1) {
			return false
		}
	}
	return true
}

func (e *pdfExtractor) stop() bool {
	return e.out.full || e.budget <= 0 || e.pages >= MaxPDFPages || e.ctx.Err() != nil
}

// page writes the text of one page; a malformed page is skipped.
func (e *pdfExtractor) page(p pdf.Value) {
	defer func() {
		if r := recover(); r != nil && e.firstErr == nil {
			e.firstErr = fmt.Errorf("extract: pdf: malformed page: %v", r)
		}
	}()
	e.out.sep('\n')
	contents := p.Key("Contents")
	var streams []pdf.Value
	switch contents.Kind() {
	case pdf.Stream:
		streams = append(streams, contents)
	case pdf.Array:
		for i := range min(contents.Len(), maxPDFOperands) {
			if s := contents.Index(i); s.Kind() == pdf.Stream {
				streams = append(streams, s)
			}
		}
	default:
		return
	}
	fonts := inherited(p, "Resources").Key("Font")
	sc := &contentScanner{e: e, fonts: fonts, fontCache: map[string]*fontInfo{}}
	sc.run(&budgetReader{e: e, r: &streamsReader{streams: streams}})
}

// streamsReader reads the streams of a page's content one after another, opening each only
// when it is reached; a newline between them keeps their tokens apart.
type streamsReader struct {
	streams []pdf.Value
	cur     io.Reader
}

func (m *streamsReader) Read(p []byte) (int, error) {
	for {
		if m.cur == nil {
			if len(m.streams) == 0 {
				return 0, io.EOF
			}
			s := m.streams[0]
			m.streams = m.streams[1:]
			if err := checkStream(s); err != nil {
				return 0, err
			}
			m.cur = io.MultiReader(s.Reader(), strings.NewReader("\n"))
		}
		n, err := m.cur.Read(p)
		if errors.Is(err, io.EOF) {
			m.cur = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

// inherited looks key up on a page and its ancestors, as Resources are inherited.
func inherited(v pdf.Value, key string) pdf.Value {
	for range maxPDFTreeDepth {
		if v.IsNull() {
			break
		}
		if r := v.Key(key); !r.IsNull() {
			return r
		}
		v = v.Key("Parent")
	}
	return pdf.Value{}
}

// checkStream rejects stream parameters that would make the library allocate without bound.
func checkStream(s pdf.Value) error {
	check := func(parms pdf.Value) error {
		if c := parms.Key("Columns").Int64(); c < 0 || c > maxPredictorCols {
			return fmt.Errorf("extract: pdf: predictor columns %d out of range", c)
		}
		return nil
	}
	parms := s.Key("DecodeParms")
	if parms.Kind() == pdf.Array {
		for i := range min(parms.Len(), 16) {
			if err := check(parms.Index(i)); err != nil {
				return err
			}
		}
		return nil
	}
	return check(parms)
}

// budgetReader charges decompressed content to the document's budget and checks ctx.
type budgetReader struct {
	e *pdfExtractor
	r io.Reader
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if err := b.e.ctx.Err(); err != nil {
		return 0, err
	}
	if b.e.budget <= 0 {
		return 0, errPDFBudget
	}
	if int64(len(p)) > b.e.budget {
		p = p[:b.e.budget]
	}
	n, err := b.r.Read(p)
	b.e.budget -= int64(n)
	return n, err
}

// ctxReaderAt fails reads of the file once ctx is done, which the library turns into a
// panic that ends its current operation.
type ctxReaderAt struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c *ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(p, off)
}

// latin1 decodes each byte as the rune of the same value: the fallback for a font whose
// ToUnicode map is too large to read.
type latin1 struct{}

func (latin1) Decode(raw string) string {
	r := make([]rune, len(raw))
	for i := range len(raw) {
		r[i] = rune(raw[i])
	}
	return string(r)
}

// contentScanner interprets the text operators of a content stream.
//
// Word breaks: a TJ displacement beyond pdfSpaceThreshold is a space. A Td on the same line
// is a space only when it moves past the end of the text shown since the line start by more
// than a tenth of the font size, which needs the glyph widths of a simple font; without
// them (standard or composite fonts) it adds nothing, since generators that place pieces of
// a word with Td usually show spaces as glyphs.
type contentScanner struct {
	e         *pdfExtractor
	fonts     pdf.Value
	fontCache map[string]*fontInfo
	font      *fontInfo
	br        *bufio.Reader
	operands  []operand

	fontSize     float64
	charSpace    float64 // Tc
	wordSpace    float64 // Tw
	hScale       float64 // Tz / 100
	advance      float64 // text space moved since the start of the line
	advanceKnown bool
}

type opKind int

const (
	opNumber opKind = iota
	opString
	opName
	opArray
	opOther
)

type operand struct {
	kind  opKind
	num   float64
	str   string
	items []operand // opArray: strings and numbers
}

// fontInfo is what the scanner needs of a font: its encoding and, for a simple font,
// the glyph widths (in thousandths of the font size) of its one-byte codes.
type fontInfo struct {
	enc    pdf.TextEncoding
	first  int
	widths []float64 // nil when unknown
}

func (s *contentScanner) fontInfo(name string) *fontInfo {
	if fi, ok := s.fontCache[name]; ok {
		return fi
	}
	font := pdf.Font{V: s.fonts.Key(name)}
	fi := &fontInfo{enc: latin1{}}
	if tu := font.V.Key("ToUnicode"); tu.Kind() != pdf.Stream || s.e.cmapWithin(tu) {
		fi.enc = font.Encoder()
	}
	if font.V.Key("Subtype").Name() != "Type0" {
		if w := font.V.Key("Widths"); w.Kind() == pdf.Array && w.Len() <= 256 {
			fi.first = int(font.V.Key("FirstChar").Int64())
			fi.widths = make([]float64, w.Len())
			for i := range fi.widths {
				fi.widths[i] = w.Index(i).Float64()
			}
		}
	}
	s.fontCache[name] = fi
	return fi
}

// advanceBy adds the width of a shown string to the line's advance.
func (s *contentScanner) advanceBy(raw string) {
	if !s.advanceKnown {
		return
	}
	if s.font == nil || s.font.widths == nil {
		s.advanceKnown = false
		return
	}
	for i := range len(raw) {
		w := 0.0
		if j := int(raw[i]) - s.font.first; j >= 0 && j < len(s.font.widths) {
			w = s.font.widths[j]
		}
		adv := w/1000*s.fontSize + s.charSpace
		if raw[i] == ' ' {
			adv += s.wordSpace
		}
		s.advance += adv * s.hScale
	}
}

func (s *contentScanner) newLine() {
	s.advance, s.advanceKnown = 0, true
}

// cmapWithin reports whether a ToUnicode stream decompresses to at most maxCMapBytes.
// Both this check and the library's parse of the map are charged to the content budget,
// since fonts are looked up again on every page.
func (e *pdfExtractor) cmapWithin(v pdf.Value) bool {
	if checkStream(v) != nil || e.budget <= 0 {
		return false
	}
	n, err := io.Copy(io.Discard, io.LimitReader(v.Reader(), maxCMapBytes+1))
	e.budget -= 2 * n
	return err == nil && n <= maxCMapBytes
}

func (s *contentScanner) run(r io.Reader) {
	s.br = bufio.NewReaderSize(r, 32<<10)
	s.font = &fontInfo{enc: latin1{}}
	s.hScale = 1
	for !s.e.out.full {
		tok, ok := s.next()
		if !ok {
			return
		}
		if tok.kind != opOther {
			if len(s.operands) >= maxPDFOperands {
				s.operands = s.operands[:0]
			}
			s.operands = append(s.operands, tok)
			continue
		}
		s.operator(tok.str)
		s.operands = s.operands[:0]
	}
}

func (s *contentScanner) operator(op string) {
	out := s.e.out
	args := s.operands
	last := func(k opKind) (operand, bool) {
		if len(args) == 0 || args[len(args)-1].kind != k {
			return operand{}, false
		}
		return args[len(args)-1], true
	}
	num := func(fromEnd int) float64 {
		if len(args) < fromEnd || args[len(args)-fromEnd].kind != opNumber {
			return 0
		}
		return args[len(args)-fromEnd].num
	}
	switch op {
	case "BT", "T*":
		out.sep('\n')
		s.newLine()
	case "Td", "TD":
		tx, ty := num(2), num(1)
		switch {
		case ty != 0:
			out.sep('\n')
		case s.advanceKnown && tx-s.advance > 0.1*s.fontSize*s.hScale:
			out.sep(' ')
		}
		s.newLine()
	case "Tm":
		out.sep(' ')
		s.newLine()
	case "Tf":
		if len(args) >= 2 && args[len(args)-2].kind == opName {
			s.font = s.fontInfo(args[len(args)-2].str)
		}
		s.fontSize = num(1)
	case "Tc":
		s.charSpace = num(1)
	case "Tw":
		s.wordSpace = num(1)
	case "Tz":
		s.hScale = num(1) / 100
	case "Tj":
		if a, ok := last(opString); ok {
			s.show(a.str)
		}
	case "'", "\"":
		out.sep('\n')
		s.newLine()
		if op == "\"" {
			s.wordSpace, s.charSpace = num(3), num(2)
		}
		if a, ok := last(opString); ok {
			s.show(a.str)
		}
	case "TJ":
		if a, ok := last(opArray); ok {
			for _, it := range a.items {
				switch {
				case it.kind == opString:
					s.show(it.str)
				case it.kind == opNumber:
					if it.num < pdfSpaceThreshold {
						out.sep(' ')
					}
					s.advance -= it.num / 1000 * s.fontSize * s.hScale
				}
			}
		}
	case "ID":
		s.skipInlineImage()
	}
}

// show writes decoded text without control characters.
func (s *contentScanner) show(raw string) {
	text := strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s.font.enc.Decode(raw))
	s.e.out.WriteString(text)
	s.advanceBy(raw)
}

func isPDFSpace(c byte) bool {
	return c == 0 || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '
}

func isPDFDelim(c byte) bool {
	return strings.IndexByte("()<>[]{}/%", c) >= 0
}

// next returns the next operand or operator (kind opOther); ok is false at the end of input.
func (s *contentScanner) next() (operand, bool) {
	for {
		c, err := s.br.ReadByte()
		if err != nil {
			return operand{}, false
		}
		switch {
		case isPDFSpace(c):
		case c == '%':
			s.skipComment()
		case c == '(':
			return operand{kind: opString, str: s.literalString()}, true
		case c == '<':
			if nc, err := s.br.ReadByte(); err == nil && nc == '<' {
				s.skipDict()
				return operand{kind: opName}, true // a dictionary operand (of BDC, BI): not needed
			} else if err == nil {
				_ = s.br.UnreadByte()
			}
			return operand{kind: opString, str: s.hexString()}, true
		case c == '[':
			return s.array(), true
		case c == '/':
			return operand{kind: opName, str: s.word("")}, true
		case c == ']' || c == '>' || c == ')' || c == '{' || c == '}':
			// stray delimiters carry nothing
		default:
			w := s.word(string(c))
			if c == '+' || c == '-' || c == '.' || (c >= '0' && c <= '9') {
				f, _ := strconv.ParseFloat(w, 64)
				return operand{kind: opNumber, num: f}, true
			}
			return operand{kind: opOther, str: w}, true
		}
	}
}

func (s *contentScanner) skipComment() {
	for {
		c, err := s.br.ReadByte()
		if err != nil || c == '\n' || c == '\r' {
			return
		}
	}
}

// word reads the rest of a regular token (name, number or operator), decoding #xx in names.
func (s *contentScanner) word(prefix string) string {
	var b []byte
	b = append(b, prefix...)
	for {
		c, err := s.br.ReadByte()
		if err != nil {
			break
		}
		if isPDFSpace(c) || isPDFDelim(c) {
			_ = s.br.UnreadByte()
			break
		}
		if len(b) < maxPDFToken {
			b = append(b, c)
		}
	}
	if bytes.IndexByte(b, '#') >= 0 {
		var d []byte
		for i := 0; i < len(b); i++ {
			if b[i] == '#' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
				d = append(d, unhex(b[i+1])<<4|unhex(b[i+2]))
				i += 2
				continue
			}
			d = append(d, b[i])
		}
		b = d
	}
	return string(b)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// literalString reads a (string) after its opening parenthesis.
func (s *contentScanner) literalString() string {
	var b []byte
	put := func(c byte) {
		if len(b) < maxPDFString {
			b = append(b, c)
		}
	}
	depth := 1
	for {
		c, err := s.br.ReadByte()
		if err != nil {
			return string(b)
		}
		switch c {
		case '(':
			depth++
			put(c)
		case ')':
			if depth--; depth == 0 {
				return string(b)
			}
			put(c)
		case '\\':
			c, err = s.br.ReadByte()
			if err != nil {
				return string(b)
			}
			switch c {
			case 'n':
				put('\n')
			case 'r':
				put('\r')
			case 't':
				put('\t')
			case 'b':
				put('\b')
			case 'f':
				put('\f')
			case '\r':
				if nc, err := s.br.ReadByte(); err == nil && nc != '\n' {
					_ = s.br.UnreadByte()
				}
			case '\n':
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := c - '0'
				for range 2 {
					nc, err := s.br.ReadByte()
					if err != nil {
						break
					}
					if nc < '0' || nc > '7' {
						_ = s.br.UnreadByte()
						break
					}
					v = v<<3 | (nc - '0')
				}
				put(v)
			default:
				put(c)
			}
		default:
			put(c)
		}
	}
}

// hexString reads a <hex string> after its opening angle bracket.
func (s *contentScanner) hexString() string {
	var b []byte
	var hi byte
	half := false
	for {
		c, err := s.br.ReadByte()
		if err != nil || c == '>' {
			break
		}
		if !isHex(c) {
			continue
		}
		if !half {
			hi, half = unhex(c), true
			continue
		}
		if len(b) < maxPDFString {
			b = append(b, hi<<4|unhex(c))
		}
		half = false
	}
	if half && len(b) < maxPDFString {
		b = append(b, hi<<4)
	}
	return string(b)
}

// skipDict skips a << dictionary >> after its opening brackets, nested ones included.
func (s *contentScanner) skipDict() {
	depth := 1
	for depth > 0 {
		c, err := s.br.ReadByte()
		if err != nil {
			return
		}
		switch c {
		case '(':
			s.literalString()
		case '<':
			if nc, err := s.br.ReadByte(); err == nil && nc == '<' {
				depth++
			} else if err == nil {
				_ = s.br.UnreadByte()
				s.hexString()
			}
		case '>':
			if nc, err := s.br.ReadByte(); err == nil && nc == '>' {
				depth--
			} else if err == nil {
				_ = s.br.UnreadByte()
			}
		case '%':
			s.skipComment()
		}
	}
}

// array reads an [array] after its opening bracket, keeping its strings and numbers.
// Nested arrays are flattened.
func (s *contentScanner) array() operand {
	a := operand{kind: opArray}
	depth := 1
	for depth > 0 {
		c, err := s.br.ReadByte()
		if err != nil {
			break
		}
		switch {
		case c == ']':
			depth--
			continue
		case c == '[':
			if depth < maxNesting {
				depth++
			}
			continue
		case isPDFSpace(c):
			continue
		case c == '%':
			s.skipComment()
			continue
		}
		_ = s.br.UnreadByte()
		tok, ok := s.next()
		if !ok {
			break
		}
		if (tok.kind == opString || tok.kind == opNumber) && len(a.items) < maxPDFArray {
			a.items = append(a.items, tok)
		}
	}
	return a
}

// skipInlineImage skips the binary data of an inline image (BI ... ID data EI): after the
// single white-space byte that follows ID, up to "EI" between white space.
func (s *contentScanner) skipInlineImage() {
	_, _ = s.br.ReadByte()
	var p3, p2, p1 byte = ' ', ' ', ' ' // the last three bytes read
	for {
		c, err := s.br.ReadByte()
		if err != nil || (isPDFSpace(c) && p1 == 'I' && p2 == 'E' && isPDFSpace(p3)) {
			return
		}
		p3, p2, p1 = p2, p1, c
	}
}
