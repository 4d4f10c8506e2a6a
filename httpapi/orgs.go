package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// LimitAcceptIP bounds invitation acceptances per IP: tokens are unguessable, but guessing is slowed anyway.
var LimitAcceptIP = Limit{Rate: 20, Burst: 10, Period: time.Minute}

type orgDTO struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	Role      string    `json:"role,omitempty"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Position  string    `json:"position,omitempty"`
}

func (s *Server) orgCommandResponse(c echo.Context, status int, r commands.OrgResult) error {
	setETag(c, r.Org.Version)
	return c.JSON(status, orgDTO{ID: r.Org.ID, Name: r.Org.Name, Slug: r.Org.Slug, Role: r.Org.RoleOf(userID(c)), Version: r.Org.Version,
		CreatedAt: r.Org.CreatedAt.UTC(), UpdatedAt: r.Org.UpdatedAt.UTC(), Position: withPosition(c, r.Position)})
}

func (s *Server) createOrg(c echo.Context) error {
	var in struct {
		Name string `json:"name"`
		Slug string `json:"slug"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.CreateOrg(c.Request().Context(), cc, in.Name, in.Slug)
	if err != nil {
		return err
	}
	return s.orgCommandResponse(c, http.StatusCreated, r)
}

func (s *Server) listOrgs(c echo.Context) error {
	if err := s.consistent(c, projections.OrgsProjector); err != nil {
		return err
	}
	orgs, err := s.deps.Queries.OrgsOf(c.Request().Context(), userID(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageDTO[projections.OrgView]{Items: orgs})
}

func (s *Server) getOrg(c echo.Context) error {
	id, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	if err := s.consistent(c, projections.OrgsProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	v, err := s.deps.Queries.Org(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	setETag(c, v.Version)
	return c.JSON(http.StatusOK, v)
}

func (s *Server) updateOrg(c echo.Context) error {
	id, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	var in struct {
		Name *string `json:"name"`
		Slug *string `json:"slug"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.UpdateOrg(c.Request().Context(), cc, id, expected, in.Name, in.Slug)
	if err != nil {
		return err
	}
	return s.orgCommandResponse(c, http.StatusOK, r)
}

func (s *Server) deleteOrg(c echo.Context) error {
	return s.pathCommand(c, true, []string{"org_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.DeleteOrg(ctx, cc, ids[0], expected)
		return r.Position, err
	})
}

func (s *Server) listMembers(c echo.Context) error {
	id, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	if err := s.consistent(c, projections.OrgsProjector, projections.PermissionsProjector, projections.UsersProjector); err != nil {
		return err
	}
	members, err := s.deps.Queries.Members(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageDTO[projections.MemberView]{Items: members})
}

type membershipDTO struct {
	OrgID    uuid.UUID `json:"org_id"`
	UserID   uuid.UUID `json:"user_id"`
	Role     string    `json:"role"`
	Position string    `json:"position"`
}

func (s *Server) membershipResponse(c echo.Context, r commands.OrgResult, user uuid.UUID) error {
	return c.JSON(http.StatusOK, membershipDTO{OrgID: r.Org.ID, UserID: user, Role: r.Org.RoleOf(user), Position: withPosition(c, r.Position)})
}

func (s *Server) changeMember(c echo.Context) error {
	orgID, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	user, err := pathUUID(c, "user_id")
	if err != nil {
		return err
	}
	var in struct {
		Role string `json:"role"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.ChangeMemberRole(c.Request().Context(), cc, orgID, user, in.Role)
	if err != nil {
		return err
	}
	return s.membershipResponse(c, r, user)
}

func (s *Server) removeMember(c echo.Context) error {
	return s.pathCommand(c, false, []string{"org_id", "user_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, _ int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.RemoveMember(ctx, cc, ids[0], ids[1])
		return r.Position, err
	})
}

func (s *Server) invite(c echo.Context) error {
	orgID, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	var in struct {
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	if in.Role == "" {
		in.Role = org.Member
	}
	inv, err := s.deps.Commands.Invite(c.Request().Context(), cc, orgID, in.Email, in.Role)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, map[string]any{"id": inv.ID, "token": inv.Token, "expires_at": inv.ExpiresAt.UTC(),
		"position": withPosition(c, inv.Position)})
}

func (s *Server) listInvitations(c echo.Context) error {
	orgID, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	if err := s.consistent(c, projections.OrgsProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	invs, err := s.deps.Queries.Invitations(c.Request().Context(), userID(c), orgID, time.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageDTO[projections.InvitationView]{Items: invs})
}

func (s *Server) revokeInvitation(c echo.Context) error {
	return s.pathCommand(c, false, []string{"org_id", "invitation_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, _ int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.RevokeInvitation(ctx, cc, ids[0], ids[1])
		return r.Position, err
	})
}

func (s *Server) acceptInvitation(c echo.Context) error {
	if err := s.limit(c, "accept-ip:"+c.RealIP(), LimitAcceptIP); err != nil {
		return err
	}
	cc, err := commandContext(c, nil)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.AcceptInvitation(c.Request().Context(), cc, c.Param("token"))
	if err != nil {
		return err
	}
	return s.membershipResponse(c, r, cc.Actor)
}

// orgHistory lists the events of an organization's stream for its owners and admins: they hold
// invitees' email addresses, which members do not see (403); non-members get 404.
func (s *Server) orgHistory(c echo.Context) error {
	return s.streamHistory(c, "org_id", func(ctx context.Context, id uuid.UUID) error {
		st, err := s.deps.Commands.Org(ctx, id)
		switch {
		case err != nil:
			return err
		case !st.Exists() || st.RoleOf(userID(c)) == "":
			return domain.Errorf(domain.CodeNotFound, "organization not found")
		case org.Rank(st.RoleOf(userID(c))) < org.Rank(org.Admin):
			return domain.Errorf(domain.CodeForbidden, "the organization's history is for its owners and admins")
		}
		return nil
	})
}
