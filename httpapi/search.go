package httpapi

import (
	"context"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/projections"
)

// Searcher answers GET /api/v1/search.
type Searcher interface {
	Search(ctx context.Context, req projections.SearchRequest) (projections.SearchPage, error)
}

var searchKinds = map[string]bool{"note": true, "file": true, "chat": true}

func (s *Server) search(c echo.Context) error {
	if s.deps.Search == nil {
		return domain.Errorf(domain.CodeNotReady, "search is not configured")
	}
	v := domain.Validation{}
	q := strings.TrimSpace(c.QueryParam("q"))
	switch {
	case q == "":
		v.Add("q", "is required")
	case utf8.RuneCountInString(q) > 500:
		v.Add("q", "must be at most 500 characters")
	}
	mode := c.QueryParam("mode")
	if mode == "" {
		mode = "hybrid"
	}
	if mode != "hybrid" && mode != "keyword" && mode != "semantic" {
		v.Add("mode", `must be "hybrid", "keyword" or "semantic"`)
	}
	var kinds []string
	if raw := c.QueryParam("kinds"); raw != "" {
		for _, k := range strings.Split(raw, ",") {
			k = strings.TrimSpace(k)
			if !searchKinds[k] {
				v.Add("kinds", `must list kinds among "note", "file" and "chat"`)
				break
			}
			kinds = append(kinds, k)
		}
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	if err := v.Err(); err != nil {
		return err
	}
	req := projections.SearchRequest{Viewer: userID(c), Text: q, Mode: mode, Kinds: kinds, Limit: limit, Cursor: c.QueryParam("cursor")}
	for _, p := range []struct {
		name string
		dst  **uuid.UUID
	}{{"space_id", &req.SpaceID}, {"org_id", &req.OrgID}} {
		if raw := c.QueryParam(p.name); raw != "" {
			id, err := uuid.Parse(raw)
			if err != nil {
				return domain.Errorf(domain.CodeBadRequest, "%s %q is not a UUID", p.name, raw)
			}
			*p.dst = &id
		}
	}
	if err := s.consistent(c, projections.NotesProjector, projections.FilesProjector, projections.PermissionsProjector); err != nil {
		return err
	}
	page, err := s.deps.Search.Search(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}
