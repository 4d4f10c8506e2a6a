package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/projections"
)

// SummarizeKind is the name of the summarize kind.
const SummarizeKind = "summarize"

// Model is the language model the summarize kind asks. cmd/atlas adapts the configured
// chat-completions client to it.
type Model interface {
	// Name is the model's name, recorded in the result.
	Name() string
	// Stream sends a system and a user message and calls onText with each piece of the reply as it
	// arrives; it returns the whole reply. A failure that retrying cannot fix is wrapped with
	// Permanent.
	Stream(ctx context.Context, system, user string, onText func(string) error) (string, error)
}

// maxSummarySource bounds the text sent to the model; longer text is cut and the cut noted.
const maxSummarySource = 200 << 10

// SummarizeResult is the result of a summarize task.
type SummarizeResult struct {
	Summary string    `json:"summary"`
	Model   string    `json:"model"`
	Source  string    `json:"source"` // "note" or "file"
	ID      uuid.UUID `json:"id"`
	Cut     bool      `json:"cut,omitempty"` // only the first part of the text was summarised
}

// Summarize summarises a note or a text file of the task's space with the configured model, read as
// the task's creator. The reply streams into the task's output as it arrives.
func Summarize(d Deps) *Kind {
	return &Kind{
		Name:        SummarizeKind,
		Description: "a summary of a note or a text file by the configured model",
		Schema: `{
			"type": "object",
			"additionalProperties": false,
			"properties": {
				"note_id":   {"type": "string", "format": "uuid"},
				"file_id":   {"type": "string", "format": "uuid"},
				"max_words": {"type": "integer", "minimum": 10, "maximum": 2000}
			},
			"oneOf": [{"required": ["note_id"]}, {"required": ["file_id"]}]
		}`,
		MaxAttempts: 3,
		Timeout:     10 * time.Minute,
		Available: func() error {
			if d.Model == nil {
				return errors.New("no model is configured (set LLM_URL and LLM_MODEL)")
			}
			return nil
		},
		Run: func(ctx context.Context, t *Run) (json.RawMessage, error) {
			if d.Model == nil {
				return nil, Permanent(errors.New("no model is configured (set LLM_URL and LLM_MODEL)"))
			}
			var in struct {
				NoteID   *uuid.UUID `json:"note_id"`
				FileID   *uuid.UUID `json:"file_id"`
				MaxWords int        `json:"max_words"`
			}
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, Permanent(err)
			}
			if in.MaxWords == 0 {
				in.MaxWords = 200
			}
			if err := readableSpace(ctx, d.Commands, t); err != nil {
				return nil, err
			}
			res := SummarizeResult{Model: d.Model.Name()}
			var title, text string
			var err error
			if in.NoteID != nil {
				res.Source, res.ID = "note", *in.NoteID
				title, text, err = noteText(ctx, d, t, *in.NoteID)
			} else {
				res.Source, res.ID = "file", *in.FileID
				title, text, err = fileText(ctx, d, t, *in.FileID)
			}
			if err != nil {
				return nil, err
			}
			if len(text) > maxSummarySource {
				text, res.Cut = truncateUTF8(text, maxSummarySource), true
				t.Printf("[only the first %d KiB of the text are summarised]\n", maxSummarySource>>10)
			}
			system := fmt.Sprintf("You summarise documents. Answer with the summary only, in at most %d words, "+
				"in the language of the document.", in.MaxWords)
			user := "Title: " + title + "\n\n" + text
			summary, err := d.Model.Stream(ctx, system, user, func(s string) error { t.Print(s); return nil })
			if err != nil {
				return nil, err
			}
			res.Summary = strings.TrimSpace(summary)
			if res.Summary == "" {
				return nil, errors.New("the model answered with an empty summary")
			}
			return json.Marshal(res)
		},
	}
}

func noteText(ctx context.Context, d Deps, t *Run, id uuid.UUID) (string, string, error) {
	n, err := d.Queries.Note(ctx, t.Creator, id)
	if domain.ErrorCode(err) == domain.CodeNotFound || (err == nil && n.SpaceID != t.SpaceID) {
		return "", "", Permanent(fmt.Errorf("note %s is not in this space or not readable by the task's creator", id))
	}
	if err != nil {
		return "", "", err
	}
	body := ""
	if n.Body != nil {
		body = *n.Body
	}
	return n.Title, body, nil
}

// textTypes are the content types, besides text/*, summarised as text.
var textTypes = map[string]bool{"application/json": true, "application/xml": true, "application/x-yaml": true,
	"application/yaml": true, "application/javascript": true, "application/x-ndjson": true}

func fileText(ctx context.Context, d Deps, t *Run, id uuid.UUID) (string, string, error) {
	f, err := d.Queries.File(ctx, t.Creator, id)
	if err == nil && f.SpaceID != t.SpaceID {
		err = domain.Errorf(domain.CodeNotFound, "file not found")
	}
	var v projections.FileVersionView
	if err == nil {
		_, v, err = d.Queries.FileContent(ctx, t.Creator, id, 0)
	}
	if domain.ErrorCode(err) == domain.CodeNotFound {
		return "", "", Permanent(fmt.Errorf("file %s is not in this space or not readable by the task's creator", id))
	}
	if err != nil {
		return "", "", err
	}
	mt, _, _ := mime.ParseMediaType(v.ContentType)
	if !strings.HasPrefix(mt, "text/") && !textTypes[mt] {
		return "", "", Permanent(fmt.Errorf("file %s is %s, not text; only text files can be summarised", f.Name, v.ContentType))
	}
	r, err := d.Bucket.NewReader(ctx, v.BlobKey, nil)
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", f.Name, err)
	}
	defer r.Close()
	raw, err := io.ReadAll(io.LimitReader(r, maxSummarySource+4))
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", f.Name, err)
	}
	text := strings.ToValidUTF8(string(raw), "\uFFFD")
	return f.Name, text, nil
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
