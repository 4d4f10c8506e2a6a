package user_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/user"
)

func TestDecideRegister(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	base := user.Register{UserID: uuid.New(), Email: "  Ada@Example.COM ", Name: "Ada", Password: "correct horse battery",
		PasswordHash: "$argon2id$...", PersonalSpaceID: uuid.New()}
	evs, err := user.Decide(user.State{}, base, now)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0].(user.Registered)
	if e.Email != "ada@example.com" || e.Name != "Ada" || e.PasswordHash != base.PasswordHash || !e.RegisteredAt.Equal(now) {
		t.Fatalf("event = %+v", e)
	}
	s := user.Evolve(user.State{}, e)
	if !s.Exists() || s.Email != "ada@example.com" || s.PersonalSpaceID != base.PersonalSpaceID || s.Version != 1 {
		t.Fatalf("state = %+v", s)
	}
	if _, err := user.Decide(s, base, now); domain.ErrorCode(err) != domain.CodeConflict {
		t.Fatalf("registering twice: %v", err)
	}

	bad := []struct {
		name  string
		edit  func(*user.Register)
		field string
	}{
		{"short password", func(r *user.Register) { r.Password = "elevenchars" }, "password"},
		{"missing email", func(r *user.Register) { r.Email = "" }, "email"},
		{"not an email", func(r *user.Register) { r.Email = "ada" }, "email"},
		{"display-name email", func(r *user.Register) { r.Email = "Ada <ada@example.com>" }, "email"},
		{"long email", func(r *user.Register) { r.Email = strings.Repeat("a", 250) + "@x.io" }, "email"},
		{"blank name", func(r *user.Register) { r.Name = " " }, "name"},
		{"control character in name", func(r *user.Register) { r.Name = "A\nda" }, "name"},
		{"long name", func(r *user.Register) { r.Name = strings.Repeat("n", 201) }, "name"},
	}
	for _, tc := range bad {
		r := base
		tc.edit(&r)
		_, err := user.Decide(user.State{}, r, now)
		var de *domain.Error
		if !errors.As(err, &de) || de.Code != domain.CodeInvalid || de.Details[tc.field] == "" {
			t.Errorf("%s: %v, want validation_failed naming %q", tc.name, err, tc.field)
		}
	}
}

func TestDecideErase(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	id := uuid.New()
	s := user.Evolve(user.State{}, user.Registered{UserID: id, Email: "ada@example.com", Name: "Ada", PasswordHash: "h",
		PersonalSpaceID: uuid.New(), RegisteredAt: now})
	inv1, inv2 := uuid.New(), uuid.New()
	ok := user.Erase{Actor: id, PasswordVerified: true, InvitationIDs: []uuid.UUID{inv1, inv2}}

	orgID := uuid.New()
	cases := []struct {
		name string
		s    user.State
		cmd  user.Erase
		want domain.Code
	}{
		{"someone else", s, user.Erase{Actor: uuid.New(), PasswordVerified: true}, domain.CodeNotFound},
		{"no such user", user.State{}, ok, domain.CodeNotFound},
		{"wrong password", s, user.Erase{Actor: id}, domain.CodeForbidden},
		{"sole owner", s, user.Erase{Actor: id, PasswordVerified: true, SoleOwned: map[uuid.UUID]string{orgID: "Acme"}}, domain.CodeConflict},
	}
	for _, tc := range cases {
		if _, err := user.Decide(tc.s, tc.cmd, now); domain.ErrorCode(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	var de *domain.Error
	_, err := user.Decide(s, cases[3].cmd, now)
	if !errors.As(err, &de) || de.Details[orgID.String()] != "Acme" || !strings.Contains(de.Message, "Acme") {
		t.Fatalf("sole owner error = %#v, want the organization named in message and details", err)
	}

	evs, err := user.Decide(s, ok, now)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0].(user.Erased)
	if e.UserID != id || len(e.InvitationIDs) != 2 || !e.ErasedAt.Equal(now) || len(e.Subjects()) != 3 || e.Subjects()[0] != id {
		t.Fatalf("event = %+v", e)
	}
	s = user.Evolve(s, e)
	if s.Exists() || !s.Erased || s.Email != domain.ErasedValue || s.Name != domain.ErasedValue || s.PasswordHash != "" || s.Version != 2 {
		t.Fatalf("state after erasure = %+v", s)
	}
	if _, err := user.Decide(s, ok, now); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("erasing twice: %v, want not_found", err)
	}
}
