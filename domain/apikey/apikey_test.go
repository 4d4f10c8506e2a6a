package apikey_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/apikey"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	owner, other, id := uuid.New(), uuid.New(), uuid.New()
	create := apikey.Create{Actor: owner, KeyID: id, Name: " CI ", KeyHash: "abc", Prefix: "atlk_x"}
	evs, err := apikey.Decide(apikey.State{}, create, now)
	if err != nil {
		t.Fatal(err)
	}
	if e := evs[0].(apikey.Created); e.Name != "CI" || e.UserID != owner || e.KeyHash != "abc" || !e.CreatedAt.Equal(now) {
		t.Fatalf("created %+v", e)
	}
	s := apikey.Evolve(apikey.State{}, evs[0])
	for _, tc := range []struct {
		name  string
		state apikey.State
		cmd   any
		code  domain.Code
	}{
		{"create twice", s, create, domain.CodeConflict},
		{"blank name", apikey.State{}, apikey.Create{Actor: owner, KeyID: id, Name: "", KeyHash: "abc"}, domain.CodeInvalid},
		{"revoke another's key", s, apikey.Revoke{Actor: other}, domain.CodeNotFound},
		{"revoke a missing key", apikey.State{}, apikey.Revoke{Actor: owner}, domain.CodeNotFound},
		{"revoke", s, apikey.Revoke{Actor: owner}, ""},
	} {
		if _, err := apikey.Decide(tc.state, tc.cmd, now); domain.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want code %q", tc.name, err, tc.code)
		}
	}
	evs, _ = apikey.Decide(s, apikey.Revoke{Actor: owner}, now)
	s = apikey.Evolve(s, evs[0])
	if s.RevokedAt == nil || s.Version != 2 {
		t.Fatalf("after revoke %+v", s)
	}
	if _, err := apikey.Decide(s, apikey.Revoke{Actor: owner}, now); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("revoking twice: %v", err)
	}
}
