// Package httpapi is Atlas's HTTP API (Echo): routes, authentication, request decoding, error mapping,
// consistency tokens, metrics and the OpenAPI document. It depends on small interfaces that the
// commands and projections packages satisfy.
package httpapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/domain"
)

// statusOf is the one table that maps error codes to HTTP statuses.
var statusOf = map[domain.Code]int{
	domain.CodeBadRequest:      http.StatusBadRequest,
	domain.CodeInvalid:         http.StatusUnprocessableEntity,
	domain.CodeUnauthenticated: http.StatusUnauthorized,
	domain.CodeForbidden:       http.StatusForbidden,
	domain.CodeNotFound:        http.StatusNotFound,
	domain.CodeConflict:        http.StatusConflict,
	domain.CodeVersionConflict: http.StatusConflict,
	domain.CodeTooLarge:        http.StatusRequestEntityTooLarge,
	domain.CodeNotReady:        http.StatusServiceUnavailable,
	domain.CodeRateLimited:     http.StatusTooManyRequests,
	domain.CodeInternal:        http.StatusInternalServerError,
	"unsupported_media_type":   http.StatusUnsupportedMediaType,
	"range_not_satisfiable":    http.StatusRequestedRangeNotSatisfiable,
	"method_not_allowed":       http.StatusMethodNotAllowed,
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    domain.Code       `json:"code"`
	Message string            `json:"message"`
	Details map[string]string `json:"details,omitempty"`
}

// fromEcho turns Echo's own errors (unknown route, body too large, ...) into domain errors.
func fromEcho(he *echo.HTTPError) *domain.Error {
	msg, _ := he.Message.(string)
	if msg == "" {
		msg = http.StatusText(he.Code)
	}
	switch he.Code {
	case http.StatusNotFound:
		return domain.Errorf(domain.CodeNotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return domain.Errorf("method_not_allowed", "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return domain.Errorf(domain.CodeTooLarge, "the request body is too large")
	case http.StatusUnsupportedMediaType:
		return domain.Errorf("unsupported_media_type", "%s", msg)
	case http.StatusUnauthorized:
		return domain.Errorf(domain.CodeUnauthenticated, "%s", msg)
	case http.StatusBadRequest:
		return domain.Errorf(domain.CodeBadRequest, "%s", msg)
	case http.StatusServiceUnavailable:
		return domain.Errorf(domain.CodeNotReady, "%s", msg)
	}
	return domain.Errorf(domain.CodeInternal, "%s", msg)
}

// errorHandler writes every error in the API's error format; only internal errors are logged with
// their cause, and their cause is never shown to the client.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var de *domain.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &de):
	case errors.As(err, &he):
		de = fromEcho(he)
	default:
		de = &domain.Error{Code: domain.CodeInternal, Message: "internal error"}
	}
	status, ok := statusOf[de.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 && de.Code != domain.CodeNotReady {
		logger(c).Error("request failed", "error", err.Error())
		de = &domain.Error{Code: domain.CodeInternal, Message: "internal error; the request id identifies it in the logs"}
	}
	body := errorBody{Error: errorDetail{Code: de.Code, Message: de.Message, Details: de.Details}}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, body)
}
