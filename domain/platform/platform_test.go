package platform

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

func TestGrantAndRevoke(t *testing.T) {
	now := time.Now()
	u := uuid.New()
	var s State
	evs, err := Decide(s, Grant{User: u, Role: Auditor}, now)
	if err != nil || len(evs) != 1 {
		t.Fatal(evs, err)
	}
	s = Evolve(s, evs[0])
	if !s.Has(u, Auditor) || s.Has(u, Admin) || s.Version != 1 {
		t.Fatalf("%+v", s)
	}
	if _, err := Decide(s, Grant{User: u, Role: Auditor}, now); domain.ErrorCode(err) != domain.CodeConflict {
		t.Fatalf("second grant: %v", err)
	}
	if _, err := Decide(s, Grant{User: u, Role: "root"}, now); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Fatalf("unknown role: %v", err)
	}
	if _, err := Decide(s, Revoke{User: u, Role: Admin}, now); domain.ErrorCode(err) != domain.CodeConflict {
		t.Fatalf("revoke a role not held: %v", err)
	}
	before := s
	evs, err = Decide(s, Revoke{User: u, Role: Auditor}, now)
	if err != nil {
		t.Fatal(err)
	}
	s = Evolve(s, evs[0])
	if s.Has(u, Auditor) || len(s.Holders) != 0 || s.Version != 2 {
		t.Fatalf("%+v", s)
	}
	if !before.Has(u, Auditor) {
		t.Fatal("Evolve changed the state it was given")
	}
}
