package chunk

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// check verifies the invariants every result must satisfy and returns the chunks.
func check(t *testing.T, text string, size, overlap int) []Chunk {
	t.Helper()
	chunks := Split(text, size, overlap)
	if size < 1 {
		size = 1
	}
	covered := make([]bool, len(text))
	for i, c := range chunks {
		if c.Index != i {
			t.Fatalf("chunk %d has Index %d", i, c.Index)
		}
		if c.Start < 0 || c.End > len(text) || c.Start >= c.End {
			t.Fatalf("chunk %d: bad range [%d,%d) of %d bytes", i, c.Start, c.End, len(text))
		}
		if text[c.Start:c.End] != c.Text {
			t.Fatalf("chunk %d: Text %q != input[%d:%d] %q", i, c.Text, c.Start, c.End, text[c.Start:c.End])
		}
		if utf8.ValidString(text) && !utf8.ValidString(c.Text) {
			t.Fatalf("chunk %d splits a rune: %q", i, c.Text)
		}
		if n := utf8.RuneCountInString(c.Text); n > size {
			t.Fatalf("chunk %d has %d runes, more than size %d", i, n, size)
		}
		if c.Text != strings.TrimSpace(c.Text) {
			t.Fatalf("chunk %d not trimmed: %q", i, c.Text)
		}
		if i > 0 && c.Start <= chunks[i-1].Start {
			t.Fatalf("chunk %d does not advance: start %d after %d", i, c.Start, chunks[i-1].Start)
		}
		for j := c.Start; j < c.End; j++ {
			covered[j] = true
		}
	}
	for i, r := range text {
		if !unicode.IsSpace(r) && !covered[i] {
			t.Fatalf("rune %q at byte %d is in no chunk", r, i)
		}
	}
	return chunks
}

func TestEmptyAndBlank(t *testing.T) {
	for _, s := range []string{"", " ", "\n\n\t  \r\n", "\u00a0\u3000"} {
		if got := Split(s, 100, 10); len(got) != 0 {
			t.Errorf("Split(%q) = %v, want no chunks", s, got)
		}
	}
}

func TestShortTextOneChunk(t *testing.T) {
	text := "  \n Hello, world. A short note.\n\n"
	got := check(t, text, 100, 20)
	want := []Chunk{{Index: 0, Text: "Hello, world. A short note.", Start: 4, End: 31}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Exactly size runes is still one chunk.
	if got := check(t, strings.Repeat("é", 50), 50, 10); len(got) != 1 {
		t.Fatalf("50 runes at size 50: %d chunks", len(got))
	}
}

func TestPrefersParagraphBoundary(t *testing.T) {
	p1 := "First paragraph. It has two sentences and runs on for a while here."
	p2 := "Second paragraph. It also has some sentences. And more words follow it."
	text := p1 + "\n\n" + p2
	chunks := check(t, text, 100, 0)
	if chunks[0].Text != p1 {
		t.Fatalf("first chunk %q, want the first paragraph", chunks[0].Text)
	}
	if chunks[1].Text != p2 {
		t.Fatalf("second chunk %q, want the second paragraph", chunks[1].Text)
	}
}

func TestPrefersSentenceBoundary(t *testing.T) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	for _, c := range check(t, text, 100, 0) {
		if !strings.HasSuffix(c.Text, ".") {
			t.Fatalf("chunk does not end at a sentence: %q", c.Text)
		}
	}
	// A sentence end beats a later word boundary even with closing quotes.
	text = `He said "stop here." and then a long tail of words without any full stop at all anywhere`
	if c := check(t, text, 36, 0)[0]; c.Text != `He said "stop here."` {
		t.Fatalf("first chunk %q", c.Text)
	}
}

func TestCutsAtWordBoundary(t *testing.T) {
	words := strings.Fields(strings.Repeat("alpha beta gamma delta epsilon zeta eta theta iota kappa ", 30))
	text := strings.Join(words, " ")
	set := map[string]bool{}
	for _, w := range words {
		set[w] = true
	}
	for _, c := range check(t, text, 37, 0) {
		for _, w := range strings.Fields(c.Text) {
			if !set[w] {
				t.Fatalf("chunk %q contains a broken word %q", c.Text, w)
			}
		}
	}
}

func TestOverlapPresent(t *testing.T) {
	text := strings.Repeat("Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod. ", 40)
	chunks := check(t, text, 200, 40)
	if len(chunks) < 3 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	for i := 1; i < len(chunks); i++ {
		prev, c := chunks[i-1], chunks[i]
		if c.Start >= prev.End {
			t.Fatalf("chunks %d and %d do not overlap: [%d,%d) [%d,%d)", i-1, i, prev.Start, prev.End, c.Start, c.End)
		}
		shared := utf8.RuneCountInString(text[c.Start:prev.End])
		if shared < 20 || shared > 80 {
			t.Fatalf("chunks %d and %d share %d runes, want about 40", i-1, i, shared)
		}
		// The shared part starts at a word start.
		if c.Start > 0 && !unicode.IsSpace(rune(text[c.Start-1])) {
			t.Fatalf("chunk %d starts mid-word: %q", i, c.Text[:20])
		}
	}
	// No overlap asked, none given.
	for i, c := range check(t, text, 200, 0)[1:] {
		if prevEnd := Split(text, 200, 0)[i].End; c.Start < prevEnd {
			t.Fatalf("overlap 0 but chunk %d starts at %d before %d", i+1, c.Start, prevEnd)
		}
	}
}

func TestDeterministic(t *testing.T) {
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "Sentence number %d talks about things. ", i)
		if i%7 == 0 {
			b.WriteString("\n\n")
		}
	}
	text := b.String()
	first := check(t, text, 300, 50)
	for range 5 {
		if again := Split(text, 300, 50); !reflect.DeepEqual(first, again) {
			t.Fatal("Split is not deterministic")
		}
	}
}

func TestUnicode(t *testing.T) {
	text := strings.Repeat("Größenordnung überprüfen — ça va? 日本語のテキストです。絵文字も🙂👍🏽含む。\n", 30)
	for _, size := range []int{1, 2, 7, 50, 128} {
		chunks := check(t, text, size, size/4)
		if len(chunks) < 2 {
			t.Fatalf("size %d: %d chunks", size, len(chunks))
		}
	}
	// Japanese without spaces is cut after 。 rather than mid-sentence.
	ja := strings.Repeat("これは日本語の文です。", 20) // 11 runes per sentence
	for _, c := range check(t, ja, 40, 0) {
		if !strings.HasSuffix(c.Text, "。") {
			t.Fatalf("Japanese chunk not cut at 。: %q", c.Text)
		}
	}
}

func TestHugeWordWithoutSpaces(t *testing.T) {
	for _, unit := range []string{"x", "é", "🙂"} {
		text := "start " + strings.Repeat(unit, 1000) + " end"
		chunks := check(t, text, 100, 10)
		if len(chunks) < 10 {
			t.Fatalf("%q: %d chunks", unit, len(chunks))
		}
		for i := 1; i < len(chunks); i++ {
			if chunks[i].Start >= chunks[i-1].End {
				t.Fatalf("%q: chunks %d and %d do not overlap", unit, i-1, i)
			}
		}
	}
}

func TestInvalidUTF8PassesThrough(t *testing.T) {
	text := "abc \xff\xfe def " + strings.Repeat("g\xc3", 100)
	check(t, text, 16, 4)
}

func TestSizeAndOverlapAreClamped(t *testing.T) {
	text := strings.Repeat("one two three four five six seven. ", 20)
	cases := []struct{ size, overlap, wantSize, wantOverlap int }{
		{0, 0, 1, 0},
		{-5, 3, 1, 0},
		{10, -1, 10, 0},
		{10, 10, 10, 9},
		{10, 1000, 10, 9},
	}
	for _, c := range cases {
		got := check(t, text, c.size, c.overlap)
		want := Split(text, c.wantSize, c.wantOverlap)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Split(size=%d, overlap=%d) differs from Split(size=%d, overlap=%d)", c.size, c.overlap, c.wantSize, c.wantOverlap)
		}
	}
	// size 1: every non-space rune on its own.
	if got := check(t, "ab c", 1, 0); len(got) != 3 {
		t.Fatalf("size 1: %+v", got)
	}
}
