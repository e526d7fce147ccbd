package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
)

// Key types accepted by KeyManager.GenerateKey, spelled as in SPIRE's
// ca_key_type and jwt_key_type settings.
const (
	KeyTypeECP256  = "ec-p256"
	KeyTypeECP384  = "ec-p384"
	KeyTypeRSA2048 = "rsa-2048"
	KeyTypeRSA4096 = "rsa-4096"
)

var (
	// ErrKeyNotFound is returned by KeyManager.GetKey when no key has the ID.
	ErrKeyNotFound = errors.New("ca: key not found")
	// ErrUnsupportedKeyType is returned for a key type other than the KeyType* constants.
	ErrUnsupportedKeyType = errors.New("ca: unsupported key type")
)

// KeyManager holds the private keys of the authorities, named by ID
// ("x509-CA-A", "JWT-Signer-B", as SPIRE names them). Implementations are
// safe for concurrent use.
type KeyManager interface {
	// GenerateKey creates a key of keyType ("" means ec-p256), replacing any
	// key with the same ID, and returns it once it is stored.
	GenerateKey(ctx context.Context, id string, keyType string) (crypto.Signer, error)
	// GetKey returns the key with the ID, or ErrKeyNotFound.
	GetKey(ctx context.Context, id string) (crypto.Signer, error)
}

// ValidateKeyType reports whether keyType is one KeyManager.GenerateKey
// accepts; "" is accepted and means ec-p256.
func ValidateKeyType(keyType string) error {
	switch keyType {
	case "", KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048, KeyTypeRSA4096:
		return nil
	default:
		return fmt.Errorf("%w %q", ErrUnsupportedKeyType, keyType)
	}
}

// newPrivateKey generates a key of keyType with crypto/rand.
func newPrivateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", KeyTypeECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyTypeRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnsupportedKeyType, keyType)
	}
}
