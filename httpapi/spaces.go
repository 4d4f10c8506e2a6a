package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

type spaceDTO struct {
	ID          uuid.UUID  `json:"id"`
	Name        string     `json:"name"`
	Slug        string     `json:"slug"`
	Visibility  string     `json:"visibility"`
	Description string     `json:"description"`
	OwnerUserID *uuid.UUID `json:"owner_user_id"`
	OrgID       *uuid.UUID `json:"org_id"`
	Personal    bool       `json:"personal"`
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Position    string     `json:"position,omitempty"`
}

func spaceFromView(v projections.SpaceView) spaceDTO {
	return spaceDTO{ID: v.ID, Name: v.Name, Slug: v.Slug, Visibility: v.Visibility, Description: v.Description, OwnerUserID: v.OwnerUserID,
		OrgID: v.OrgID, Personal: v.Personal, Version: v.Version, CreatedAt: v.CreatedAt.UTC(), UpdatedAt: v.UpdatedAt.UTC()}
}

func spaceFromState(s space.State) spaceDTO {
	return spaceDTO{ID: s.ID, Name: s.Name, Slug: s.Slug, Visibility: s.Visibility, Description: s.Description, OwnerUserID: s.OwnerUserID,
		OrgID: s.OrgID, Personal: s.Personal, Version: s.Version, CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC()}
}

func (s *Server) spaceCommandResponse(c echo.Context, status int, r commands.SpaceResult) error {
	dto := spaceFromState(r.Space)
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.Space.Version)
	return c.JSON(status, dto)
}

func (s *Server) createSpace(c echo.Context) error {
	var in struct {
		Name        string     `json:"name"`
		Slug        string     `json:"slug"`
		Visibility  string     `json:"visibility"`
		Description string     `json:"description"`
		OrgID       *uuid.UUID `json:"org_id"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	if in.Visibility == "" {
		in.Visibility = space.Private
	}
	r, err := s.deps.Commands.CreateDescribedSpace(c.Request().Context(), cc, in.OrgID, in.Name, in.Slug, in.Visibility, in.Description)
	if err != nil {
		return err
	}
	return s.spaceCommandResponse(c, http.StatusCreated, r)
}

func (s *Server) updateSpace(c echo.Context) error {
	id, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	var in struct {
		Name        *string `json:"name"`
		Slug        *string `json:"slug"`
		Visibility  *string `json:"visibility"`
		Description *string `json:"description"`
	}
	cc, expected, err := readCommand(c, &in, true)
	if err != nil {
		return err
	}
	r, err := s.deps.Commands.UpdateSpace(c.Request().Context(), cc, id,
		space.Update{ExpectedVersion: expected, Name: in.Name, Slug: in.Slug, Visibility: in.Visibility, Description: in.Description})
	if err != nil {
		return err
	}
	return s.spaceCommandResponse(c, http.StatusOK, r)
}

func (s *Server) deleteSpace(c echo.Context) error {
	return s.pathCommand(c, true, []string{"space_id"}, func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error) {
		r, err := s.deps.Commands.DeleteSpace(ctx, cc, ids[0], expected)
		return r.Position, err
	})
}

func (s *Server) getSpace(c echo.Context) error {
	id, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	if asOf := c.QueryParam("as_of"); asOf != "" {
		return s.spaceAsOf(c, id, asOf)
	}
	if err := s.consistent(c, projections.SpacesProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	v, err := s.deps.Queries.Space(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	setETag(c, v.Version)
	return c.JSON(http.StatusOK, spaceFromView(v))
}

// spaceAsOf rebuilds a space from its events up to a time. The caller must be able to read the space
// now; a space that did not exist yet at that time is not found.
func (s *Server) spaceAsOf(c echo.Context, id uuid.UUID, asOf string) error {
	return stateAsOf(s, c, id, asOf, "space", func(ctx context.Context) error {
		now, orgRole, err := s.deps.Commands.SpaceFor(ctx, userID(c), id)
		if err == nil && !now.CanRead(userID(c), orgRole) {
			err = domain.Errorf(domain.CodeNotFound, "space not found")
		}
		return err
	}, space.Evolve, space.State.Exists, func(st space.State) int64 { return st.Version }, spaceFromState)
}

type pageDTO[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

func (s *Server) listSpaces(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	var orgID *uuid.UUID
	if raw := c.QueryParam("org_id"); raw != "" {
		id, err := uuid.Parse(raw)
		if err != nil {
			return domain.Errorf(domain.CodeBadRequest, "org_id %q is not a UUID", raw)
		}
		orgID = &id
	}
	if err := s.consistent(c, projections.SpacesProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	page, err := s.deps.Queries.SpacesOf(c.Request().Context(), userID(c), orgID, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := pageDTO[spaceDTO]{Items: make([]spaceDTO, len(page.Items)), NextCursor: page.NextCursor}
	for i, v := range page.Items {
		out.Items[i] = spaceFromView(v)
	}
	return c.JSON(http.StatusOK, out)
}

type historyDTO struct {
	Position      string          `json:"position"`
	StreamVersion int64           `json:"stream_version"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       *uuid.UUID      `json:"actor_id"`
	OccurredAt    time.Time       `json:"occurred_at"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id"`
}

// spaceHistory lists the events of a space's stream, oldest first, for whoever may read the space.
func (s *Server) spaceHistory(c echo.Context) error {
	return s.streamHistory(c, "space_id", func(ctx context.Context, id uuid.UUID) error {
		st, orgRole, err := s.deps.Commands.SpaceFor(ctx, userID(c), id)
		if err == nil && !st.CanRead(userID(c), orgRole) {
			err = domain.Errorf(domain.CodeNotFound, "space not found")
		}
		return err
	})
}

// streamHistory answers a page of the events of the stream named by the path parameter param, after
// authorize lets the caller read the aggregate (and answers CodeNotFound when not).
func (s *Server) streamHistory(c echo.Context, param string, authorize func(ctx context.Context, id uuid.UUID) error) error {
	id, err := pathUUID(c, param)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	var after int64
	if cur := c.QueryParam("cursor"); cur != "" {
		if after, err = strconv.ParseInt(cur, 10, 64); err != nil || after < 0 {
			return domain.Errorf(domain.CodeBadRequest, "cursor %q is not valid", cur)
		}
	}
	ctx := c.Request().Context()
	if err := authorize(ctx, id); err != nil {
		return err
	}
	recs, err := s.deps.Log.ReadStream(ctx, id, 0)
	if err != nil {
		return err
	}
	out := pageDTO[historyDTO]{Items: []historyDTO{}}
	for _, r := range recs {
		if r.StreamVersion <= after {
			continue
		}
		if len(out.Items) == limit {
			cur := strconv.FormatInt(out.Items[limit-1].StreamVersion, 10)
			out.NextCursor = &cur
			break
		}
		data, err := json.Marshal(r.Event)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, historyDTO{Position: r.Position.String(), StreamVersion: r.StreamVersion,
			Type: r.Name, Data: data, ActorID: r.Metadata.ActorID, OccurredAt: r.RecordedAt.UTC(),
			CorrelationID: r.Metadata.CorrelationID, CausationID: r.Metadata.CausationID})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) listSpaceMembers(c echo.Context) error {
	id, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	if err := s.consistent(c, projections.SpacesProjector, projections.PermissionsProjector, projections.UsersProjector); err != nil {
		return err
	}
	members, err := s.deps.Queries.SpaceMembers(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, pageDTO[projections.SpaceMemberView]{Items: members})
}

// spaceMemberCommand runs a space-member command and answers with the membership and position.
func (s *Server) spaceMemberCommand(c echo.Context, status int, userParam bool,
	run func(ctx context.Context, cc commands.Context, space, user uuid.UUID, role string) (commands.SpaceResult, error)) error {
	id, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	var in struct {
		UserID *uuid.UUID `json:"user_id"`
		Role   string     `json:"role"`
	}
	var body []byte
	if c.Request().Method != http.MethodDelete {
		if body, err = readJSON(c, &in); err != nil {
			return err
		}
	}
	user := uuid.Nil
	if userParam {
		if in.UserID != nil {
			return domain.Errorf(domain.CodeBadRequest, "unknown field \"user_id\": the member is named in the path")
		}
		if user, err = pathUUID(c, "user_id"); err != nil {
			return err
		}
	} else if in.UserID != nil {
		user = *in.UserID
	} else {
		return domain.Validation{"user_id": "is required"}.Err()
	}
	cc, err := commandContext(c, body)
	if err != nil {
		return err
	}
	r, err := run(c.Request().Context(), cc, id, user, in.Role)
	if err != nil {
		return err
	}
	return c.JSON(status, map[string]any{"space_id": id, "user_id": user, "role": r.Space.Members[user], "position": withPosition(c, r.Position)})
}

func (s *Server) addSpaceMember(c echo.Context) error {
	return s.spaceMemberCommand(c, http.StatusCreated, false, s.deps.Commands.AddSpaceMember)
}

func (s *Server) changeSpaceMember(c echo.Context) error {
	return s.spaceMemberCommand(c, http.StatusOK, true, s.deps.Commands.ChangeSpaceMember)
}

func (s *Server) removeSpaceMember(c echo.Context) error {
	return s.spaceMemberCommand(c, http.StatusOK, true, func(ctx context.Context, cc commands.Context, space, user uuid.UUID, _ string) (commands.SpaceResult, error) {
		return s.deps.Commands.RemoveSpaceMember(ctx, cc, space, user)
	})
}
