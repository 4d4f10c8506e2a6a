// Package assistant writes assistant replies in chats: it streams a reply from the configured model,
// hands each piece to live subscribers at once (an in-process broker), persists the reply as events
// in coarse chunks, runs the model's search tool over what the requesting user may read, and fails
// replies whose writer died.
package assistant

import (
	"sync"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain/chat"
)

// subscriberBuffer is how many deltas a live subscriber may fall behind before it is dropped (it
// subscribes again and resumes from the snapshot, so nothing is lost).
const subscriberBuffer = 1024

// broker hands the deltas of the replies this process writes to live subscribers. Per chat it keeps
// the deltas of the reply being written (the snapshot a new subscriber starts from).
type broker struct {
	mu    sync.Mutex
	chats map[uuid.UUID]*liveChat
}

type liveChat struct {
	reply  uuid.UUID
	deltas []chat.Delta
	subs   map[*subscriber]struct{}
}

type subscriber struct {
	ch     chan chat.Delta
	closed bool
}

func newBroker() *broker { return &broker{chats: map[uuid.UUID]*liveChat{}} }

func (b *broker) chat(id uuid.UUID) *liveChat {
	lc, ok := b.chats[id]
	if !ok {
		lc = &liveChat{subs: map[*subscriber]struct{}{}}
		b.chats[id] = lc
	}
	return lc
}

// gc forgets a chat with neither a reply nor subscribers.
func (b *broker) gc(id uuid.UUID, lc *liveChat) {
	if lc.reply == uuid.Nil && len(lc.subs) == 0 {
		delete(b.chats, id)
	}
}

// subscribe returns the deltas of chatID's reply being written and a channel of those to come.
func (b *broker) subscribe(chatID uuid.UUID) ([]chat.Delta, <-chan chat.Delta, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lc := b.chat(chatID)
	s := &subscriber{ch: make(chan chat.Delta, subscriberBuffer)}
	lc.subs[s] = struct{}{}
	snapshot := append([]chat.Delta(nil), lc.deltas...)
	var once sync.Once
	return snapshot, s.ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if _, ok := lc.subs[s]; ok {
				delete(lc.subs, s)
				b.closeSub(s)
			}
			if b.chats[chatID] == lc {
				b.gc(chatID, lc)
			}
		})
	}
}

func (b *broker) closeSub(s *subscriber) {
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// begin starts keeping the deltas of reply.
func (b *broker) begin(chatID, reply uuid.UUID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lc := b.chat(chatID)
	lc.reply, lc.deltas = reply, nil
}

// publish hands d to every subscriber; one that is too far behind is dropped.
func (b *broker) publish(chatID uuid.UUID, d chat.Delta) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lc, ok := b.chats[chatID]
	if !ok || lc.reply != d.MessageID {
		return
	}
	lc.deltas = append(lc.deltas, d)
	for s := range lc.subs {
		select {
		case s.ch <- d:
		default:
			delete(lc.subs, s)
			b.closeSub(s)
		}
	}
}

// end forgets the deltas of reply (its chunks are persisted by now).
func (b *broker) end(chatID, reply uuid.UUID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lc, ok := b.chats[chatID]; ok && lc.reply == reply {
		lc.reply, lc.deltas = uuid.Nil, nil
		b.gc(chatID, lc)
	}
}
