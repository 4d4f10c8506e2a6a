package httpapi

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

type erasureDTO struct {
	ID       uuid.UUID `json:"id"`
	Status   string    `json:"status"`
	ErasedAt time.Time `json:"erased_at"`
	Position string    `json:"position"`
}

// eraseMe forgets the caller (DELETE /api/v1/me), confirmed with their password in the body: a token
// alone (a session left open, a leaked API key) must not be enough to destroy an account. Wrong
// passwords count against the same limit as logins for one email, so the route cannot be used to
// guess the password with a stolen token. 202: the personal data is unreadable when this answers;
// read models and search entries follow as the projectors catch up (the position says when).
func (s *Server) eraseMe(c echo.Context) error {
	var in struct {
		Password string `json:"password"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	if err := s.limit(c, "erase:"+userID(c).String(), LimitLoginEmail); err != nil {
		return err
	}
	r, err := s.deps.Commands.EraseUser(c.Request().Context(), cc, in.Password)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, erasureDTO{ID: r.UserID, Status: "erased", ErasedAt: r.ErasedAt.UTC(), Position: withPosition(c, r.Position)})
}
