package assistant

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/ai/llm"
	"github.com/atlas-workspace/atlas/domain/chat"
)

func TestBrokerSnapshotsLiveDeltasAndDropsLaggards(t *testing.T) {
	b := newBroker()
	chatID, reply := uuid.New(), uuid.New()
	b.begin(chatID, reply)
	b.publish(chatID, chat.Delta{MessageID: reply, Offset: 0, Text: "He"})
	snap, live, stop := b.subscribe(chatID)
	defer stop()
	if len(snap) != 1 || snap[0].Text != "He" {
		t.Fatalf("snapshot = %v", snap)
	}
	b.publish(chatID, chat.Delta{MessageID: reply, Offset: 2, Text: "llo"})
	b.publish(chatID, chat.Delta{MessageID: uuid.New(), Offset: 0, Text: "other reply"}) // not the reply being written
	if d := <-live; d.Text != "llo" || d.Offset != 2 {
		t.Fatalf("live delta = %+v", d)
	}
	select {
	case d := <-live:
		t.Fatalf("a delta of another reply was published: %+v", d)
	default:
	}
	// A subscriber that falls behind is dropped: its channel closes, and a new subscription's
	// snapshot has everything.
	for i := 0; i < subscriberBuffer+1; i++ {
		b.publish(chatID, chat.Delta{MessageID: reply, Offset: int64(5 + i), Text: "x"})
	}
	n := 0
	for range live {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("the laggard got %d deltas before its channel closed", n)
	}
	snap2, _, stop2 := b.subscribe(chatID)
	defer stop2()
	if len(snap2) != subscriberBuffer+3 {
		t.Fatalf("a new snapshot has %d deltas", len(snap2))
	}
	b.end(chatID, reply)
	snap3, _, stop3 := b.subscribe(chatID)
	stop3()
	if len(snap3) != 0 {
		t.Fatalf("after the reply ended the snapshot has %d deltas", len(snap3))
	}
	stop2()
	stop()
	if len(b.chats) != 0 {
		t.Fatalf("the broker keeps %d idle chats", len(b.chats))
	}
}

func TestFailureReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{llm.ErrStalled, "stalled: "},
		{&llm.ProviderError{Status: 500, Message: "boom"}, "provider error: model provider answered 500: boom"},
		{errors.New("connection refused"), "error: the reply could not be written"},
	} {
		if got := failureReason(tc.err); !strings.HasPrefix(got, tc.want) {
			t.Errorf("failureReason(%v) = %q, want prefix %q", tc.err, got, tc.want)
		}
	}
}
