// Package embed turns texts into vectors for semantic search.
//
// Two Embedders are provided:
//
//   - Hashing, the built-in offline default. It needs no model and no network, and is fully
//     deterministic, but it is lexical, not semantic. Each text is tokenised into lower-cased runs
//     of Unicode letters and digits (common Latin accents folded: "café" = "cafe"); its features
//     are the words, the pairs of adjacent words, and the character trigrams of each word (words
//     of three runes or fewer, mostly function words, weigh less); each feature is hashed (FNV-1a
//     64) to a bucket and a sign, weighted by sublinear term frequency (1+ln tf), and the vector
//     is L2-normalised. Cosine similarity between two such vectors
//     therefore measures lexical overlap: shared words, shared word order, and shared word parts,
//     so "invoice" is near "invoices" and "invoicing", and a misspelling stays near its word. It
//     does NOT capture meaning: synonyms ("car"/"automobile"), paraphrases, translations and
//     related concepts ("invoice"/"payment") look unrelated unless they share letters;
//     unrelated words sharing trigrams ("station"/"nation") look somewhat related; irregular
//     forms ("mouse"/"mice") are not matched; and having no corpus statistics, it cannot tell
//     rare, telling words from common ones beyond the short-word damping. Scores are lower and
//     flatter than a neural model's: use them to rank, not as calibrated probabilities.
//   - OpenAI, a client for any OpenAI-compatible /v1/embeddings endpoint (OpenAI, Azure-style
//     proxies, Ollama, vLLM, LM Studio, text-embeddings-inference, ...), which gives real
//     semantic embeddings at the cost of a network call.
//
// Vectors from different Embedders, or from the same one with different Names, are not
// comparable: a change of Name means every stored vector must be recomputed.
package embed

import "context"

// Embedder turns texts into vectors of a fixed dimension.
type Embedder interface {
	// Embed returns one vector per text, in order, each of Dimensions() values.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Dimensions() int
	// Name identifies model and dimensions, e.g. "hashing-v1-384"; a change of Name means a re-index.
	Name() string
}
