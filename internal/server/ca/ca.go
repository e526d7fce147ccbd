package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

// Defaults filled by New, as in SPIRE 1.13.
const (
	DefaultCATTL       = 24 * time.Hour
	DefaultX509SVIDTTL = time.Hour
	DefaultJWTSVIDTTL  = 5 * time.Minute

	// notBeforeCushion back-dates every certificate to absorb clock skew.
	notBeforeCushion = 10 * time.Second
	// defaultJournalKey is the CA journal row when Config.JournalKey is empty.
	defaultJournalKey = "server"
	// maxTrustDomainLength and maxIDLength are SPIFFE-ID §2.3 limits.
	maxTrustDomainLength = 255
	maxIDLength          = 2048
)

// Authority statuses, as SPIRE's journal names them.
const (
	StatusActive   = "ACTIVE"
	StatusPrepared = "PREPARED"
	StatusOld      = "OLD"
)

// Errors callers branch on. The API layer maps them to gRPC codes:
//
//	ErrNoActiveAuthority   -> Unavailable "server is initializing" (localauthority);
//	                          Internal in the SVID services (SPIRE: "X509 CA is not available for signing")
//	ErrInvalidAuthorityID  -> InvalidArgument
//	ErrUpstreamConfigured  -> FailedPrecondition
//	ErrAuthorityState      -> Internal
//	ErrInvalidParams       -> InvalidArgument
//
// The localauthority operations return an *AuthorityError that wraps one of
// the first four and carries SPIRE's exact status message.
var (
	ErrNoActiveAuthority  = errors.New("ca: no active authority")
	ErrInvalidAuthorityID = errors.New("ca: invalid authority ID")
	ErrUpstreamConfigured = errors.New("ca: local authority is managed by an upstream authority")
	ErrAuthorityState     = errors.New("ca: authority state does not allow the operation")
	ErrInvalidParams      = errors.New("ca: invalid SVID parameters")
)

// AuthorityError is a refused localauthority operation. Message is the
// status message SPIRE's LocalAuthority API returns for the same condition
// (for example "unexpected authority ID", or "failed to revoke X.509
// authority: it is not possible to revoke an untainted root CA"); Kind is the
// sentinel that selects the code. The API layer reads the message with
// errors.As and the code with errors.Is.
type AuthorityError struct {
	// Kind is one of the sentinels above, or nil for an operational failure
	// (Internal).
	Kind    error
	Message string
	// Err is the underlying failure, if any.
	Err error
}

func (e *AuthorityError) Error() string { return "ca: " + e.Message }

// Unwrap returns Kind and Err, so errors.Is(err, ErrInvalidAuthorityID) works.
func (e *AuthorityError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Kind, e.Err} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func authorityErr(kind error, format string, args ...any) error {
	return &AuthorityError{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Store is what the CA needs from the datastore; *datastore.Store satisfies it.
type Store interface {
	FetchCAJournal(ctx context.Context, key string) ([]byte, error)
	SetCAJournal(ctx context.Context, key string, data []byte) error
	AppendBundle(ctx context.Context, b *datastore.Bundle) (*datastore.Bundle, error)
	UpdateBundleFunc(ctx context.Context, td string, fn func(*datastore.Bundle) error) (*datastore.Bundle, error)
	FetchBundle(ctx context.Context, td string) (*datastore.Bundle, error)
}

// Config configures a CA. Zero values get SPIRE's defaults in New.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// CATTL is the lifetime of X.509 CAs and JWT keys (default 24h).
	CATTL time.Duration
	// KeyType of the X.509 CA key: ec-p256 (default), ec-p384, rsa-2048, rsa-4096.
	KeyType string
	// Subject of the X.509 CA (default C=US, O=SPIFFE); when it has no
	// serialNumber attribute the certificate's serial number is added, as SPIRE does.
	Subject pkix.Name
	// X509SVIDTTL (default 1h) and JWTSVIDTTL (default 5m) apply when the
	// caller passes TTL 0.
	X509SVIDTTL time.Duration
	JWTSVIDTTL  time.Duration
	// JWTKeyType of the JWT signing key (default: KeyType).
	JWTKeyType string
	// JWTIssuer, when set, becomes the iss claim of JWT-SVIDs.
	JWTIssuer  string
	KeyManager KeyManager
	// Upstream signs the X.509 CA when set; nil means self-signed.
	Upstream *UpstreamDisk
	Store    Store
	// JournalKey names this server's CA journal row (default "server").
	// Servers sharing one datastore (HA) each need their own: each keeps its
	// own authorities, and all of them are published in the shared bundle.
	JournalKey string
	// Clock replaces time.Now (nil: time.Now).
	Clock  func() time.Time
	Logger *slog.Logger
}

// AuthorityInfo describes one authority, as the LocalAuthority API shows it.
// AuthorityID is the lowercase hex Subject Key ID of an X.509 CA, or the key
// ID of a JWT key. ExpiresAt is time.Unix(0, 0) where SPIRE reports 0 (the
// results of Revoke, and of TaintJWTAuthority).
type AuthorityInfo struct {
	AuthorityID         string
	ExpiresAt           time.Time
	UpstreamAuthorityID string
	Status              string
}

// Slots holds the authorities of one kind; a nil field is an empty slot.
// Prepared and Old are never both set (SPIRE keeps them in one "next" slot).
type Slots struct {
	Active, Prepared, Old *AuthorityInfo
}

// CA signs X509-SVIDs and JWT-SVIDs for one trust domain and rotates its
// authorities. Create it with New, load or create its authorities with Init,
// and run Run for rotation. All methods are safe for concurrent use.
type CA struct {
	c   Config
	log *slog.Logger

	// mu serializes authority changes (prepare, activate, taint, revoke,
	// rotation) and guards the slots below.
	mu       sync.Mutex
	x509Cur  *x509Slot
	x509Next *x509Slot
	jwtCur   *jwtSlot
	jwtNext  *jwtSlot
	signX509 atomic.Pointer[x509Slot] // active X.509 CA, read lock-free by signers
	signJWT  atomic.Pointer[jwtSlot]  // active JWT key
}

// x509Slot is one X.509 CA with its key.
type x509Slot struct {
	slotID     string // "A" or "B"
	status     string
	issuedAt   time.Time
	cert       *x509.Certificate
	chain      []*x509.Certificate // sent after the leaf: our CA and upstream intermediates when upstream-signed; nil when self-signed
	signer     crypto.Signer
	id         string // hex SKID
	upstreamID string // hex AKID when upstream-signed
	leaf       leafSigner
}

// jwtSlot is one JWT signing key.
type jwtSlot struct {
	slotID   string
	status   string
	issuedAt time.Time
	notAfter time.Time
	kid      string
	signer   crypto.Signer
	jose     joseSigner
}

// New checks cfg and fills its defaults; it does not touch the store or
// the key manager (Init does).
func New(cfg Config) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("ca: trust domain is required")
	}
	if n := len(cfg.TrustDomain.Name()); n > maxTrustDomainLength { // ID-12
		return nil, fmt.Errorf("ca: trust domain is %d bytes, more than %d", n, maxTrustDomainLength)
	}
	if cfg.KeyManager == nil {
		return nil, errors.New("ca: key manager is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("ca: store is required")
	}
	if cfg.CATTL < 0 || cfg.X509SVIDTTL < 0 || cfg.JWTSVIDTTL < 0 {
		return nil, errors.New("ca: TTLs must not be negative")
	}
	if cfg.CATTL == 0 {
		cfg.CATTL = DefaultCATTL
	}
	if cfg.X509SVIDTTL == 0 {
		cfg.X509SVIDTTL = DefaultX509SVIDTTL
	}
	if cfg.JWTSVIDTTL == 0 {
		cfg.JWTSVIDTTL = DefaultJWTSVIDTTL
	}
	if cfg.KeyType == "" {
		cfg.KeyType = KeyTypeECP256
	}
	if cfg.JWTKeyType == "" {
		cfg.JWTKeyType = cfg.KeyType
	}
	if err := ValidateKeyType(cfg.KeyType); err != nil {
		return nil, err
	}
	if err := ValidateKeyType(cfg.JWTKeyType); err != nil {
		return nil, err
	}
	if len(cfg.Subject.ToRDNSequence()) == 0 {
		cfg.Subject = pkix.Name{Country: []string{"US"}, Organization: []string{"SPIFFE"}}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &CA{c: cfg, log: cfg.Logger}, nil
}

// TrustDomain returns the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.c.TrustDomain }

// IsUpstreamAuthority reports whether an upstream authority signs the X.509 CA.
func (c *CA) IsUpstreamAuthority() bool { return c.c.Upstream != nil }

// X509Authorities returns the X.509 CA slots.
func (c *CA) X509Authorities() Slots {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Slots
	if c.x509Cur != nil && c.x509Cur.status == StatusActive {
		s.Active = c.x509Cur.info()
	}
	if n := c.x509Next; n != nil {
		switch n.status {
		case StatusPrepared:
			s.Prepared = n.info()
		case StatusOld:
			s.Old = n.info()
		}
	}
	return s
}

// JWTAuthorities returns the JWT key slots.
func (c *CA) JWTAuthorities() Slots {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Slots
	if c.jwtCur != nil && c.jwtCur.status == StatusActive {
		s.Active = c.jwtCur.info()
	}
	if n := c.jwtNext; n != nil {
		switch n.status {
		case StatusPrepared:
			s.Prepared = n.info()
		case StatusOld:
			s.Old = n.info()
		}
	}
	return s
}

func (s *x509Slot) info() *AuthorityInfo {
	return &AuthorityInfo{AuthorityID: s.id, ExpiresAt: s.cert.NotAfter, UpstreamAuthorityID: s.upstreamID, Status: s.status}
}

func (s *jwtSlot) info() *AuthorityInfo {
	return &AuthorityInfo{AuthorityID: s.kid, ExpiresAt: s.notAfter, Status: s.status}
}

func (c *CA) now() time.Time { return c.c.Clock() }

func (c *CA) tdID() string { return c.c.TrustDomain.IDString() }

func otherSlotID(id string) string {
	if id == "A" {
		return "B"
	}
	return "A"
}

func x509KeyID(slotID string) string { return "x509-CA-" + slotID }
func jwtKeyID(slotID string) string  { return "JWT-Signer-" + slotID }
