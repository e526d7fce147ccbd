package index

import "sync"

// Subscription tells one connected agent that its authorized set or the
// bundle changed. Notifications coalesce: C has a buffer of one and a send
// never blocks, so a slow reader just sees the latest revision.
type Subscription struct {
	agentID string
	x       *Index
	c       chan struct{}

	mu  sync.Mutex
	rev int64
}

// Subscribe registers agentID for change notifications. The caller must call
// Close when the agent disconnects. The first notification is already pending
// so a new subscriber syncs at once.
func (x *Index) Subscribe(agentID string) *Subscription {
	s := &Subscription{agentID: agentID, x: x, c: make(chan struct{}, 1)}
	x.mu.Lock()
	x.subs[s] = struct{}{}
	s.notify(x.revision)
	x.mu.Unlock()
	return s
}

// C is signalled when the agent's authorized set or a bundle changed.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Revision is the index revision of the last notification.
func (s *Subscription) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Close unregisters the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.x.mu.Lock()
	delete(s.x.subs, s)
	s.x.mu.Unlock()
}

// Subscribers returns the number of open subscriptions.
func (x *Index) Subscribers() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.subs)
}

// CloseAgent drops every subscription of agentID (eviction or ban) and
// returns how many were dropped; their channels are closed so streams end.
func (x *Index) CloseAgent(agentID string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for s := range x.subs {
		if s.agentID == agentID {
			delete(x.subs, s)
			close(s.c)
			n++
		}
	}
	return n
}

func (s *Subscription) notify(rev int64) {
	s.mu.Lock()
	s.rev = rev
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default:
	}
}
