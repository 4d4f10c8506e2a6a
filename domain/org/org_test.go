package org_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/org"
)

var (
	now              = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	id               = uuid.New()
	owner, admin     = uuid.New(), uuid.New()
	member, outsider = uuid.New(), uuid.New()
	invID            = uuid.New()
)

func fold(evs ...domain.Event) org.State {
	var s org.State
	for _, e := range evs {
		s = org.Evolve(s, e)
	}
	return s
}

func team() org.State {
	ia, im := uuid.New(), uuid.New()
	return fold(
		org.Created{OrgID: id, Name: "Acme", Slug: "acme", OwnerID: owner, CreatedAt: now},
		org.MemberInvited{OrgID: id, InvitationID: ia, EmailDigest: "a", Role: org.Admin, TokenHash: "ta", ExpiresAt: now.Add(time.Hour)},
		org.MemberJoined{OrgID: id, UserID: admin, Role: org.Admin, InvitationID: ia},
		org.MemberInvited{OrgID: id, InvitationID: im, EmailDigest: "m", Role: org.Member, TokenHash: "tm", ExpiresAt: now.Add(time.Hour)},
		org.MemberJoined{OrgID: id, UserID: member, Role: org.Member, InvitationID: im},
		org.MemberInvited{OrgID: id, InvitationID: invID, EmailDigest: "new", Role: org.Member, TokenHash: "tn", ExpiresAt: now.Add(time.Hour)},
	)
}

func TestDecide(t *testing.T) {
	s := team()
	expired := org.Evolve(s, org.MemberInvited{OrgID: id, InvitationID: uuid.New(), EmailDigest: "late", Role: org.Member, TokenHash: "tl", ExpiresAt: now.Add(-time.Second)})
	for _, tc := range []struct {
		name  string
		state org.State
		cmd   any
		code  domain.Code
	}{
		{"outsider renames", s, org.Update{Actor: outsider, Name: ptr("x")}, domain.CodeNotFound},
		{"member renames", s, org.Update{Actor: member, Name: ptr("x")}, domain.CodeForbidden},
		{"admin renames", s, org.Update{Actor: admin, Name: ptr("x")}, ""},
		{"admin deletes", s, org.Delete{Actor: admin}, domain.CodeForbidden},
		{"owner deletes", s, org.Delete{Actor: owner}, ""},
		{"admin invites an owner", s, org.Invite{Actor: admin, InvitationID: uuid.New(), Email: "x@y", EmailDigest: "x", Role: org.Owner, TokenHash: "t", ExpiresAt: now.Add(time.Hour)}, domain.CodeForbidden},
		{"invite a member again", s, org.Invite{Actor: admin, InvitationID: uuid.New(), Email: "x@y", EmailDigest: "x", Role: org.Member, TokenHash: "t", ExpiresAt: now.Add(time.Hour), InviteeIsMember: true}, domain.CodeConflict},
		{"invite with a pending invitation", s, org.Invite{Actor: admin, InvitationID: uuid.New(), Email: "x@y", EmailDigest: "new", Role: org.Member, TokenHash: "t", ExpiresAt: now.Add(time.Hour)}, domain.CodeConflict},
		{"invite with a bad role", s, org.Invite{Actor: admin, InvitationID: uuid.New(), Email: "x@y", EmailDigest: "x", Role: "boss", TokenHash: "t", ExpiresAt: now.Add(time.Hour)}, domain.CodeInvalid},
		{"accept", s, org.Accept{Actor: outsider, ActorEmailDigest: "new", TokenHash: "tn"}, ""},
		{"accept with another email", s, org.Accept{Actor: outsider, ActorEmailDigest: "other", TokenHash: "tn"}, domain.CodeConflict},
		{"accept an expired invitation", expired, org.Accept{Actor: outsider, ActorEmailDigest: "late", TokenHash: "tl"}, domain.CodeConflict},
		{"accept a used invitation", s, org.Accept{Actor: outsider, ActorEmailDigest: "m", TokenHash: "tm"}, domain.CodeConflict},
		{"accept an unknown token", s, org.Accept{Actor: outsider, ActorEmailDigest: "new", TokenHash: "nope"}, domain.CodeNotFound},
		{"admin demotes the owner", s, org.ChangeRole{Actor: admin, UserID: owner, Role: org.Member}, domain.CodeForbidden},
		{"admin promotes to owner", s, org.ChangeRole{Actor: admin, UserID: member, Role: org.Owner}, domain.CodeForbidden},
		{"admin promotes to admin", s, org.ChangeRole{Actor: admin, UserID: member, Role: org.Admin}, ""},
		{"last owner demotes self", s, org.ChangeRole{Actor: owner, UserID: owner, Role: org.Admin}, domain.CodeConflict},
		{"last owner leaves", s, org.RemoveMember{Actor: owner, UserID: owner}, domain.CodeConflict},
		{"member leaves", s, org.RemoveMember{Actor: member, UserID: member}, ""},
		{"member removes another", s, org.RemoveMember{Actor: member, UserID: admin}, domain.CodeForbidden},
		{"admin removes the owner", s, org.RemoveMember{Actor: admin, UserID: owner}, domain.CodeForbidden},
		{"revoke a pending invitation", s, org.RevokeInvitation{Actor: admin, InvitationID: invID}, ""},
		{"erasure withdraws a pending invitation", s, org.WithdrawInvitation{InvitationID: invID}, ""},
		{"erasure withdraws an unknown invitation", s, org.WithdrawInvitation{InvitationID: uuid.New()}, ""},
		{"member revokes", s, org.RevokeInvitation{Actor: member, InvitationID: invID}, domain.CodeForbidden},
	} {
		if _, err := org.Decide(tc.state, tc.cmd, now); domain.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want code %q", tc.name, err, tc.code)
		}
	}
	evs, err := org.Decide(s, org.Invite{Actor: admin, InvitationID: uuid.New(), Email: "x@y", EmailDigest: "x", Role: org.Member, TokenHash: "t", ExpiresAt: now.Add(time.Hour)}, now)
	if err != nil || !evs[0].(org.MemberInvited).DigestSealed {
		t.Fatalf("invite: %v %v, want the digest marked for sealing", evs, err)
	}
	inv := evs[0].(org.MemberInvited)
	if subject, fields := inv.PersonalData(); subject != inv.InvitationID || len(fields) != 2 {
		t.Fatalf("a new invitation seals %d fields under %s, want email and digest under the invitation", len(fields), subject)
	}
	old := org.MemberInvited{InvitationID: invID, Email: "x@y", EmailDigest: "x"}
	if _, fields := old.PersonalData(); len(fields) != 1 {
		t.Fatalf("an invitation from before digest sealing seals %d fields, want the email only", len(fields))
	}
	if evs, _ := org.Decide(s, org.WithdrawInvitation{InvitationID: invID}, now); len(evs) != 1 {
		t.Fatalf("withdrawing a pending invitation: %v, want one event", evs)
	}
	if evs, _ := org.Decide(org.Evolve(s, org.InvitationRevoked{OrgID: id, InvitationID: invID}), org.WithdrawInvitation{InvitationID: invID}, now); len(evs) != 0 {
		t.Fatalf("withdrawing a revoked invitation: %v, want nothing", evs)
	}
	// Evolve copies its maps: an earlier state does not see later members.
	before := team()
	after := org.Evolve(before, org.MemberRemoved{OrgID: id, UserID: member})
	if before.RoleOf(member) != org.Member || after.RoleOf(member) != "" {
		t.Fatal("Evolve changed an earlier state's members")
	}
}

func ptr(s string) *string { return &s }
