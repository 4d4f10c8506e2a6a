package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
)

// MaxJSONBody bounds JSON request bodies.
const MaxJSONBody = 1 << 20

// readJSON decodes the request body into dst strictly: JSON only, no unknown fields, no trailing data,
// at most MaxJSONBody bytes. It returns the raw body too (for idempotency fingerprints).
func readJSON(c echo.Context, dst any) ([]byte, error) {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, domain.Errorf("unsupported_media_type", "the body must be application/json")
		}
	}
	raw, err := io.ReadAll(io.LimitReader(req.Body, MaxJSONBody+1))
	if err != nil {
		return nil, domain.Errorf(domain.CodeBadRequest, "could not read the request body")
	}
	if len(raw) > MaxJSONBody {
		return nil, domain.Errorf(domain.CodeTooLarge, "the request body is larger than %d bytes", MaxJSONBody)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, domain.Errorf(domain.CodeBadRequest, "the request body is empty; a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return nil, domain.Errorf(domain.CodeBadRequest, "malformed JSON: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, domain.Errorf(domain.CodeBadRequest, "malformed JSON: data after the object")
	}
	return raw, nil
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return err.Error()
}

// pathUUID parses a UUID path parameter; a malformed one is CodeBadRequest.
func pathUUID(c echo.Context, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil {
		return uuid.Nil, domain.Errorf(domain.CodeBadRequest, "%s %q is not a UUID", name, c.Param(name))
	}
	return id, nil
}

// pageLimit reads ?limit= (default 50, 1..200).
func pageLimit(c echo.Context) (int, error) {
	s := c.QueryParam("limit")
	if s == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 200 {
		v := domain.Validation{}
		v.Add("limit", "must be a whole number from 1 to 200")
		return 0, v.Err()
	}
	return n, nil
}

// ifMatch reads an If-Match header carrying a version: `"3"` or `3`; 0 when absent or `*`. A weak
// validator (`W/"3"`) cannot satisfy If-Match (RFC 9110) and is CodeBadRequest.
func ifMatch(c echo.Context) (int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	if strings.HasPrefix(h, "W/") {
		return 0, domain.Errorf(domain.CodeBadRequest, "If-Match needs a strong validator such as \"3\", not a weak one")
	}
	h = strings.Trim(h, `"`)
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil || n < 1 {
		return 0, domain.Errorf(domain.CodeBadRequest, "If-Match must be a version such as \"3\"")
	}
	return n, nil
}

func setETag(c echo.Context, version int64) {
	c.Response().Header().Set("ETag", `"`+strconv.FormatInt(version, 10)+`"`)
}

func noContent(c echo.Context) error { return c.NoContent(http.StatusNoContent) }

// pathCommand runs a command addressed only by path ids (no body) and answers 200 with each id under
// its parameter name, "id" for the last one, and the command's consistency token. With conditional,
// the If-Match version is passed on (0 when absent).
func (s *Server) pathCommand(c echo.Context, conditional bool, params []string,
	run func(ctx context.Context, cc commands.Context, ids []uuid.UUID, expected int64) (eventstore.Position, error)) error {
	ids := make([]uuid.UUID, len(params))
	out := map[string]any{}
	for i, p := range params {
		id, err := pathUUID(c, p)
		if err != nil {
			return err
		}
		ids[i], out[p] = id, id
	}
	var expected int64
	if conditional {
		var err error
		if expected, err = ifMatch(c); err != nil {
			return err
		}
	}
	cc, err := commandContext(c, nil)
	if err != nil {
		return err
	}
	pos, err := run(c.Request().Context(), cc, ids, expected)
	if err != nil {
		return err
	}
	out["id"] = ids[len(ids)-1]
	out["position"] = withPosition(c, pos)
	return c.JSON(http.StatusOK, out)
}

// readCommand decodes a command's JSON body into dst and collects who issues it; with conditional it
// also reads the If-Match version (0 when absent).
func readCommand(c echo.Context, dst any, conditional bool) (commands.Context, int64, error) {
	body, err := readJSON(c, dst)
	if err != nil {
		return commands.Context{}, 0, err
	}
	var expected int64
	if conditional {
		if expected, err = ifMatch(c); err != nil {
			return commands.Context{}, 0, err
		}
	}
	cc, err := commandContext(c, body)
	return cc, expected, err
}

// getOne answers a query for one resource addressed by the path parameter param: it waits for the
// named read models when the request carries a consistency token, runs query for the caller, and
// answers the resource as dto makes it, with its version as ETag.
func getOne[V, D any](s *Server, c echo.Context, param string, projectors []string,
	query func(ctx context.Context, viewer, id uuid.UUID) (V, error), version func(V) int64, dto func(V) D) error {
	id, err := pathUUID(c, param)
	if err != nil {
		return err
	}
	if err := s.consistent(c, projectors...); err != nil {
		return err
	}
	v, err := query(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	setETag(c, version(v))
	return c.JSON(http.StatusOK, dto(v))
}

// listUnder answers a page of a list addressed by the path parameter param: it waits for the named
// read models when the request carries a consistency token, runs query for the caller with the
// request's cursor and limit, and answers the items as dto makes them with the next cursor.
func listUnder[V, D any](s *Server, c echo.Context, param string, projectors []string,
	query func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]V, *string, error), dto func(V) D) error {
	id, err := pathUUID(c, param)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	if err := s.consistent(c, projectors...); err != nil {
		return err
	}
	items, next, err := query(c.Request().Context(), userID(c), id, c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	out := pageDTO[D]{Items: make([]D, len(items)), NextCursor: next}
	for i, v := range items {
		out.Items[i] = dto(v)
	}
	return c.JSON(http.StatusOK, out)
}

func same[V any](v V) V { return v }

// stateAsOf answers an aggregate as its events recorded up to the time asOf (RFC 3339) left it, after
// authorize lets the caller read it now: a temporal query rebuilt from the log, not a read model.
// An aggregate that did not exist at that time (or was deleted by then) is CodeNotFound.
func stateAsOf[S, D any](s *Server, c echo.Context, id uuid.UUID, asOf, what string, authorize func(context.Context) error,
	evolve func(S, domain.Event) S, exists func(S) bool, version func(S) int64, dto func(S) D) error {
	at, err := time.Parse(time.RFC3339Nano, asOf)
	if err != nil {
		return domain.Validation{"as_of": "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"}.Err()
	}
	ctx := c.Request().Context()
	if err := authorize(ctx); err != nil {
		return err
	}
	recs, err := s.deps.Log.ReadStream(ctx, id, 0)
	if err != nil {
		return err
	}
	var st S
	for _, r := range recs {
		if r.RecordedAt.After(at) {
			break
		}
		st = evolve(st, r.Event)
	}
	if !exists(st) {
		return domain.Errorf(domain.CodeNotFound, "%s did not exist at %s", what, at.UTC().Format(time.RFC3339))
	}
	setETag(c, version(st))
	return c.JSON(http.StatusOK, dto(st))
}
