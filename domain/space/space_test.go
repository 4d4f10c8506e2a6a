package space_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/space"
)

var (
	now   = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	owner = uuid.MustParse("00000000-0000-7000-8000-000000000001")
	other = uuid.MustParse("00000000-0000-7000-8000-000000000002")
	id    = uuid.MustParse("00000000-0000-7000-8000-0000000000aa")
)

func ptr[T any](v T) *T { return &v }

func given(events ...domain.Event) space.State {
	var s space.State
	for _, e := range events {
		s = space.Evolve(s, e)
	}
	return s
}

func created(vis string) space.Created {
	return space.Created{SpaceID: id, OwnerUserID: ptr(owner), SubjectID: ptr(owner), Name: "Research", Slug: "research", Visibility: vis, CreatedAt: now}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		given   []domain.Event
		command any
		want    []domain.Event
		code    domain.Code
	}{
		{"create", nil, space.Create{Actor: owner, SpaceID: id, Name: " Research ", Slug: "research", Visibility: "private"},
			[]domain.Event{created("private")}, ""},
		{"create twice", []domain.Event{created("private")}, space.Create{Actor: owner, SpaceID: id, Name: "R", Slug: "r", Visibility: "private"}, nil, domain.CodeConflict},
		{"create with a bad slug", nil, space.Create{Actor: owner, SpaceID: id, Name: "R", Slug: "-bad", Visibility: "private"}, nil, domain.CodeInvalid},
		{"create with an upper-case slug", nil, space.Create{Actor: owner, SpaceID: id, Name: "R", Slug: "Bad", Visibility: "private"}, nil, domain.CodeInvalid},
		{"create with a 65-char slug", nil, space.Create{Actor: owner, SpaceID: id, Name: "R", Slug: strings.Repeat("a", 65), Visibility: "private"}, nil, domain.CodeInvalid},
		{"create with a blank name", nil, space.Create{Actor: owner, SpaceID: id, Name: "  ", Slug: "r", Visibility: "private"}, nil, domain.CodeInvalid},
		{"create with a control character", nil, space.Create{Actor: owner, SpaceID: id, Name: "a\x00b", Slug: "r", Visibility: "private"}, nil, domain.CodeInvalid},
		{"create with a bad visibility", nil, space.Create{Actor: owner, SpaceID: id, Name: "R", Slug: "r", Visibility: "secret"}, nil, domain.CodeInvalid},
		{"rename and publish", []domain.Event{created("private")}, space.Update{Actor: owner, Name: ptr("New"), Visibility: ptr("public")},
			[]domain.Event{space.Renamed{SpaceID: id, SubjectID: ptr(owner), Name: "New", RenamedAt: now}, space.VisibilityChanged{SpaceID: id, Visibility: "public", ChangedAt: now}}, ""},
		{"change slug", []domain.Event{created("private")}, space.Update{Actor: owner, Slug: ptr("lab")},
			[]domain.Event{space.SlugChanged{SpaceID: id, OldSlug: "research", Slug: "lab", ChangedAt: now}}, ""},
		{"update with nothing new", []domain.Event{created("private")}, space.Update{Actor: owner, Name: ptr("Research")}, nil, ""},
		{"stale expected version", []domain.Event{created("private")}, space.Update{Actor: owner, ExpectedVersion: 2, Name: ptr("x")}, nil, domain.CodeVersionConflict},
		{"matching expected version", []domain.Event{created("private")}, space.Update{Actor: owner, ExpectedVersion: 1, Name: ptr("x")},
			[]domain.Event{space.Renamed{SpaceID: id, SubjectID: ptr(owner), Name: "x", RenamedAt: now}}, ""},
		{"stranger updates a private space", []domain.Event{created("private")}, space.Update{Actor: other, Name: ptr("x")}, nil, domain.CodeNotFound},
		{"stranger updates a public space", []domain.Event{created("public")}, space.Update{Actor: other, Name: ptr("x")}, nil, domain.CodeForbidden},
		{"update a missing space", nil, space.Update{Actor: owner, Name: ptr("x")}, nil, domain.CodeNotFound},
		{"delete", []domain.Event{created("private")}, space.Delete{Actor: owner},
			[]domain.Event{space.Deleted{SpaceID: id, Slug: "research", DeletedAt: now}}, ""},
		{"delete twice", []domain.Event{created("private"), space.Deleted{SpaceID: id, Slug: "research", DeletedAt: now}}, space.Delete{Actor: owner}, nil, domain.CodeNotFound},
		{"delete the personal space", []domain.Event{space.Created{SpaceID: id, OwnerUserID: ptr(owner), Personal: true, Name: "Personal", Slug: "personal", Visibility: "private", CreatedAt: now}},
			space.Delete{Actor: owner}, nil, domain.CodeConflict},
		{"erasure deletes the owner's personal space", []domain.Event{space.Created{SpaceID: id, OwnerUserID: ptr(owner), Personal: true, Name: "Personal", Slug: "personal", Visibility: "private", CreatedAt: now}},
			space.DeleteForErasure{OwnerID: owner}, []domain.Event{space.Deleted{SpaceID: id, Slug: "personal", DeletedAt: now}}, ""},
		{"erasure of someone else takes no space", []domain.Event{created("private")}, space.DeleteForErasure{OwnerID: other}, nil, domain.CodeNotFound},
		{"re-slug the personal space", []domain.Event{space.Created{SpaceID: id, OwnerUserID: ptr(owner), Personal: true, Name: "Personal", Slug: "personal", Visibility: "private", CreatedAt: now}},
			space.Update{Actor: owner, Slug: ptr("mine")}, nil, domain.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := space.Decide(given(tc.given...), tc.command, now)
			if code := domain.ErrorCode(err); code != tc.code {
				t.Fatalf("Decide error = %v (code %q), want code %q", err, code, tc.code)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestEvolve(t *testing.T) {
	later := now.Add(time.Hour)
	s := given(created("private"),
		space.Renamed{SpaceID: id, SubjectID: ptr(owner), Name: "New", RenamedAt: later},
		space.SlugChanged{SpaceID: id, OldSlug: "research", Slug: "lab", ChangedAt: later},
		space.VisibilityChanged{SpaceID: id, Visibility: "public", ChangedAt: later})
	if s.Name != "New" || s.Slug != "lab" || s.Visibility != "public" || s.Version != 4 || !s.UpdatedAt.Equal(later) || !s.CreatedAt.Equal(now) {
		t.Fatalf("state = %+v", s)
	}
	if !s.CanRead(other, "") || s.CanManage(other, "") || !s.CanManage(owner, "") {
		t.Fatal("a public space is readable by others and managed by its owner only")
	}
	if !s.CanWrite(owner, "") || s.CanWrite(other, "") {
		t.Fatal("the owner writes a personal space's content; others, even when it is public, do not")
	}
	ed, vw := uuid.New(), uuid.New()
	s = space.Evolve(s, space.MemberAdded{SpaceID: id, UserID: ed, Role: space.Editor, AddedAt: later})
	s = space.Evolve(s, space.MemberAdded{SpaceID: id, UserID: vw, Role: space.Viewer, AddedAt: later})
	if !s.CanWrite(ed, "") || s.CanWrite(vw, "") || !s.CanRead(vw, "") {
		t.Fatal("editors write, viewers read")
	}
	s = space.Evolve(s, space.Deleted{SpaceID: id, DeletedAt: later})
	if s.Exists() || s.CanRead(owner, "") || s.CanWrite(owner, "") {
		t.Fatal("a deleted space does not exist")
	}
}

func TestValidSlug(t *testing.T) {
	for slug, want := range map[string]bool{"a": true, "a-b": true, "abc123": true, "0": true, "-a": false, "a-": false,
		"A": false, "a_b": false, "": false, "a b": false, string(make([]byte, 64)): false} {
		if got := space.ValidSlug(slug); got != want {
			t.Errorf("ValidSlug(%q) = %v, want %v", slug, got, want)
		}
	}
}
