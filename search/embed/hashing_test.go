package embed

import (
	"context"
	"math"
	"sync"
	"testing"
)

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func embedAll(t *testing.T, e Embedder, texts ...string) [][]float32 {
	t.Helper()
	vecs, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != len(texts) {
		t.Fatalf("%d vectors for %d texts", len(vecs), len(texts))
	}
	return vecs
}

func TestHashingNameAndDimensions(t *testing.T) {
	for _, d := range []int{1, 7, 384, 1024} {
		h := NewHashing(d)
		if h.Dimensions() != d {
			t.Errorf("Dimensions() = %d, want %d", h.Dimensions(), d)
		}
		for _, v := range embedAll(t, h, "some text", "", "other words here") {
			if len(v) != d {
				t.Errorf("dims %d: vector of length %d", d, len(v))
			}
		}
	}
	if got := NewHashing(384).Name(); got != "hashing-v1-384" {
		t.Errorf("Name() = %q", got)
	}
	if h := NewHashing(0); h.Dimensions() != DefaultHashingDimensions || h.Name() != "hashing-v1-384" {
		t.Errorf("NewHashing(0): %d %q", h.Dimensions(), h.Name())
	}
}

func TestHashingSameTextSameVectorAndUnitNorm(t *testing.T) {
	h := NewHashing(384)
	texts := []string{"The quarterly report is due on Friday.", "a", "日本語のテキスト", "x1 y2 z3 x1 x1"}
	a, b := embedAll(t, h, texts...), embedAll(t, NewHashing(384), texts...)
	for i := range texts {
		if cosine(a[i], b[i]) < 0.999999 {
			t.Errorf("%q: two embeddings differ", texts[i])
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				t.Fatalf("%q: component %d differs", texts[i], j)
			}
		}
		if n := norm(a[i]); math.Abs(n-1) > 1e-5 {
			t.Errorf("%q: norm %v, want 1", texts[i], n)
		}
	}
}

func TestHashingEmptyTextIsZeroVector(t *testing.T) {
	for _, s := range []string{"", "   ", "!!! --- ???", "\n\t"} {
		v := embedAll(t, NewHashing(64), s)[0]
		if norm(v) != 0 {
			t.Errorf("%q: norm %v, want the zero vector", s, norm(v))
		}
	}
}

func TestHashingSimilarCloserThanUnrelated(t *testing.T) {
	v := embedAll(t, NewHashing(384),
		"The invoice for March was paid late by the customer.",
		"The customer paid the March invoice late.",
		"Kubernetes cluster autoscaling configuration for GPU nodes.",
	)
	similar, unrelated := cosine(v[0], v[1]), cosine(v[0], v[2])
	if similar <= unrelated+0.2 {
		t.Errorf("similar %.3f should be well above unrelated %.3f", similar, unrelated)
	}
}

func TestHashingPluralSingularCloserThanUnrelated(t *testing.T) {
	h := NewHashing(384)
	for _, c := range [][3]string{
		{"invoice", "invoices", "kangaroo"},
		{"document", "documents", "weather"},
		{"cat", "cats", "dog"},
		{"city", "cities", "laptop"},
		{"search the reports", "searching a report", "bake the bread"},
	} {
		v := embedAll(t, h, c[0], c[1], c[2])
		near, far := cosine(v[0], v[1]), cosine(v[0], v[2])
		if near <= far+0.1 {
			t.Errorf("%q~%q %.3f should be well above %q~%q %.3f", c[0], c[1], near, c[0], c[2], far)
		}
	}
}

func TestHashingNormalisation(t *testing.T) {
	h := NewHashing(256)
	for _, c := range [][2]string{
		{"Café Crème", "cafe creme"},
		{"cafe\u0301", "café"}, // decomposed and precomposed
		{"STRASSE", "Straße"},
		{"hello, world!", "Hello World"},
	} {
		v := embedAll(t, h, c[0], c[1])
		if s := cosine(v[0], v[1]); s < 0.999999 {
			t.Errorf("%q vs %q: cosine %.6f, want identical", c[0], c[1], s)
		}
	}
}

// TestHashingGolden pins the output, so that any change to the algorithm (which invalidates stored
// vectors) is noticed and comes with a new version in Name. The tolerance allows for last-bit
// differences of math.Log between architectures.
func TestHashingGolden(t *testing.T) {
	got := embedAll(t, NewHashing(16), "Atlas stores files, folders and their versions. Überprüfung 2024!")[0]
	want := []float32{0.185338, 0.084244, -0.168489, 0.063183, 0.063183, 0.294855, -0.605982, -0.126367,
		0.063183, 0.294855, 0.000000, 0.105305, -0.168489, -0.084244, -0.500677, 0.252733}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 2e-6 {
			t.Fatalf("hashing-v1 output changed at %d: got %v, want %v; if intended, bump the version in Name", i, got, want)
		}
	}
}

func TestHashingContextAndConcurrency(t *testing.T) {
	h := NewHashing(128)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Embed(ctx, []string{"x"}); err == nil {
		t.Fatal("cancelled context: no error")
	}
	want := embedAll(t, h, "concurrent text")[0]
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, err := h.Embed(context.Background(), []string{"concurrent text"})
			if err != nil || cosine(got[0], want) < 0.999999 {
				t.Errorf("concurrent embed differs: %v", err)
			}
		})
	}
	wg.Wait()
}
