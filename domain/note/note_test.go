package note_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
)

var (
	now      = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	writer   = note.Access{Read: true, Write: true}
	reader   = note.Access{Read: true}
	outsider = note.Access{}
)

func ptr[T any](v T) *T { return &v }

func existing() note.State {
	return note.Evolve(note.State{}, note.Created{NoteID: uuid.New(), SpaceID: uuid.New(), Title: "T", Body: "b", CreatedAt: now})
}

func TestDecide(t *testing.T) {
	id, sp := uuid.New(), uuid.New()
	tests := []struct {
		name  string
		state note.State
		cmd   any
		code  domain.Code
		field string
		n     int
	}{
		{"create", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: " Plan ", Body: "# Plan"}, "", "", 1},
		{"create with an empty body", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: "Plan"}, "", "", 1},
		{"create as a viewer", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: reader, Title: "Plan"}, domain.CodeForbidden, "", 0},
		{"create in a space one cannot read", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: outsider, Title: "Plan"}, domain.CodeNotFound, "", 0},
		{"blank title", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: "  "}, domain.CodeInvalid, "title", 0},
		{"long title", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: strings.Repeat("x", 201)}, domain.CodeInvalid, "title", 0},
		{"huge body", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: "x", Body: strings.Repeat("x", note.MaxBodyBytes+1)}, domain.CodeInvalid, "body", 0},
		{"invalid UTF-8", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: "x", Body: "\xff"}, domain.CodeInvalid, "body", 0},
		{"NUL in body", note.State{}, note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: "x", Body: "a\x00b"}, domain.CodeInvalid, "body", 0},
		{"create twice", existing(), note.Create{NoteID: id, SpaceID: sp, Access: writer, Title: "x"}, domain.CodeConflict, "", 0},
		{"edit", existing(), note.Edit{Access: writer, Body: ptr("new")}, "", "", 1},
		{"edit to the same text", existing(), note.Edit{Access: writer, Title: ptr("T"), Body: ptr("b")}, "", "", 0},
		{"edit with the current version", existing(), note.Edit{Access: writer, ExpectedVersion: 1, Title: ptr("U")}, "", "", 1},
		{"edit with a stale version", existing(), note.Edit{Access: writer, ExpectedVersion: 2, Title: ptr("U")}, domain.CodeVersionConflict, "", 0},
		{"edit as a viewer", existing(), note.Edit{Access: reader, Title: ptr("U")}, domain.CodeForbidden, "", 0},
		{"edit as an outsider", existing(), note.Edit{Access: outsider, Title: ptr("U")}, domain.CodeNotFound, "", 0},
		{"edit a missing note", note.State{}, note.Edit{Access: writer, Title: ptr("U")}, domain.CodeNotFound, "", 0},
		{"edit to a blank title", existing(), note.Edit{Access: writer, Title: ptr("")}, domain.CodeInvalid, "title", 0},
		{"delete", existing(), note.Delete{Access: writer}, "", "", 1},
		{"delete as a viewer", existing(), note.Delete{Access: reader}, domain.CodeForbidden, "", 0},
		{"delete twice", note.Evolve(existing(), note.Deleted{DeletedAt: now}), note.Delete{Access: writer}, domain.CodeNotFound, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := note.Decide(tt.state, tt.cmd, now)
			if got := domain.ErrorCode(err); got != tt.code {
				t.Fatalf("code %q (%v), want %q", got, err, tt.code)
			}
			if tt.field != "" {
				if e, ok := err.(*domain.Error); !ok || e.Details[tt.field] == "" {
					t.Fatalf("no detail for %s: %v", tt.field, err)
				}
			}
			if len(evs) != tt.n {
				t.Fatalf("%d events, want %d: %v", len(evs), tt.n, evs)
			}
		})
	}
}

func TestEvolve(t *testing.T) {
	s := existing()
	s = note.Evolve(s, note.Edited{NoteID: s.ID, Title: "U", Body: "v", EditedAt: now.Add(time.Minute)})
	if s.Title != "U" || s.Body != "v" || s.Version != 2 || !s.UpdatedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("after edit: %+v", s)
	}
	s = note.Evolve(s, note.Deleted{NoteID: s.ID, DeletedAt: now.Add(2 * time.Minute)})
	if s.Exists() || s.Version != 3 {
		t.Fatalf("after delete: %+v", s)
	}
}
