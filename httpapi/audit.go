package httpapi

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// Auditing is what the audit routes need: verification of the whole log and a tenant's events.
type Auditing interface {
	Verify(ctx context.Context, anchors []eventstore.Anchor) (eventstore.VerifyReport, error)
	ReadTenant(ctx context.Context, tenant uuid.UUID, after eventstore.Position, f eventstore.TenantFilter, limit int) ([]eventstore.Record, error)
	EachTenant(ctx context.Context, tenant uuid.UUID, after eventstore.Position, f eventstore.TenantFilter, pageSize int, each func(eventstore.Record) error) error
}

// PlatformRoles tells which platform roles (admin, auditor) a user holds.
type PlatformRoles interface {
	PlatformRoles(ctx context.Context, user uuid.UUID) ([]string, error)
}

// ProjectionAdmin is what the admin routes need of the projection runtime.
type ProjectionAdmin interface {
	Statuses(ctx context.Context) ([]projections.Status, error)
	StartRebuild(ctx context.Context, name string) (eventstore.Position, error)
	Names() []string
}

// requireRole lets the request through only for a user holding one of roles (after authenticate):
// 403 forbidden otherwise. Platform roles come from the platform_roles read model.
func (s *Server) requireRole(roles ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.deps.Roles == nil {
				return domain.Errorf(domain.CodeForbidden, "platform roles are not configured")
			}
			if err := s.consistent(c, projections.PlatformProjector); err != nil {
				return err
			}
			held, err := s.deps.Roles.PlatformRoles(c.Request().Context(), userID(c))
			if err != nil {
				return err
			}
			for _, r := range roles {
				if slices.Contains(held, r) {
					return next(c)
				}
			}
			return domain.Errorf(domain.CodeForbidden, "this needs the platform role %s (granted with `atlas admin grant EMAIL ROLE`)",
				strings.Join(roles, " or "))
		}
	}
}

// verifyLog checks the whole event log (GET /api/v1/audit/verify, platform auditors). One
// verification runs at a time per process; others wait for it.
func (s *Server) verifyLog(c echo.Context) error {
	var anchors []eventstore.Anchor
	for _, a := range c.QueryParams()["anchor"] {
		an, err := eventstore.ParseAnchor(a)
		if err != nil {
			return domain.Errorf(domain.CodeBadRequest, "%s", err.Error())
		}
		anchors = append(anchors, an)
	}
	ctx := c.Request().Context()
	select {
	case s.verifying <- struct{}{}:
		defer func() { <-s.verifying }()
	case <-ctx.Done():
		return ctx.Err()
	}
	rep, err := s.deps.Audit.Verify(ctx, anchors)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

// auditDTO is one event of an organization's audit log.
type auditDTO struct {
	Position      string          `json:"position"`
	EventID       uuid.UUID       `json:"event_id"`
	StreamType    string          `json:"stream_type"`
	StreamID      uuid.UUID       `json:"stream_id"`
	StreamVersion int64           `json:"stream_version"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       *uuid.UUID      `json:"actor_id"`
	OccurredAt    time.Time       `json:"occurred_at"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id"`
}

func toAuditDTO(r eventstore.Record) (auditDTO, error) {
	data, err := json.Marshal(r.Event)
	if err != nil {
		return auditDTO{}, err
	}
	return auditDTO{Position: r.Position.String(), EventID: r.EventID, StreamType: r.StreamType, StreamID: r.StreamID,
		StreamVersion: r.StreamVersion, Type: r.Name, Data: data, ActorID: r.Metadata.ActorID, OccurredAt: r.RecordedAt.UTC(),
		CorrelationID: r.Metadata.CorrelationID, CausationID: r.Metadata.CausationID}, nil
}

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)

// auditFilter reads ?after=&types=&actor_id=&from=&to=: a malformed cursor or actor id is
// CodeBadRequest, a bad type or time CodeInvalid.
func auditFilter(c echo.Context) (eventstore.Position, eventstore.TenantFilter, error) {
	var f eventstore.TenantFilter
	var after eventstore.Position
	// after= is the contract's name; cursor= (the lists' convention) is accepted too.
	a, cur := c.QueryParam("after"), c.QueryParam("cursor")
	if a != "" && cur != "" && a != cur {
		return after, f, domain.Errorf(domain.CodeBadRequest, "give after or cursor, not two different positions")
	}
	if a == "" {
		a = cur
	}
	if a != "" {
		p, err := eventstore.ParsePosition(a)
		if err != nil {
			return after, f, domain.Errorf(domain.CodeBadRequest, "after %q is not a position such as 1234.56 (an event's position or next_cursor)", a)
		}
		after = p
	}
	if a := c.QueryParam("actor_id"); a != "" {
		id, err := uuid.Parse(a)
		if err != nil {
			return after, f, domain.Errorf(domain.CodeBadRequest, "actor_id %q is not a UUID", a)
		}
		f.Actor = &id
	}
	v := domain.Validation{}
	if ts := c.QueryParam("types"); ts != "" {
		for _, t := range strings.Split(ts, ",") {
			t = strings.TrimSpace(t)
			if typ, _, err := eventstore.SplitName(t); err == nil {
				t = typ // "org.created.v1" names the type "org.created"
			}
			if !eventTypeRE.MatchString(t) || len(t) > 100 {
				v.Add("types", "must be a comma-separated list of event types such as org.member_joined or org.member_joined.v1")
				break
			}
			f.Types = append(f.Types, t)
		}
	}
	parseTime := func(name string) *time.Time {
		s := c.QueryParam(name)
		if s == "" {
			return nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			v.Add(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			return nil
		}
		return &t
	}
	f.From, f.To = parseTime("from"), parseTime("to")
	if f.From != nil && f.To != nil && !f.From.Before(*f.To) {
		v.Add("to", "must be after from")
	}
	if len(v) > 0 {
		return after, f, v.Err()
	}
	return after, f, nil
}

// wantsNDJSON reports whether the request's Accept header asks for application/x-ndjson.
func wantsNDJSON(c echo.Context) bool {
	for _, part := range strings.Split(c.Request().Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/x-ndjson" {
			return true
		}
	}
	return false
}

// NDJSONPage is how many events the NDJSON export reads per query and writes between flushes.
const NDJSONPage = 500

// orgAudit answers an organization's audit log (GET /api/v1/orgs/{org_id}/audit): the events whose
// tenant is the organization (its own stream, its spaces and their content) in delivery order, for
// its owners and admins (members 403, others 404). With Accept: application/x-ndjson it streams every
// matching event, one JSON object per line, reading and flushing a page at a time.
func (s *Server) orgAudit(c echo.Context) error {
	id, err := pathUUID(c, "org_id")
	if err != nil {
		return err
	}
	after, f, err := auditFilter(c)
	if err != nil {
		return err
	}
	ndjson := wantsNDJSON(c)
	limit := 0
	if !ndjson {
		if limit, err = pageLimit(c); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	st, err := s.deps.Commands.Org(ctx, id)
	switch {
	case err != nil:
		return err
	case !st.Exists() || st.RoleOf(userID(c)) == "":
		return domain.Errorf(domain.CodeNotFound, "organization not found")
	case org.Rank(st.RoleOf(userID(c))) < org.Rank(org.Admin):
		return domain.Errorf(domain.CodeForbidden, "the organization's audit log is for its owners and admins")
	}
	if !ndjson {
		recs, err := s.deps.Audit.ReadTenant(ctx, id, after, f, limit+1)
		if err != nil {
			return err
		}
		out := pageDTO[auditDTO]{Items: make([]auditDTO, 0, min(len(recs), limit))}
		for i, r := range recs {
			if i == limit {
				cur := recs[limit-1].Position.String()
				out.NextCursor = &cur
				break
			}
			d, err := toAuditDTO(r)
			if err != nil {
				return err
			}
			out.Items = append(out.Items, d)
		}
		return c.JSON(http.StatusOK, out)
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	n := 0
	err = s.deps.Audit.EachTenant(ctx, id, after, f, NDJSONPage, func(r eventstore.Record) error {
		d, err := toAuditDTO(r)
		if err != nil {
			return err
		}
		if err := enc.Encode(d); err != nil {
			return err
		}
		if n++; n%NDJSONPage == 0 {
			w.Flush()
		}
		return nil
	})
	if err != nil {
		// The status is sent: end the stream with an error line the client can tell from an event.
		logger(c).Warn("audit export cut short", "org_id", id, "events", n, "error", err)
		if ctx.Err() == nil {
			_ = enc.Encode(map[string]any{"error": map[string]string{"code": string(domain.CodeInternal), "message": "the export stopped early; resume with after=<the last position received>"}})
		}
	}
	w.Flush()
	return nil
}

// projectionDTO is one projector's status in the admin API.
type projectionDTO struct {
	Name          string  `json:"name"`
	Version       int     `json:"version"`
	Status        string  `json:"status"`
	Position      string  `json:"position"`
	LagEvents     int64   `json:"lag_events"`
	LagSeconds    float64 `json:"lag_seconds"`
	LastError     *string `json:"last_error"`
	FailedAt      *int64  `json:"failed_position"`
	RebuildTarget *string `json:"rebuild_target"`
}

// listProjections answers GET /api/v1/admin/projections (platform admins).
func (s *Server) listProjections(c echo.Context) error {
	sts, err := s.deps.Projections.Statuses(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]projectionDTO, len(sts))
	for i, st := range sts {
		d := projectionDTO{Name: st.Name, Version: st.Version, Status: st.Status, Position: st.Position.String(),
			LagEvents: st.LagEvents, LagSeconds: st.LagSeconds, LastError: st.LastError, FailedAt: st.FailedPosition}
		if st.Status == "rebuilding" {
			t := st.RebuildTarget.String()
			d.RebuildTarget = &t
		}
		out[i] = d
	}
	return c.JSON(http.StatusOK, out)
}

// rebuildProjection answers POST /api/v1/admin/projections/{name}/rebuild (platform admins): the
// projector's tables are emptied and it replays the log from the start while this process's runtime
// runs it; 202 with the rebuild's target position. Unknown names are 404.
func (s *Server) rebuildProjection(c echo.Context) error {
	name := c.Param("name")
	if !slices.Contains(s.deps.Projections.Names(), name) {
		return domain.Errorf(domain.CodeNotFound, "no projection named %q", name)
	}
	target, err := s.deps.Projections.StartRebuild(c.Request().Context(), name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"name": name, "status": "rebuilding", "rebuild_target": target.String()})
}

// The roles the platform routes need.
var (
	// Verification is the auditors' (an administrator is not an auditor unless granted the role too).
	auditRoles = []string{platform.Auditor}
	adminRoles = []string{platform.Admin}
)
