// Package x509pop is the wire format of the x509pop node attestor (X.509
// proof of possession), shared by the agent (which proves it holds the key of
// its certificate) and the server (which checks the chain and the proof).
// The JSON shapes and the signed digest match SPIRE 1.13, so either side
// interoperates with SPIRE.
//
// Protocol: the agent sends AttestationData (its DER chain, leaf first). The
// server sends a Challenge holding a 32-byte random nonce. The agent answers
// with its own 32-byte nonce and a signature over SHA-256(challenge nonce ||
// response nonce): ECDSA (r, s as big-endian bytes) or RSA-PSS with SHA-256.
package x509pop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the fingerprint format is SHA-1 by protocol, not for security
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// PluginName is the attestor's name on the wire and in agent IDs.
const PluginName = "x509pop"

const nonceLen = 32

// Limits against oversized input (T8): a chain longer or larger than this is
// refused before any parsing work.
const (
	MaxChainLen   = 8
	MaxChainBytes = 64 << 10
)

// AttestationData is the agent's first message: its certificate chain.
type AttestationData struct {
	Certificates [][]byte `json:"certificates"` // DER, leaf first
}

// Challenge is the server's challenge; exactly one field is set.
type Challenge struct {
	RSASignature   *Nonce `json:"rsa_signature"`
	ECDSASignature *Nonce `json:"ecdsa_signature"`
}

// Nonce carries a challenge nonce.
type Nonce struct {
	Nonce []byte `json:"nonce"`
}

// Response is the agent's answer; the field matching the challenge is set.
type Response struct {
	RSASignature   *RSAResponse   `json:"rsa_signature"`
	ECDSASignature *ECDSAResponse `json:"ecdsa_signature"`
}

// RSAResponse is an RSA-PSS (SHA-256) signature over the combined nonces.
type RSAResponse struct {
	Nonce     []byte `json:"nonce"`
	Signature []byte `json:"signature"`
}

// ECDSAResponse is an ECDSA signature over the combined nonces.
type ECDSAResponse struct {
	Nonce []byte `json:"nonce"`
	R     []byte `json:"r"`
	S     []byte `json:"s"`
}

// NewChallenge returns a fresh challenge for the key type of cert.
func NewChallenge(cert *x509.Certificate) (*Challenge, error) {
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	switch cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return &Challenge{RSASignature: &Nonce{Nonce: nonce}}, nil
	case *ecdsa.PublicKey:
		return &Challenge{ECDSASignature: &Nonce{Nonce: nonce}}, nil
	default:
		return nil, fmt.Errorf("x509pop: unsupported public key type %T", cert.PublicKey)
	}
}

// Respond signs the challenge with key (the agent side).
func Respond(key crypto.Signer, ch *Challenge) (*Response, error) {
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	switch {
	case ch.RSASignature != nil:
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New("x509pop: RSA challenge for a non-RSA key")
		}
		digest, err := combine(ch.RSASignature.Nonce, nonce)
		if err != nil {
			return nil, err
		}
		sig, err := rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest, nil)
		if err != nil {
			return nil, fmt.Errorf("x509pop: sign: %w", err)
		}
		return &Response{RSASignature: &RSAResponse{Nonce: nonce, Signature: sig}}, nil
	case ch.ECDSASignature != nil:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, errors.New("x509pop: ECDSA challenge for a non-ECDSA key")
		}
		digest, err := combine(ch.ECDSASignature.Nonce, nonce)
		if err != nil {
			return nil, err
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, fmt.Errorf("x509pop: sign: %w", err)
		}
		return &Response{ECDSASignature: &ECDSAResponse{Nonce: nonce, R: r.Bytes(), S: s.Bytes()}}, nil
	}
	return nil, errors.New("x509pop: empty challenge")
}

// Verify checks the response to ch against pub (the server side).
func Verify(pub crypto.PublicKey, ch *Challenge, resp *Response) error {
	switch {
	case ch.RSASignature != nil:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || resp.RSASignature == nil {
			return errors.New("x509pop: expected an RSA signature response")
		}
		digest, err := combine(ch.RSASignature.Nonce, resp.RSASignature.Nonce)
		if err != nil {
			return err
		}
		if err := rsa.VerifyPSS(k, crypto.SHA256, digest, resp.RSASignature.Signature, nil); err != nil {
			return errors.New("x509pop: RSA signature verify failed")
		}
		return nil
	case ch.ECDSASignature != nil:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || resp.ECDSASignature == nil {
			return errors.New("x509pop: expected an ECDSA signature response")
		}
		digest, err := combine(ch.ECDSASignature.Nonce, resp.ECDSASignature.Nonce)
		if err != nil {
			return err
		}
		r := new(big.Int).SetBytes(resp.ECDSASignature.R)
		s := new(big.Int).SetBytes(resp.ECDSASignature.S)
		if !ecdsa.Verify(k, digest, r, s) {
			return errors.New("x509pop: ECDSA signature verify failed")
		}
		return nil
	}
	return errors.New("x509pop: empty challenge")
}

// Fingerprint is the hex SHA-1 of the certificate's DER, as SPIRE computes it
// for agent IDs and ca:fingerprint selectors.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw) //nolint:gosec // protocol-defined fingerprint
	return hex.EncodeToString(sum[:])
}

// SerialNumberHex is the serial as lowercase hex with an even number of digits.
func SerialNumberHex(n *big.Int) string {
	s := fmt.Sprintf("%x", n)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

func newNonce() ([]byte, error) {
	b := make([]byte, nonceLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("x509pop: nonce: %w", err)
	}
	return b, nil
}

// combine hashes both nonces; each must be exactly 32 bytes.
func combine(challenge, response []byte) ([]byte, error) {
	if len(challenge) != nonceLen {
		return nil, errors.New("x509pop: invalid challenge nonce")
	}
	if len(response) != nonceLen {
		return nil, errors.New("x509pop: invalid response nonce")
	}
	h := sha256.New()
	h.Write(challenge)
	h.Write(response)
	return h.Sum(nil), nil
}
