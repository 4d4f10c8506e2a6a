// Package chunk cuts a document's text into overlapping pieces small enough to embed.
//
// Sizes are counted in runes (Unicode code points), never bytes, and a cut never falls inside a
// rune. Split prefers to cut where the text itself has a break: at a paragraph boundary (a blank
// line) first, then at a sentence boundary (., !, ? or … followed by space, a line break, or CJK
// 。！？), then between words; only a "word" longer than the chunk size (a URL, a base64 blob, CJK
// text without spaces) is cut mid-word. Chunks are trimmed of surrounding white space, and the
// result is a pure function of its arguments.
package chunk

import "unicode"

// Chunk is one piece of a document's text.
type Chunk struct {
	Index int    // position in the returned slice, from 0
	Text  string // the chunk's text; always equal to input[Start:End]
	Start int    // byte offset of the first byte of Text in the input
	End   int    // byte offset just past the last byte of Text in the input
}

// Boundary classes, weakest to strongest.
const (
	none = iota
	word
	sentence
	paragraph
)

// Split cuts text into chunks of at most size runes (about size: a chunk is cut at the strongest
// boundary found in the second half of its window), with about overlap runes shared between
// neighbours. The start of the shared part is moved back to a word start when one is near, so the
// actual overlap can be up to twice overlap runes, and shorter only where a single huge word forces it.
//
// It prefers to cut at paragraph, then sentence, then word boundaries; it never splits a rune.
// An empty or blank text gives no chunks; a text of at most size runes gives one chunk.
// Deterministic.
//
// Invalid arguments are clamped rather than rejected: size < 1 is treated as 1, overlap < 0 as 0,
// and overlap >= size as size-1 (so every chunk still advances by at least one rune). Invalid
// UTF-8 bytes count as one rune each and are passed through unchanged.
func Split(text string, size, overlap int) []Chunk {
	if size < 1 {
		size = 1
	}
	if overlap < 0 {
		overlap = 0
	}
	if overlap >= size {
		overlap = size - 1
	}

	// runes[i] starts at byte offs[i]; offs[n] == len(text).
	runes := make([]rune, 0, len(text))
	offs := make([]int, 0, len(text)+1)
	for i, r := range text {
		runes = append(runes, r)
		offs = append(offs, i)
	}
	n := len(runes)
	offs = append(offs, len(text))

	start := skipSpace(runes, 0)
	if start == n {
		return nil
	}

	var chunks []Chunk
	emit := func(s, e int) {
		for e > s && unicode.IsSpace(runes[e-1]) {
			e--
		}
		if e > s {
			chunks = append(chunks, Chunk{Index: len(chunks), Text: text[offs[s]:offs[e]], Start: offs[s], End: offs[e]})
		}
	}

	// A short text is one chunk; no need to classify boundaries.
	if n-start <= size {
		emit(start, n)
		return chunks
	}
	cls := classify(runes)

	for start < n {
		if n-start <= size {
			emit(start, n)
			break
		}
		limit := start + size
		lo := start + (size+1)/2
		cut, best := limit, uint8(none)
		for i := limit; i >= lo && i > start; i-- {
			if cls[i] > best {
				cut, best = i, cls[i]
				if best == paragraph {
					break
				}
			}
		}
		emit(start, cut)

		next := cut - overlap
		if next <= start {
			next = start + 1
		}
		if cls[next] == none {
			// Mid-word: move back to the start of that word when it is near, so the overlap does not
			// begin with a word fragment.
			floor := max(start+1, next-overlap)
			for j := next - 1; j >= floor; j-- {
				if cls[j] != none {
					next = j
					break
				}
			}
		}
		start = skipSpace(runes, next)
	}
	return chunks
}

func skipSpace(runes []rune, i int) int {
	for i < len(runes) && unicode.IsSpace(runes[i]) {
		i++
	}
	return i
}

// classify returns, for every cut position 0..len(runes), the strongest boundary class a cut there
// would respect. Every position inside or at either end of a run of white space is a boundary; the
// run's class is paragraph if it holds two or more line breaks, sentence if it holds one or follows
// sentence-ending punctuation, and word otherwise.
func classify(runes []rune) []uint8 {
	n := len(runes)
	cls := make([]uint8, n+1)
	for i := 1; i < n; i++ {
		if isCJKStop(runes[i-1]) && !unicode.IsSpace(runes[i]) {
			cls[i] = sentence
		}
	}
	for a := 0; a < n; {
		if !unicode.IsSpace(runes[a]) {
			a++
			continue
		}
		b, breaks := a, 0
		for b < n && unicode.IsSpace(runes[b]) {
			switch runes[b] {
			case '\n':
				breaks++
			case '\u2029': // paragraph separator
				breaks += 2
			}
			b++
		}
		c := uint8(word)
		switch {
		case breaks >= 2:
			c = paragraph
		case breaks == 1 || endsSentence(runes[:a]):
			c = sentence
		}
		for i := a; i <= b; i++ {
			cls[i] = max(cls[i], c)
		}
		a = b
	}
	cls[0], cls[n] = paragraph, paragraph
	return cls
}

// endsSentence reports whether text ends with sentence-ending punctuation, possibly followed by
// closing quotes or brackets.
func endsSentence(text []rune) bool {
	i := len(text) - 1
	for i >= 0 && isCloser(text[i]) {
		i--
	}
	if i < 0 {
		return false
	}
	switch text[i] {
	case '.', '!', '?', '…':
		return true
	}
	return isCJKStop(text[i])
}

func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '}', '»', '”', '’', '」', '』':
		return true
	}
	return false
}

func isCJKStop(r rune) bool {
	switch r {
	case '。', '！', '？', '．':
		return true
	}
	return false
}
