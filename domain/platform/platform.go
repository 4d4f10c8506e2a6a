// Package platform is the platform aggregate: the one stream that records who holds a platform role
// (administrators run the installation, auditors check the event log). Roles are granted and revoked
// by operators with `atlas admin grant|revoke`, so every change is an auditable event.
package platform

import (
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the platform stream.
const StreamType = "platform"

// StreamID is the platform stream's fixed id.
var StreamID = uuid.MustParse("00000000-0000-7000-8000-000000000001")

// The platform roles.
const (
	Admin   = "admin"   // administers projections (the admin API)
	Auditor = "auditor" // verifies the event log (GET /api/v1/audit/verify)
)

// Roles lists the platform roles.
var Roles = []string{Admin, Auditor}

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventRoleGranted = "platform.role_granted.v1"
	EventRoleRevoked = "platform.role_revoked.v1"
)

// RoleGranted records that UserID holds Role.
type RoleGranted struct {
	UserID    uuid.UUID `json:"user_id"`
	Role      string    `json:"role"`
	GrantedAt time.Time `json:"granted_at"`
}

// RoleRevoked records that UserID no longer holds Role.
type RoleRevoked struct {
	UserID    uuid.UUID `json:"user_id"`
	Role      string    `json:"role"`
	RevokedAt time.Time `json:"revoked_at"`
}

// EventName implements domain.Event.
func (RoleGranted) EventName() string { return EventRoleGranted }

// EventName implements domain.Event.
func (RoleRevoked) EventName() string { return EventRoleRevoked }

// State is the platform's role holders.
type State struct {
	Holders map[uuid.UUID][]string // user -> roles, sorted
	Version int64
}

// Has reports whether user holds role.
func (s State) Has(user uuid.UUID, role string) bool { return slices.Contains(s.Holders[user], role) }

// Grant asks to give User the Role.
type Grant struct {
	User uuid.UUID
	Role string
}

// Revoke asks to take Role from User.
type Revoke struct {
	User uuid.UUID
	Role string
}

// Decide returns the events a command causes, or a *domain.Error: CodeInvalid for an unknown role,
// CodeConflict for a grant of a role already held or a revocation of one not held.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	check := func(role string) error {
		if !slices.Contains(Roles, role) {
			return domain.Validation{"role": "must be admin or auditor"}.Err()
		}
		return nil
	}
	switch c := cmd.(type) {
	case Grant:
		if err := check(c.Role); err != nil {
			return nil, err
		}
		if s.Has(c.User, c.Role) {
			return nil, domain.Errorf(domain.CodeConflict, "the user already holds the %s role", c.Role)
		}
		return []domain.Event{RoleGranted{UserID: c.User, Role: c.Role, GrantedAt: now}}, nil
	case Revoke:
		if err := check(c.Role); err != nil {
			return nil, err
		}
		if !s.Has(c.User, c.Role) {
			return nil, domain.Errorf(domain.CodeConflict, "the user does not hold the %s role", c.Role)
		}
		return []domain.Event{RoleRevoked{UserID: c.User, Role: c.Role, RevokedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "platform: unknown command %T", cmd)
	}
}

// Evolve applies one event to state. It never fails and never changes the state it is given.
func Evolve(s State, e domain.Event) State {
	s.Version++
	holders := make(map[uuid.UUID][]string, len(s.Holders)+1)
	for u, r := range s.Holders {
		holders[u] = r
	}
	switch e := e.(type) {
	case RoleGranted:
		roles := append(slices.Clone(holders[e.UserID]), e.Role)
		slices.Sort(roles)
		holders[e.UserID] = roles
	case RoleRevoked:
		roles := slices.DeleteFunc(slices.Clone(holders[e.UserID]), func(r string) bool { return r == e.Role })
		if len(roles) == 0 {
			delete(holders, e.UserID)
		} else {
			holders[e.UserID] = roles
		}
	}
	s.Holders = holders
	return s
}
