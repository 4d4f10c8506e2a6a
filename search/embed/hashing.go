package embed

import (
	"context"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// DefaultHashingDimensions is the dimension NewHashing uses when given a non-positive one.
const DefaultHashingDimensions = 384

// Feature weights, applied on top of the sublinear term frequency. Words count most; a word's
// trigrams are many, so each weighs less; bigrams reward shared word order. Without corpus
// statistics (IDF) there is no other way to tell function words from content words, so words of at
// most shortWord runes ("the", "of", "und", "le", but also "cat", "tax") have their word and
// trigram features damped by shortWordFactor; this keeps "the" from making unrelated sentences
// look alike.
const (
	unigramWeight   = 1.0
	bigramWeight    = 0.7
	trigramWeight   = 0.4
	shortWord       = 3
	shortWordFactor = 0.3
)

// Hashing is the offline feature-hashing Embedder; see the package documentation for what it
// does and does not capture. It is safe for concurrent use.
//
// The algorithm is versioned by Name ("hashing-v1-<dims>"): any change to tokenisation, features,
// weights or hashing must bump the version, because it invalidates stored vectors.
type Hashing struct {
	dims int
}

var _ Embedder = (*Hashing)(nil)

// NewHashing returns a Hashing embedder producing dims-dimensional vectors; dims <= 0 means
// DefaultHashingDimensions.
func NewHashing(dims int) *Hashing {
	if dims <= 0 {
		dims = DefaultHashingDimensions
	}
	return &Hashing{dims: dims}
}

// Dimensions returns the vector length.
func (h *Hashing) Dimensions() int { return h.dims }

// Name returns "hashing-v1-<dims>".
func (h *Hashing) Name() string { return "hashing-v1-" + strconv.Itoa(h.dims) }

// Embed returns one L2-normalised vector per text; a text with no letters or digits gets the zero
// vector. It fails only if ctx is done.
func (h *Hashing) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = h.embed(t)
	}
	return out, nil
}

func (h *Hashing) embed(text string) []float32 {
	// Count features, remembering first-seen order so the float sums are always done in the same
	// order (map iteration order is random, and float addition is not associative).
	counts := map[string]int{}
	var order []string
	weights := map[string]float64{}
	add := func(f string, w float64) {
		if counts[f] == 0 {
			order = append(order, f)
		}
		counts[f]++
		weights[f] = max(weights[f], w) // a trigram of both a short and a long word weighs as the long one's
	}

	prev := ""
	for _, tok := range tokens(text) {
		r := []rune("^" + tok + "$")
		f := 1.0
		if len(r)-2 <= shortWord {
			f = shortWordFactor
		}
		add("w\x00"+tok, unigramWeight*f)
		for i := 0; i+3 <= len(r); i++ {
			add("c\x00"+string(r[i:i+3]), trigramWeight*f)
		}
		if prev != "" {
			add("b\x00"+prev+"\x00"+tok, bigramWeight)
		}
		prev = tok
	}

	acc := make([]float64, h.dims)
	for _, f := range order {
		v := weights[f] * (1 + math.Log(float64(counts[f])))
		sum := fnv1a64(f)
		bucket := (sum &^ (1 << 63)) % uint64(h.dims)
		if sum>>63 == 1 {
			v = -v
		}
		acc[bucket] += v
	}
	var norm float64
	for _, v := range acc {
		norm += v * v
	}
	vec := make([]float32, h.dims)
	if norm == 0 {
		return vec
	}
	norm = math.Sqrt(norm)
	for i, v := range acc {
		vec[i] = float32(v / norm)
	}
	return vec
}

func fnv1a64(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// tokens splits text into lower-cased runs of Unicode letters and digits, with common Latin
// accents folded away. Combining marks (as in decomposed "e\u0301") are dropped, so decomposed
// and precomposed accented text give the same tokens where the fold table covers the letter.
// Go's standard library has no Unicode normalisation, so folding of precomposed letters is a
// fixed table covering Latin-1 Supplement and Latin Extended-A; other scripts are kept as they are.
func tokens(text string) []string {
	var toks []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			toks = append(toks, b.String())
			b.Reset()
		}
	}
	for _, r := range text {
		switch {
		case unicode.Is(unicode.Mn, r):
			// Combining mark: part of the current word, but dropped.
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			r = unicode.ToLower(r)
			if f, ok := fold[r]; ok {
				b.WriteString(f)
			} else {
				b.WriteRune(r)
			}
		default:
			flush()
		}
	}
	flush()
	return toks
}

// fold maps lower-case accented Latin letters to their base letters.
var fold = func() map[rune]string {
	m := map[rune]string{'ß': "ss", 'æ': "ae", 'œ': "oe", 'ø': "o", 'ł': "l", 'đ': "d", 'ð': "d", 'þ': "th", 'ı': "i", 'ŀ': "l", 'ĸ': "k", 'ŉ': "n", 'ſ': "s", 'ĳ': "ij"}
	for base, accented := range map[string]string{
		"a": "àáâãäåāăą",
		"c": "çćĉċč",
		"d": "ď",
		"e": "èéêëēĕėęě",
		"g": "ĝğġģ",
		"h": "ĥħ",
		"i": "ìíîïĩīĭį",
		"j": "ĵ",
		"k": "ķ",
		"l": "ĺļľ",
		"n": "ñńņňŋ",
		"o": "òóôõöōŏő",
		"r": "ŕŗř",
		"s": "śŝşš",
		"t": "ţťŧ",
		"u": "ùúûüũūŭůűų",
		"w": "ŵ",
		"y": "ýÿŷ",
		"z": "źżž",
	} {
		for _, r := range accented {
			m[r] = base
		}
	}
	return m
}()
