package projections

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// ErasureProjector is the name of the projector that destroys erased people's keys.
const ErasureProjector = "erasure"

// KeyEraser destroys a subject's personal-data key (eventstore.SubjectKeys). Erase is idempotent.
type KeyEraser interface {
	Erase(ctx context.Context, subject uuid.UUID) error
}

// Erasure destroys the keys named by each user.erased event: the user's and those of the
// invitations addressed to their email. The command that appends the event destroys them right after
// its commit; this projector is the guarantee behind it. Its checkpoint passes an erasure only once
// every key is gone (a failed attempt is retried, and the projector stops, visibly, if it keeps
// failing), so a crash between the commit and the command's own step leaves nothing readable once
// the projector has run. Destroying a key twice is harmless, and a rebuild replays every erasure.
// It owns no tables.
func Erasure(keys KeyEraser) *Projector {
	return &Projector{
		Name: ErasureProjector, Version: 1,
		Handlers: map[string]Handler{
			user.EventErased: func(ctx context.Context, _ pgx.Tx, r eventstore.Record) error {
				e := r.Event.(user.Erased)
				for _, subject := range e.Subjects() {
					if err := keys.Erase(ctx, subject); err != nil {
						return fmt.Errorf("erasure of %s: %w", e.UserID, err)
					}
				}
				return nil
			},
		},
	}
}
