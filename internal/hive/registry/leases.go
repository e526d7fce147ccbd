package registry

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/neural-hive/hive-identity/internal/hive/flow"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits on what a worker may register.
const (
	maxCapabilities = 16
	maxAddressLen   = 255
)

// Errors of the lease table; the gRPC service maps them to codes.
var (
	// ErrNotFound: no live lease with that instance ID (never registered,
	// deregistered or expired).
	ErrNotFound = errors.New("registry: lease not found")
	// ErrNotOwner: the lease was registered by another SPIFFE ID.
	ErrNotOwner = errors.New("registry: lease registered by another identity")
	// ErrFull: the table holds MaxLeases live leases.
	ErrFull = errors.New("registry: lease table full")
	// ErrInvalid is wrapped by the errors of malformed registrations.
	ErrInvalid = errors.New("registry: invalid registration")
)

// lease is one registered worker instance.
type lease struct {
	id      string
	owner   spiffeid.ID
	address string
	caps    []string
	seq     uint64 // registration order
	expires time.Time
}

func (l *lease) instance() flow.Instance {
	return flow.Instance{
		InstanceID:   l.id,
		SPIFFEID:     l.owner.String(),
		Address:      l.address,
		Capabilities: slices.Clone(l.caps),
		ExpiresAt:    l.expires,
	}
}

// leases is the table of worker instances. A lease is live until its expiry;
// expired leases are invisible at once and removed by sweep. It is safe for
// concurrent use.
type leases struct {
	ttl time.Duration
	max int

	mu   sync.Mutex
	seq  uint64
	byID map[string]*lease
}

func newLeases(ttl time.Duration, max int) *leases {
	return &leases{ttl: ttl, max: max, byID: make(map[string]*lease)}
}

func (t *leases) grant(l *lease) flow.Lease {
	return flow.Lease{InstanceID: l.id, ExpiresAt: l.expires, HeartbeatInterval: t.ttl / 3}
}

// register grants a lease to owner for a worker at address. A live lease of
// the same owner and address is replaced (a restarted worker); its ID is
// returned as replaced.
func (t *leases) register(owner spiffeid.ID, address string, caps []string, now time.Time) (granted flow.Lease, replaced string, err error) {
	if err := checkAddress(address); err != nil {
		return flow.Lease{}, "", err
	}
	caps, err = normalizeCapabilities(caps)
	if err != nil {
		return flow.Lease{}, "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	live := 0
	for id, l := range t.byID {
		switch {
		case !now.Before(l.expires):
		case l.owner == owner && l.address == address:
			delete(t.byID, id)
			replaced = id
		default:
			live++
		}
	}
	if live >= t.max {
		return flow.Lease{}, "", ErrFull
	}
	t.seq++
	l := &lease{id: rand.Text(), owner: owner, address: address, caps: caps, seq: t.seq, expires: now.Add(t.ttl)}
	t.byID[l.id] = l
	return t.grant(l), replaced, nil
}

// live returns the live lease id owned by owner.
func (t *leases) live(owner spiffeid.ID, id string, now time.Time) (*lease, error) {
	l, ok := t.byID[id]
	if !ok || !now.Before(l.expires) {
		return nil, ErrNotFound
	}
	if l.owner != owner {
		return nil, ErrNotOwner
	}
	return l, nil
}

// heartbeat renews the lease id of owner for another ttl.
func (t *leases) heartbeat(owner spiffeid.ID, id string, now time.Time) (flow.Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.live(owner, id, now)
	if err != nil {
		return flow.Lease{}, err
	}
	l.expires = now.Add(t.ttl)
	return t.grant(l), nil
}

// deregister ends the lease id of owner.
func (t *leases) deregister(owner spiffeid.ID, id string, now time.Time) (flow.Instance, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.live(owner, id, now)
	if err != nil {
		return flow.Instance{}, err
	}
	delete(t.byID, id)
	return l.instance(), nil
}

// discover returns the live instances offering capability, oldest
// registration first.
func (t *leases) discover(capability string, now time.Time) []flow.Instance {
	t.mu.Lock()
	found := make([]*lease, 0, len(t.byID))
	for _, l := range t.byID {
		if now.Before(l.expires) && slices.Contains(l.caps, capability) {
			found = append(found, l)
		}
	}
	slices.SortFunc(found, func(a, b *lease) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]flow.Instance, len(found))
	for i, l := range found {
		out[i] = l.instance()
	}
	t.mu.Unlock()
	return out
}

// sweep removes the leases expired at now and returns them.
func (t *leases) sweep(now time.Time) []flow.Instance {
	t.mu.Lock()
	defer t.mu.Unlock()
	var expired []flow.Instance
	for id, l := range t.byID {
		if !now.Before(l.expires) {
			expired = append(expired, l.instance())
			delete(t.byID, id)
		}
	}
	return expired
}

// count returns the number of live leases.
func (t *leases) count(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.byID {
		if now.Before(l.expires) {
			n++
		}
	}
	return n
}

func checkAddress(address string) error {
	if len(address) > maxAddressLen {
		return fmt.Errorf("%w: address longer than %d bytes", ErrInvalid, maxAddressLen)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: address %q is not host:port", ErrInvalid, address)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return fmt.Errorf("%w: address %q is not host:port", ErrInvalid, address)
	}
	return nil
}

// normalizeCapabilities checks capability names ([a-z0-9][a-z0-9._-]*, at
// most 64 bytes, at most 16) and returns them sorted without duplicates.
func normalizeCapabilities(caps []string) ([]string, error) {
	if len(caps) == 0 {
		return nil, fmt.Errorf("%w: no capabilities", ErrInvalid)
	}
	if len(caps) > maxCapabilities {
		return nil, fmt.Errorf("%w: more than %d capabilities", ErrInvalid, maxCapabilities)
	}
	for _, c := range caps {
		if !flow.ValidCapability(c) {
			return nil, fmt.Errorf("%w: capability %.64q is not [a-z0-9][a-z0-9._-]{0,63}", ErrInvalid, c)
		}
	}
	caps = slices.Clone(caps)
	slices.Sort(caps)
	return slices.Compact(caps), nil
}
