package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gocloud.dev/blob"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/chat"
	"github.com/atlas-workspace/atlas/domain/file"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// Commands is what the API needs of the command side.
type Commands interface {
	Register(ctx context.Context, cc commands.Context, email, name, password string) (commands.Registration, error)
	Login(ctx context.Context, email, password string) (commands.Registration, error)
	Logout(ctx context.Context, token string) error
	Authenticate(ctx context.Context, token string) (uuid.UUID, error)
	EraseUser(ctx context.Context, cc commands.Context, password string) (commands.ErasureResult, error)
	User(ctx context.Context, id uuid.UUID) (user.State, error)
	Space(ctx context.Context, id uuid.UUID, maxVersion int64) (space.State, error)
	CreateDescribedSpace(ctx context.Context, cc commands.Context, orgID *uuid.UUID, name, slug, visibility, description string) (commands.SpaceResult, error)
	SpaceFor(ctx context.Context, viewer, id uuid.UUID) (space.State, string, error)
	AddSpaceMember(ctx context.Context, cc commands.Context, id, userID uuid.UUID, role string) (commands.SpaceResult, error)
	ChangeSpaceMember(ctx context.Context, cc commands.Context, id, userID uuid.UUID, role string) (commands.SpaceResult, error)
	RemoveSpaceMember(ctx context.Context, cc commands.Context, id, userID uuid.UUID) (commands.SpaceResult, error)
	UpdateSpace(ctx context.Context, cc commands.Context, id uuid.UUID, u space.Update) (commands.SpaceResult, error)
	DeleteSpace(ctx context.Context, cc commands.Context, id uuid.UUID, expectedVersion int64) (commands.SpaceResult, error)
	CreateAPIKey(ctx context.Context, cc commands.Context, name string) (commands.APIKeyResult, error)
	RevokeAPIKey(ctx context.Context, cc commands.Context, id uuid.UUID) (commands.APIKeyResult, error)
	CreateOrg(ctx context.Context, cc commands.Context, name, slug string) (commands.OrgResult, error)
	UpdateOrg(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64, name, slug *string) (commands.OrgResult, error)
	DeleteOrg(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64) (commands.OrgResult, error)
	Invite(ctx context.Context, cc commands.Context, orgID uuid.UUID, email, role string) (commands.Invitation, error)
	RevokeInvitation(ctx context.Context, cc commands.Context, orgID, invitationID uuid.UUID) (commands.OrgResult, error)
	AcceptInvitation(ctx context.Context, cc commands.Context, token string) (commands.OrgResult, error)
	ChangeMemberRole(ctx context.Context, cc commands.Context, orgID, userID uuid.UUID, role string) (commands.OrgResult, error)
	RemoveMember(ctx context.Context, cc commands.Context, orgID, userID uuid.UUID) (commands.OrgResult, error)
	CreateNote(ctx context.Context, cc commands.Context, spaceID uuid.UUID, title, body string) (commands.NoteResult, error)
	EditNote(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64, title, body *string) (commands.NoteResult, error)
	DeleteNote(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64) (commands.NoteResult, error)
	NoteFor(ctx context.Context, viewer, id uuid.UUID) (note.State, note.Access, error)
	Org(ctx context.Context, id uuid.UUID) (org.State, error)
	CanUpload(ctx context.Context, actor, spaceID uuid.UUID) error
	CanWriteFile(ctx context.Context, actor, id uuid.UUID) error
	StoreContent(ctx context.Context, name string, r io.Reader, limit int64) (file.Content, error)
	DiscardContent(ctx context.Context, key string) error
	OpenContent(ctx context.Context, key string, offset, length int64) (*blob.Reader, error)
	UploadFile(ctx context.Context, cc commands.Context, spaceID uuid.UUID, folderID *uuid.UUID, name, visibility string, content file.Content) (commands.FileResult, error)
	AddFileVersion(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64, content file.Content) (commands.FileResult, error)
	UpdateFile(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64, name *string, folderID **uuid.UUID, visibility *string) (commands.FileResult, error)
	DeleteFile(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64) (commands.FileResult, error)
	FileFor(ctx context.Context, viewer, id uuid.UUID) (file.State, error)
	CreateFileLink(ctx context.Context, cc commands.Context, id uuid.UUID, expiresAt *time.Time) (commands.LinkResult, error)
	RevokeFileLink(ctx context.Context, cc commands.Context, id, linkID uuid.UUID) (commands.FileResult, error)
	PublicFile(ctx context.Context, token string) (file.State, file.Content, error)
	CreateFolder(ctx context.Context, cc commands.Context, spaceID uuid.UUID, parentID *uuid.UUID, name string) (commands.FolderResult, error)
	UpdateFolder(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64, name *string, parentID **uuid.UUID) (commands.FolderResult, error)
	DeleteFolder(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64) (commands.FolderResult, error)
	CreateChat(ctx context.Context, cc commands.Context, spaceID uuid.UUID, title string) (commands.ChatResult, error)
	RenameChat(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64, title string) (commands.ChatResult, error)
	DeleteChat(ctx context.Context, cc commands.Context, id uuid.UUID, expected int64) (commands.ChatResult, error)
	ChatFor(ctx context.Context, viewer, id uuid.UUID) (chat.State, chat.Access, error)
	Chat(ctx context.Context, id uuid.UUID, maxVersion int64) (chat.State, uuid.UUID, error)
	PostMessage(ctx context.Context, cc commands.Context, chatID uuid.UUID, expected int64, role string, parts []chat.Part, model string) (commands.PostResult, error)
	CancelReply(ctx context.Context, cc commands.Context, chatID, messageID uuid.UUID) (commands.ChatResult, error)
}

// Queries is what the API needs of the read models.
type Queries interface {
	User(ctx context.Context, id uuid.UUID) (projections.UserView, error)
	Space(ctx context.Context, viewer, id uuid.UUID) (projections.SpaceView, error)
	SpacesOf(ctx context.Context, viewer uuid.UUID, orgID *uuid.UUID, cursor string, limit int) (projections.SpacePage, error)
	APIKeysOf(ctx context.Context, user uuid.UUID, cursor string, limit int) (projections.APIKeyPage, error)
	Org(ctx context.Context, viewer, id uuid.UUID) (projections.OrgView, error)
	OrgsOf(ctx context.Context, user uuid.UUID) ([]projections.OrgView, error)
	Members(ctx context.Context, viewer, orgID uuid.UUID) ([]projections.MemberView, error)
	Invitations(ctx context.Context, viewer, orgID uuid.UUID, now time.Time) ([]projections.InvitationView, error)
	Memberships(ctx context.Context, user uuid.UUID) ([]projections.Membership, error)
	SpaceMembers(ctx context.Context, viewer, id uuid.UUID) ([]projections.SpaceMemberView, error)
	Note(ctx context.Context, viewer, id uuid.UUID) (projections.NoteView, error)
	NotesOf(ctx context.Context, viewer, spaceID uuid.UUID, cursor string, limit int) (projections.NotePage, error)
	NoteRevisions(ctx context.Context, viewer, noteID uuid.UUID, cursor string, limit int) (projections.NoteRevisionPage, error)
	File(ctx context.Context, viewer, id uuid.UUID) (projections.FileView, error)
	FileContent(ctx context.Context, viewer, id uuid.UUID, n int64) (projections.FileView, projections.FileVersionView, error)
	FileVersions(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) (projections.FileVersionPage, error)
	FilesOf(ctx context.Context, viewer, spaceID uuid.UUID, filter projections.FileFilter, cursor string, limit int) (projections.FilePage, error)
	Folder(ctx context.Context, viewer, id uuid.UUID) (projections.FolderView, error)
	FoldersOf(ctx context.Context, viewer, spaceID uuid.UUID, parent *uuid.UUID, cursor string, limit int) (projections.FolderPage, error)
	Chat(ctx context.Context, viewer, id uuid.UUID) (projections.ChatView, error)
	ChatsOf(ctx context.Context, viewer, spaceID uuid.UUID, cursor string, limit int) (projections.ChatPage, error)
	ChatMessages(ctx context.Context, viewer, chatID uuid.UUID, cursor string, limit int) (projections.ChatMessagePage, error)
	ChatMessage(ctx context.Context, viewer, chatID, id uuid.UUID) (projections.ChatMessageView, error)
}

// Consistency waits for read models to reach a position.
type Consistency interface {
	WaitFor(ctx context.Context, pos eventstore.Position, projectors ...string) error
}

// Log reads event streams for history endpoints.
type Log interface {
	ReadStream(ctx context.Context, streamID uuid.UUID, maxVersion int64) ([]eventstore.Record, error)
	ReadStreamAfter(ctx context.Context, streamID uuid.UUID, afterVersion int64, limit int) ([]eventstore.Record, error)
}

// Check is a health check; nil means healthy.
type Check func(ctx context.Context) error

// Deps are the server's collaborators.
type Deps struct {
	Commands        Commands
	Queries         Queries
	Consistency     Consistency
	Log             Log
	Logger          *slog.Logger
	Metrics         prometheus.Gatherer
	Registerer      prometheus.Registerer
	Health          map[string]Check // by name: "db", "blob", ...
	ConsistencyWait time.Duration    // how long a query waits for a consistency token (default 5 s)
	RateLimiter     RateLimiter      // nil: no rate limits
	// TrustProxyHeaders takes the client IP from X-Forwarded-For / X-Real-IP (only behind a proxy
	// that sets them); otherwise it is the connection's address.
	TrustProxyHeaders bool
	MaxUpload         int64     // largest file content accepted, in bytes (default 100 MiB)
	Search            Searcher  // nil: search answers 503
	Assistant         Assistant // nil: chats have no assistant
	Tasks             Tasks     // nil: task routes answer 503
	// Signal wakes live streams (SSE) when events may have been appended, here or, through NOTIFY, in
	// another process. nil: streams poll every FollowPoll.
	Signal *eventstore.Signal
	// FollowPoll is the fallback poll of a live stream between wake-ups (default 2 s).
	FollowPoll time.Duration
	// Audit verifies the log and reads a tenant's events (the audit routes).
	Audit Auditing
	// Roles are the platform roles checked on the admin and audit routes (nil: nobody holds one).
	Roles PlatformRoles
	// Projections is the projection runtime administered by the admin routes.
	Projections ProjectionAdmin
}

// Server is the HTTP API.
type Server struct {
	deps    Deps
	echo    *echo.Echo
	metrics *httpMetrics

	// streams ends when the server shuts down: live streams (SSE) then end, so that a graceful
	// shutdown does not wait for clients that would stay connected forever.
	streams     context.Context
	stopStreams context.CancelFunc

	verifying chan struct{} // one log verification at a time
}

// New builds the API and its routes.
func New(d Deps) *Server {
	if d.MaxUpload <= 0 {
		d.MaxUpload = 100 << 20
	}
	if d.FollowPoll <= 0 {
		d.FollowPoll = 2 * time.Second
	}
	if d.ConsistencyWait <= 0 {
		d.ConsistencyWait = 5 * time.Second
	}
	if d.Registerer == nil {
		reg := prometheus.NewRegistry()
		d.Registerer = reg
		if d.Metrics == nil {
			d.Metrics = reg
		}
	}
	if d.Metrics == nil {
		d.Metrics = prometheus.NewRegistry()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{deps: d, echo: e, metrics: newHTTPMetrics(d.Registerer), verifying: make(chan struct{}, 1)}
	s.streams, s.stopStreams = context.WithCancel(context.Background())
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = echo.ExtractIPDirect()
	if d.TrustProxyHeaders {
		e.IPExtractor = echo.ExtractIPFromXFFHeader()
	}
	e.Use(s.requestContext, s.recoverer, s.limitByIP)

	e.GET("/api/health", s.health(""))
	e.GET("/api/health/:check", func(c echo.Context) error { return s.health(c.Param("check"))(c) })
	e.GET("/api/v1/openapi.json", serveOpenAPI)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{})))

	v1 := e.Group("/api/v1")
	v1.POST("/auth/register", s.register)
	v1.POST("/auth/login", s.login)

	// Authentication is per route (not a group middleware), so an unknown path is 404 for everyone.
	auth := s.authenticate
	v1.POST("/auth/logout", s.logout, auth)
	v1.GET("/me", s.me, auth)
	v1.DELETE("/me", s.eraseMe, auth)
	v1.POST("/me/api-keys", s.createAPIKey, auth)
	v1.GET("/me/api-keys", s.listAPIKeys, auth)
	v1.DELETE("/me/api-keys/:key_id", s.revokeAPIKey, auth)
	v1.POST("/spaces", s.createSpace, auth)
	v1.GET("/spaces", s.listSpaces, auth)
	v1.GET("/spaces/:space_id", s.getSpace, auth)
	v1.PATCH("/spaces/:space_id", s.updateSpace, auth)
	v1.DELETE("/spaces/:space_id", s.deleteSpace, auth)
	v1.GET("/spaces/:space_id/history", s.spaceHistory, auth)
	v1.GET("/spaces/:space_id/members", s.listSpaceMembers, auth)
	v1.POST("/spaces/:space_id/members", s.addSpaceMember, auth)
	v1.PATCH("/spaces/:space_id/members/:user_id", s.changeSpaceMember, auth)
	v1.DELETE("/spaces/:space_id/members/:user_id", s.removeSpaceMember, auth)
	v1.POST("/spaces/:space_id/notes", s.createNote, auth)
	v1.GET("/spaces/:space_id/notes", s.listNotes, auth)
	v1.GET("/notes/:note_id", s.getNote, auth)
	v1.PATCH("/notes/:note_id", s.updateNote, auth)
	v1.DELETE("/notes/:note_id", s.deleteNote, auth)
	v1.GET("/notes/:note_id/revisions", s.listNoteRevisions, auth)
	v1.GET("/notes/:note_id/history", s.noteHistory, auth)
	v1.POST("/spaces/:space_id/chats", s.createChat, auth)
	v1.GET("/spaces/:space_id/chats", s.listChats, auth)
	v1.GET("/chats/:chat_id", s.getChat, auth)
	v1.PATCH("/chats/:chat_id", s.updateChat, auth)
	v1.DELETE("/chats/:chat_id", s.deleteChat, auth)
	v1.GET("/chats/:chat_id/history", s.chatHistory, auth)
	v1.POST("/chats/:chat_id/messages", s.postChatMessage, auth)
	v1.GET("/chats/:chat_id/messages", s.listChatMessages, auth)
	v1.GET("/chats/:chat_id/messages/:message_id", s.getChatMessage, auth)
	v1.POST("/chats/:chat_id/messages/:message_id/cancel", s.cancelChatReply, auth)
	v1.GET("/chats/:chat_id/stream", s.streamChat, auth)
	v1.POST("/spaces/:space_id/folders", s.createFolder, auth)
	v1.GET("/spaces/:space_id/folders", s.listFolders, auth)
	v1.GET("/folders/:folder_id", s.getFolder, auth)
	v1.PATCH("/folders/:folder_id", s.updateFolder, auth)
	v1.DELETE("/folders/:folder_id", s.deleteFolder, auth)
	v1.POST("/spaces/:space_id/files", s.uploadFile, auth)
	v1.GET("/spaces/:space_id/files", s.listFiles, auth)
	v1.GET("/files/:file_id", s.getFile, auth)
	v1.PATCH("/files/:file_id", s.updateFile, auth)
	v1.DELETE("/files/:file_id", s.deleteFile, auth)
	v1.GET("/files/:file_id/content", s.getFileContent, auth)
	v1.HEAD("/files/:file_id/content", s.getFileContent, auth)
	v1.PUT("/files/:file_id/content", s.putFileContent, auth)
	v1.GET("/files/:file_id/versions", s.listFileVersions, auth)
	v1.GET("/files/:file_id/versions/:n/content", s.getFileContent, auth)
	v1.HEAD("/files/:file_id/versions/:n/content", s.getFileContent, auth)
	v1.GET("/files/:file_id/history", s.fileHistory, auth)
	v1.POST("/files/:file_id/links", s.createFileLink, auth)
	v1.GET("/files/:file_id/links", s.listFileLinks, auth)
	v1.DELETE("/files/:file_id/links/:link_id", s.revokeFileLink, auth)
	v1.GET("/public/files/:token", s.getPublicFile, s.limitPublicLinks)
	v1.HEAD("/public/files/:token", s.getPublicFile, s.limitPublicLinks)
	v1.GET("/search", s.search, auth)
	v1.POST("/spaces/:space_id/tasks", s.createTask, auth)
	v1.GET("/spaces/:space_id/tasks", s.listTasks, auth)
	v1.GET("/tasks/:task_id", s.getTask, auth)
	v1.POST("/tasks/:task_id/cancel", s.cancelTask, auth)
	v1.POST("/tasks/:task_id/retry", s.retryTask, auth)
	v1.GET("/tasks/:task_id/history", s.taskHistory, auth)
	v1.GET("/tasks/:task_id/stream", s.streamTask, auth)
	v1.GET("/tasks/:task_id/artifact", s.getTaskArtifact, auth)
	v1.HEAD("/tasks/:task_id/artifact", s.getTaskArtifact, auth)
	v1.POST("/orgs", s.createOrg, auth)
	v1.GET("/orgs", s.listOrgs, auth)
	v1.GET("/orgs/:org_id", s.getOrg, auth)
	v1.PATCH("/orgs/:org_id", s.updateOrg, auth)
	v1.DELETE("/orgs/:org_id", s.deleteOrg, auth)
	v1.GET("/orgs/:org_id/members", s.listMembers, auth)
	v1.GET("/orgs/:org_id/history", s.orgHistory, auth)
	v1.PATCH("/orgs/:org_id/members/:user_id", s.changeMember, auth)
	v1.DELETE("/orgs/:org_id/members/:user_id", s.removeMember, auth)
	v1.POST("/orgs/:org_id/invitations", s.invite, auth)
	v1.GET("/orgs/:org_id/invitations", s.listInvitations, auth)
	v1.DELETE("/orgs/:org_id/invitations/:invitation_id", s.revokeInvitation, auth)
	v1.POST("/invitations/:token/accept", s.acceptInvitation, auth)
	v1.GET("/orgs/:org_id/audit", s.orgAudit, auth)
	v1.GET("/audit/verify", s.verifyLog, auth, s.requireRole(auditRoles...))
	v1.GET("/admin/projections", s.listProjections, auth, s.requireRole(adminRoles...))
	v1.POST("/admin/projections/:name/rebuild", s.rebuildProjection, auth, s.requireRole(adminRoles...))
	return s
}

// Handler returns the http.Handler of the API.
func (s *Server) Handler() http.Handler { return s.echo }

// Routes lists the registered "METHOD path" pairs (Echo syntax), for the OpenAPI completeness test.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.echo.Routes() {
		if strings.HasPrefix(r.Path, "/api/") || r.Path == "/metrics" {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestContext gives each request an id (the caller's X-Request-ID when well formed), a correlation
// id, a logger carrying both, a metrics observation and one JSON log line.
func (s *Server) requestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		req := c.Request()
		rid := req.Header.Get("X-Request-ID")
		if !requestIDRE.MatchString(rid) {
			rid = uuid.Must(uuid.NewV7()).String()
		}
		cid := req.Header.Get("X-Correlation-ID")
		if !requestIDRE.MatchString(cid) {
			cid = rid
		}
		c.Response().Header().Set("X-Request-ID", rid)
		log := s.deps.Logger.With("request_id", rid, "correlation_id", cid)
		c.Set("logger", log)
		c.Set("request_id", rid)
		c.Set("correlation_id", cid)
		err := next(c)
		if err != nil {
			s.errorHandler(err, c)
		}
		status := c.Response().Status
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		s.metrics.observe(req.Method, route, status, err, time.Since(start))
		attrs := []any{"method", req.Method, "path", req.URL.Path, "route", route, "status", status,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000, "bytes", c.Response().Size}
		if u, ok := c.Get("user_id").(uuid.UUID); ok {
			attrs = append(attrs, "user_id", u.String())
		}
		log.Info("request", attrs...)
		return nil
	}
}

func (s *Server) recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = domain.Errorf(domain.CodeInternal, "panic: %v", r)
			}
		}()
		return next(c)
	}
}

func logger(c echo.Context) *slog.Logger {
	if l, ok := c.Get("logger").(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// authenticate requires a Bearer token and puts the user id in the context.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		token, ok := strings.CutPrefix(h, "Bearer ")
		token = strings.TrimSpace(token)
		if !ok || token == "" {
			return domain.Errorf(domain.CodeUnauthenticated, "an Authorization: Bearer <token> header is required")
		}
		id, err := s.deps.Commands.Authenticate(c.Request().Context(), token)
		if err != nil {
			return err
		}
		c.Set("user_id", id)
		c.Set("token", token)
		if err := s.limit(c, "user:"+id.String(), LimitPerUser); err != nil {
			return err
		}
		return next(c)
	}
}

func userID(c echo.Context) uuid.UUID {
	id, _ := c.Get("user_id").(uuid.UUID)
	return id
}

// commandContext collects who issues the command and its idempotency key.
func commandContext(c echo.Context, body []byte) (commands.Context, error) {
	cc := commands.Context{Actor: userID(c)}
	cc.RequestID, _ = c.Get("request_id").(string)
	cc.CorrelationID, _ = c.Get("correlation_id").(string)
	if k := c.Request().Header.Get("Idempotency-Key"); k != "" {
		if len(k) > 255 {
			return cc, domain.Errorf(domain.CodeBadRequest, "Idempotency-Key must be at most 255 characters")
		}
		cc.IdempotencyKey = k
		cc.RequestHash = eventstore.HashRequest([]byte(c.Request().Method), []byte(c.Request().URL.Path),
			[]byte(c.Request().Header.Get("If-Match")), body)
	}
	return cc, nil
}

// consistent waits, when the request carries a consistency token, until the named read models have
// processed it: 400 for a malformed token, 503 not_ready after ConsistencyWait.
func (s *Server) consistent(c echo.Context, projectors ...string) error {
	token := c.Request().Header.Get("X-Consistency-Token")
	if token == "" {
		token = c.QueryParam("consistent_with")
	}
	if token == "" {
		return nil
	}
	pos, err := eventstore.ParsePosition(token)
	if err != nil {
		return domain.Errorf(domain.CodeBadRequest, "%s", err.Error())
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.deps.ConsistencyWait)
	defer cancel()
	if err := s.deps.Consistency.WaitFor(ctx, pos, projectors...); err != nil {
		if ctx.Err() != nil {
			return domain.Errorf(domain.CodeNotReady, "the read models have not reached position %s yet; retry shortly", token)
		}
		return err
	}
	return nil
}

// withPosition sets the consistency token header and returns it for the body.
func withPosition(c echo.Context, pos eventstore.Position) string {
	t := pos.String()
	c.Response().Header().Set("X-Consistency-Token", t)
	return t
}

func (s *Server) health(check string) echo.HandlerFunc {
	return func(c echo.Context) error {
		if check == "" {
			return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
		}
		fn, ok := s.deps.Health[check]
		if !ok {
			return domain.Errorf(domain.CodeNotFound, "no health check %q", check)
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		if err := fn(ctx); err != nil {
			logger(c).Warn("health check failed", "check", check, "error", err)
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}

type httpMetrics struct {
	requests *prometheus.HistogramVec
	commands *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newHTTPMetrics(r prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "atlas_http_request_duration_seconds",
			Help:    "HTTP request latency by method, route and status; commands are the POST/PATCH/PUT/DELETE routes.",
			Buckets: latencyBuckets,
		}, []string{"method", "route", "status"}),
		commands: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "atlas_command_duration_seconds",
			Help:    "Command latency (load, decide, append) by command route and outcome (ok or the error code).",
			Buckets: latencyBuckets,
		}, []string{"command", "outcome"}),
	}
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "atlas_http_requests_in_flight", Help: "HTTP requests being handled now."})
	r.MustRegister(m.requests, m.commands, m.inFlight)
	return m
}

func (m *httpMetrics) observe(method, route string, status int, err error, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Observe(d.Seconds())
	if method != http.MethodGet && method != http.MethodHead && route != "unmatched" {
		outcome := "ok"
		if err != nil {
			outcome = string(domain.ErrorCode(err))
		}
		m.commands.WithLabelValues(method+" "+route, outcome).Observe(d.Seconds())
	}
}
