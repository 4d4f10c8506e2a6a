package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

type userDTO struct {
	ID              uuid.UUID                `json:"id"`
	Email           string                   `json:"email"`
	Name            string                   `json:"name"`
	PersonalSpaceID uuid.UUID                `json:"personal_space_id"`
	CreatedAt       time.Time                `json:"created_at"`
	Memberships     []projections.Membership `json:"memberships"`
	// PlatformRoles are the caller's platform roles (admin, auditor); only GET /api/v1/me fills them.
	PlatformRoles *[]string `json:"platform_roles,omitempty"`
}

func userFromState(s user.State) userDTO {
	return userDTO{ID: s.ID, Email: s.Email, Name: s.Name, PersonalSpaceID: s.PersonalSpaceID,
		CreatedAt: s.CreatedAt.UTC(), Memberships: []projections.Membership{}}
}

type authResponse struct {
	User     userDTO `json:"user"`
	Token    string  `json:"token"`
	Position string  `json:"position"`
}

func (s *Server) register(c echo.Context) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	if err := s.limit(c, "register-ip:"+c.RealIP(), LimitRegisterIP); err != nil {
		return err
	}
	r, err := s.deps.Commands.Register(c.Request().Context(), cc, in.Email, in.Name, in.Password)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, authResponse{User: userFromState(r.User), Token: r.Token, Position: withPosition(c, r.Position)})
}

func (s *Server) login(c echo.Context) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if _, err := readJSON(c, &in); err != nil {
		return err
	}
	// Both limits count every attempt, so guessing is slow per address and per account.
	if err := s.limit(c, "login-ip:"+c.RealIP(), LimitLoginIP); err != nil {
		return err
	}
	if err := s.limit(c, "login-email:"+commands.EmailKey(in.Email), LimitLoginEmail); err != nil {
		return err
	}
	r, err := s.deps.Commands.Login(c.Request().Context(), in.Email, in.Password)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, authResponse{User: userFromState(r.User), Token: r.Token, Position: withPosition(c, r.Position)})
}

func (s *Server) logout(c echo.Context) error {
	token, _ := c.Get("token").(string)
	if commands.IsAPIKey(token) {
		return domain.Errorf(domain.CodeBadRequest, "logout ends sessions; revoke an API key with DELETE /api/v1/me/api-keys/{id}")
	}
	if err := s.deps.Commands.Logout(c.Request().Context(), token); err != nil {
		return err
	}
	return noContent(c)
}

// me answers from the users read model, and from the user's own stream while the read model has not
// caught up yet, so a client that just registered always finds itself.
func (s *Server) me(c echo.Context) error {
	if err := s.consistent(c, projections.UsersProjector, projections.OrgsProjector); err != nil {
		return err
	}
	ctx := c.Request().Context()
	memberships, err := s.deps.Queries.Memberships(ctx, userID(c))
	if err != nil {
		return err
	}
	roles := []string{}
	if s.deps.Roles != nil {
		if roles, err = s.deps.Roles.PlatformRoles(ctx, userID(c)); err != nil {
			return err
		}
	}
	u, err := s.deps.Queries.User(ctx, userID(c))
	if domain.ErrorCode(err) == domain.CodeNotFound {
		st, err := s.deps.Commands.User(ctx, userID(c))
		if err != nil {
			return err
		}
		if !st.Exists() {
			return domain.Errorf(domain.CodeNotFound, "user not found")
		}
		dto := userFromState(st)
		dto.Memberships, dto.PlatformRoles = memberships, &roles
		return c.JSON(http.StatusOK, dto)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, userDTO{ID: u.ID, Email: u.Email, Name: u.Name, PersonalSpaceID: u.PersonalSpaceID,
		CreatedAt: u.CreatedAt.UTC(), Memberships: memberships, PlatformRoles: &roles})
}

type apiKeyCreated struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Prefix    string    `json:"prefix"`
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"created_at"`
	Position  string    `json:"position"`
}

// createAPIKey answers with the key itself: the only time it is shown.
func (s *Server) createAPIKey(c echo.Context) error {
	var in struct {
		Name string `json:"name"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	if err := s.limit(c, "apikey-ip:"+c.RealIP(), LimitNewAPIKeyIP); err != nil {
		return err
	}
	r, err := s.deps.Commands.CreateAPIKey(c.Request().Context(), cc, in.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, apiKeyCreated{ID: r.Key.ID, Name: r.Key.Name, Prefix: r.Key.Prefix, Key: r.Secret,
		CreatedAt: r.Key.CreatedAt, Position: withPosition(c, r.Position)})
}

func (s *Server) listAPIKeys(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	if err := s.consistent(c, projections.APIKeysProjector); err != nil {
		return err
	}
	page, err := s.deps.Queries.APIKeysOf(c.Request().Context(), userID(c), c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageDTO[projections.APIKeyView]{Items: page.Items, NextCursor: page.NextCursor})
}

func (s *Server) revokeAPIKey(c echo.Context) error {
	return s.pathCommand(c, false, []string{"key_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, _ int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.RevokeAPIKey(ctx, cc, ids[0])
		return r.Position, err
	})
}
