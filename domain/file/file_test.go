package file_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/file"
)

var (
	now      = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	uploader = uuid.MustParse("00000000-0000-7000-8000-000000000001")
	other    = uuid.MustParse("00000000-0000-7000-8000-000000000002")
	fileID   = uuid.MustParse("00000000-0000-7000-8000-000000000003")
	spaceID  = uuid.MustParse("00000000-0000-7000-8000-000000000004")
)

func writer(id uuid.UUID) file.Viewer {
	return file.Viewer{ID: id, SpaceLive: true, ReadSpace: true, WriteSpace: true}
}

func uploaded(vis string) file.State {
	return file.Evolve(file.State{}, file.Uploaded{FileID: fileID, SpaceID: spaceID, Name: "a.txt", Visibility: vis,
		Content: file.Content{Version: 1, BlobKey: "blobs/1", UploadedBy: uploader, UploadedAt: now}})
}

func TestCanRead(t *testing.T) {
	reader := file.Viewer{ID: other, SpaceLive: true, ReadSpace: true}
	orgMember := file.Viewer{ID: other, SpaceLive: true, OrgMember: true}
	stranger := file.Viewer{ID: other, SpaceLive: true}
	for _, tc := range []struct {
		vis  string
		v    file.Viewer
		want bool
	}{
		{file.Private, writer(uploader), true}, {file.Private, reader, false}, {file.Private, file.Viewer{ID: uploader, SpaceLive: true}, false},
		{file.Space, reader, true}, {file.Space, orgMember, false}, {file.Space, stranger, false},
		{file.Organization, orgMember, true}, {file.Organization, reader, true}, {file.Organization, stranger, false},
		{file.Public, stranger, true}, {file.Public, file.Viewer{ID: other}, false}, // a deleted space: nothing
	} {
		if got := uploaded(tc.vis).CanRead(tc.v); got != tc.want {
			t.Errorf("%s file, viewer %+v: CanRead %v, want %v", tc.vis, tc.v, got, tc.want)
		}
	}
	if uploaded(file.Public).CanWrite(stranger) {
		t.Error("a stranger writes a public file")
	}
}

func TestDecide(t *testing.T) {
	folder := uuid.New()
	root := (*uuid.UUID)(nil)
	tests := []struct {
		name  string
		state file.State
		cmd   any
		code  domain.Code
		n     int
	}{
		{"upload", file.State{}, file.Upload{FileID: fileID, SpaceID: spaceID, Viewer: writer(uploader), Name: "a.txt", Visibility: file.Space}, "", 1},
		{"upload as a reader", file.State{}, file.Upload{FileID: fileID, Viewer: file.Viewer{SpaceLive: true, ReadSpace: true}, Name: "a", Visibility: file.Space}, domain.CodeForbidden, 0},
		{"upload to a space one cannot read", file.State{}, file.Upload{FileID: fileID, Viewer: file.Viewer{SpaceLive: true}, Name: "a", Visibility: file.Space}, domain.CodeNotFound, 0},
		{"upload into a missing folder", file.State{}, file.Upload{FileID: fileID, FolderID: &folder, Viewer: writer(uploader), Name: "a", Visibility: file.Space}, domain.CodeNotFound, 0},
		{"slash in the name", file.State{}, file.Upload{FileID: fileID, Viewer: writer(uploader), Name: "a/b", Visibility: file.Space}, domain.CodeInvalid, 0},
		{"control character", file.State{}, file.Upload{FileID: fileID, Viewer: writer(uploader), Name: "a\tb", Visibility: file.Space}, domain.CodeInvalid, 0},
		{"256 characters", file.State{}, file.Upload{FileID: fileID, Viewer: writer(uploader), Name: strings.Repeat("é", 256), Visibility: file.Space}, domain.CodeInvalid, 0},
		{"organization in a personal space", file.State{}, file.Upload{FileID: fileID, Viewer: file.Viewer{ID: uploader, SpaceLive: true, ReadSpace: true, WriteSpace: true, SpaceIsPersonal: true}, Name: "a", Visibility: file.Organization}, domain.CodeInvalid, 0},
		{"new version", uploaded(file.Space), file.AddVersion{Viewer: writer(other), Content: file.Content{BlobKey: "blobs/2"}}, "", 1},
		{"stale version", uploaded(file.Space), file.AddVersion{Viewer: writer(other), ExpectedVersion: 2}, domain.CodeVersionConflict, 0},
		{"private file of another", uploaded(file.Private), file.Update{Viewer: writer(other), Name: ptr("b")}, domain.CodeNotFound, 0},
		{"move to the root where it is", uploaded(file.Space), file.Update{Viewer: writer(uploader), FolderID: &root}, "", 0},
		{"move into a folder", uploaded(file.Space), file.Update{Viewer: writer(uploader), FolderID: ptr(&folder), FolderOK: true}, "", 1},
		{"rename and publish", uploaded(file.Space), file.Update{Viewer: writer(uploader), Name: ptr("b"), Visibility: ptr(file.Public)}, "", 2},
		{"delete", uploaded(file.Space), file.Delete{Viewer: writer(uploader)}, "", 1},
		{"link expiring in the past", uploaded(file.Public), file.CreateLink{Viewer: writer(uploader), ExpiresAt: ptr(now.Add(-time.Second))}, domain.CodeInvalid, 0},
		{"revoke an unknown link", uploaded(file.Public), file.RevokeLink{Viewer: writer(uploader), LinkID: uuid.New()}, domain.CodeNotFound, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := file.Decide(tt.state, tt.cmd, now)
			if got := domain.ErrorCode(err); got != tt.code {
				t.Fatalf("code %q (%v), want %q", got, err, tt.code)
			}
			if len(evs) != tt.n {
				t.Fatalf("%d events, want %d: %v", len(evs), tt.n, evs)
			}
		})
	}
}

func TestEvolveVersionsLinksAndDeletion(t *testing.T) {
	s := uploaded(file.Public)
	s = file.Evolve(s, file.VersionAdded{FileID: fileID, Content: file.Content{Version: 2, BlobKey: "blobs/2"}})
	linkID := uuid.New()
	exp := now.Add(time.Hour)
	s = file.Evolve(s, file.LinkCreated{FileID: fileID, LinkID: linkID, TokenHash: "h", ExpiresAt: &exp, CreatedAt: now})
	if s.Current().BlobKey != "blobs/2" || len(s.Versions) != 2 || s.Version != 3 {
		t.Fatalf("versions: %+v", s)
	}
	l, ok := s.Link("h")
	if !ok || !l.Live(now) || l.Live(exp) {
		t.Fatalf("link: %+v", l)
	}
	s = file.Evolve(s, file.LinkRevoked{FileID: fileID, LinkID: linkID, RevokedAt: now})
	if l, _ := s.Link("h"); l.Live(now) {
		t.Fatal("a revoked link is live")
	}
	evs, err := file.Decide(s, file.Delete{Viewer: writer(uploader)}, now)
	if err != nil || len(evs[0].(file.Deleted).BlobKeys) != 2 {
		t.Fatalf("deletion names every version's content: %v %v", evs, err)
	}
	if file.Evolve(s, evs[0]).Exists() {
		t.Fatal("a deleted file exists")
	}
}

func TestDecideFolder(t *testing.T) {
	f := file.EvolveFolder(file.Folder{}, file.FolderCreated{FolderID: uuid.New(), SpaceID: spaceID, Name: "F", CreatedAt: now})
	p := uuid.New()
	for _, tc := range []struct {
		name string
		cmd  any
		code domain.Code
	}{
		{"rename", file.UpdateFolder{Viewer: writer(uploader), Name: ptr("G")}, ""},
		{"move into itself", file.UpdateFolder{Viewer: writer(uploader), ParentID: ptr(&p), ParentOK: true, Cycle: true}, domain.CodeInvalid},
		{"move into a missing folder", file.UpdateFolder{Viewer: writer(uploader), ParentID: ptr(&p)}, domain.CodeNotFound},
		{"rename as a reader", file.UpdateFolder{Viewer: file.Viewer{SpaceLive: true, ReadSpace: true}, Name: ptr("G")}, domain.CodeForbidden},
		{"delete from a deleted space", file.DeleteFolder{Viewer: file.Viewer{ReadSpace: true, WriteSpace: true}}, domain.CodeNotFound},
	} {
		if _, err := file.DecideFolder(f, tc.cmd, now); domain.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.code)
		}
	}
}

func ptr[T any](v T) *T { return &v }
