package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // RFC 5280 §4.2.1.2 method 1, as SPIRE computes Subject Key IDs
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// leafSigner builds and signs X509-SVIDs for one CA. It writes the DER by
// hand and fills the x509.Certificate itself instead of calling
// x509.CreateCertificate (which re-verifies its own signature, twice the
// cost of signing) and x509.ParseCertificate: minting then costs little
// more than the one signature. Tests prove the TBS is byte-identical to
// crypto/x509's for the same template and that the returned Certificate
// equals x509.ParseCertificate of its Raw. Leaf keys other than ECDSA
// P-256/P-384 take the plain path (MarshalPKIXPublicKey, ParseCertificate).
type leafSigner struct {
	signer      crypto.Signer
	hash        crypto.Hash
	sigAlg      x509.SignatureAlgorithm
	sigAlgDER   []byte // AlgorithmIdentifier
	issuer      []byte // DER of the CA's subject
	issuerName  pkix.Name
	fixedExtDER []byte // key usage, EKU and basic constraints extensions
	fixedExts   []pkix.Extension
	akidExt     pkix.Extension
	akidExtDER  []byte
	akid        []byte
	defSubject  []byte // DER of the default SVID subject, C=US, O=SPIRE
	defName     pkix.Name
}

type leafFields struct {
	subject   []byte // nil: default subject
	publicKey crypto.PublicKey
	notBefore time.Time
	notAfter  time.Time
	id        spiffeid.ID
	dnsNames  []string
}

// DER tags used below.
const (
	tagInteger       = 0x02
	tagBitString     = 0x03
	tagOctetString   = 0x04
	tagOID           = 0x06
	tagUTCTime       = 0x17
	tagGeneralized   = 0x18
	tagSequence      = 0x30
	tagContext0      = 0xa0
	tagContext3      = 0xa3
	tagSANDNSName    = 0x82
	tagSANURI        = 0x86
	keyUsageLeafBits = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement
)

func newLeafSigner(ca *x509.Certificate, signer crypto.Signer) (leafSigner, error) {
	hash, sigAlg, alg, err := signatureAlgorithm(signer.Public())
	if err != nil {
		return leafSigner{}, err
	}
	sigAlgDER, err := asn1.Marshal(alg)
	if err != nil {
		return leafSigner{}, err
	}
	akidValue, err := asn1.Marshal(struct {
		ID []byte `asn1:"optional,tag:0"`
	}{ca.SubjectKeyId})
	if err != nil {
		return leafSigner{}, err
	}
	// digitalSignature | keyEncipherment | keyAgreement: bits 0, 2, 4.
	ku, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0xa8}, BitLength: 5})
	if err != nil {
		return leafSigner{}, err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}, {1, 3, 6, 1, 5, 5, 7, 3, 2}})
	if err != nil {
		return leafSigner{}, err
	}
	bc, err := asn1.Marshal(struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}{false, -1})
	if err != nil {
		return leafSigner{}, err
	}
	l := leafSigner{
		signer:    signer,
		hash:      hash,
		sigAlg:    sigAlg,
		sigAlgDER: sigAlgDER,
		issuer:    ca.RawSubject,
		akid:      ca.SubjectKeyId,
		akidExt:   pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 35}, Value: akidValue},
		fixedExts: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: ku},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: eku},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
		},
	}
	for _, e := range l.fixedExts {
		der, err := asn1.Marshal(e)
		if err != nil {
			return leafSigner{}, err
		}
		l.fixedExtDER = append(l.fixedExtDER, der...)
	}
	if l.akidExtDER, err = asn1.Marshal(l.akidExt); err != nil {
		return leafSigner{}, err
	}
	if l.issuerName, err = parseName(ca.RawSubject); err != nil {
		return leafSigner{}, err
	}
	if l.defSubject, err = marshalName(defaultSVIDSubject()); err != nil {
		return leafSigner{}, err
	}
	if l.defName, err = parseName(l.defSubject); err != nil {
		return leafSigner{}, err
	}
	return l, nil
}

// parseName decodes a DER Name the way x509.ParseCertificate does.
func parseName(der []byte) (pkix.Name, error) {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) != 0 {
		return pkix.Name{}, fmt.Errorf("ca: parse name: %v", err)
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n, nil
}

// signatureAlgorithm picks the hash and algorithm crypto/x509 uses by
// default for a CA key.
func signatureAlgorithm(pub crypto.PublicKey) (crypto.Hash, x509.SignatureAlgorithm, pkix.AlgorithmIdentifier, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, x509.ECDSAWithSHA256, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, nil
		case elliptic.P384():
			return crypto.SHA384, x509.ECDSAWithSHA384, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}}, nil
		case elliptic.P521():
			return crypto.SHA512, x509.ECDSAWithSHA512, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}}, nil
		}
	case *rsa.PublicKey:
		return crypto.SHA256, x509.SHA256WithRSA, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}, nil
	}
	return 0, 0, pkix.AlgorithmIdentifier{}, fmt.Errorf("ca: unsupported CA key type %T", pub)
}

// ecSPKIPrefix returns the DER of SubjectPublicKeyInfo up to the point
// bytes for a P-256 or P-384 key, and the point length; ok is false for
// other keys.
func ecSPKIPrefix(pub crypto.PublicKey) (prefix []byte, pointLen int, ok bool) {
	k, isEC := pub.(*ecdsa.PublicKey)
	if !isEC {
		return nil, 0, false
	}
	switch k.Curve {
	case elliptic.P256():
		// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes) }
		return []byte{0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
			0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00}, 65, true
	case elliptic.P384():
		// SEQUENCE { SEQUENCE { id-ecPublicKey, secp384r1 }, BIT STRING (98 bytes) }
		return []byte{0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
			0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00}, 97, true
	}
	return nil, 0, false
}

// sign builds, signs and returns a leaf. Extensions are in crypto/x509's
// order: key usage, EKU, basic constraints, SKID, AKID, SAN; the SAN is
// critical when the subject is empty (X509-SVID §3.1).
func (l *leafSigner) sign(f leafFields) (*x509.Certificate, error) {
	serial, err := newSerialNumber()
	if err != nil {
		return nil, err
	}
	var spki, skid []byte
	prefix, pointLen, fast := ecSPKIPrefix(f.publicKey)
	if fast {
		point, err := f.publicKey.(*ecdsa.PublicKey).Bytes() // validates the point
		if err != nil || len(point) != pointLen {
			return nil, fmt.Errorf("%w: public key: invalid EC point", ErrInvalidParams)
		}
		spki = append(append(make([]byte, 0, len(prefix)+len(point)), prefix...), point...)
		sum := sha1.Sum(point) //nolint:gosec // see import
		skid = sum[:]
	} else {
		if spki, err = x509.MarshalPKIXPublicKey(f.publicKey); err != nil {
			return nil, fmt.Errorf("%w: public key: %w", ErrInvalidParams, err)
		}
		if skid, err = subjectKeyIDFromSPKI(spki); err != nil {
			return nil, err
		}
	}
	subject, subjectName := f.subject, l.defName
	if subject == nil {
		subject = l.defSubject
	} else if subjectName, err = parseName(subject); err != nil {
		return nil, err
	}
	uri := f.id.String()

	// Extensions.
	skidValue := appendTLV(nil, tagOctetString, skid)
	var sanBody []byte
	for _, dns := range f.dnsNames {
		sanBody = appendTLV(sanBody, tagSANDNSName, []byte(dns))
	}
	sanBody = appendTLV(sanBody, tagSANURI, []byte(uri))
	sanValue := appendTLV(nil, tagSequence, sanBody)
	sanCritical := bytes.Equal(subject, []byte{0x30, 0})
	exts := make([]byte, 0, len(l.fixedExtDER)+len(l.akidExtDER)+len(sanValue)+64)
	exts = append(exts, l.fixedExtDER...)
	exts = appendExtension(exts, []byte{0x06, 0x03, 0x55, 0x1d, 0x0e}, false, skidValue)
	exts = append(exts, l.akidExtDER...)
	exts = appendExtension(exts, []byte{0x06, 0x03, 0x55, 0x1d, 0x11}, sanCritical, sanValue)

	// TBSCertificate, remembering where the parts x509.Certificate exposes are.
	notBefore, notAfter := time.Unix(f.notBefore.Unix(), 0).UTC(), time.Unix(f.notAfter.Unix(), 0).UTC()
	var validity []byte
	validity = appendTime(validity, notBefore)
	validity = appendTime(validity, notAfter)
	body := make([]byte, 0, 160+len(l.issuer)+len(subject)+len(spki)+len(exts))
	body = append(body, tagContext0, 3, tagInteger, 1, 2) // version v3
	body = appendTLV(body, tagInteger, serialBytes(serial))
	body = append(body, l.sigAlgDER...)
	issuerOff := len(body)
	body = append(body, l.issuer...)
	body = appendTLV(body, tagSequence, validity)
	subjectOff := len(body)
	body = append(body, subject...)
	spkiOff := len(body)
	body = append(body, spki...)
	body = appendHeader(body, tagContext3, lenTLV(len(exts)))
	body = appendTLV(body, tagSequence, exts)
	tbs := appendTLV(make([]byte, 0, len(body)+4), tagSequence, body)
	tbsHeader := len(tbs) - len(body)

	h := l.hash.New()
	h.Write(tbs)
	sig, err := l.signer.Sign(rand.Reader, h.Sum(nil), l.hash)
	if err != nil {
		return nil, fmt.Errorf("ca: sign X509-SVID: %w", err)
	}
	certBody := make([]byte, 0, len(tbs)+len(l.sigAlgDER)+len(sig)+8)
	certBody = append(certBody, tbs...)
	certBody = append(certBody, l.sigAlgDER...)
	certBody = appendHeader(certBody, tagBitString, len(sig)+1)
	certBody = append(certBody, 0)
	certBody = append(certBody, sig...)
	raw := appendTLV(make([]byte, 0, len(certBody)+4), tagSequence, certBody)
	off := len(raw) - len(certBody) // header of Certificate
	rawTBS := raw[off : off+len(tbs)]
	at := func(start, n int) []byte { return rawTBS[tbsHeader+start : tbsHeader+start+n] }

	if !fast {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("ca: parse signed X509-SVID: %w", err)
		}
		return cert, nil
	}
	u := f.id.URL()
	return &x509.Certificate{
		Raw:                     raw,
		RawTBSCertificate:       rawTBS,
		RawSubjectPublicKeyInfo: at(spkiOff, len(spki)),
		RawSubject:              at(subjectOff, len(subject)),
		RawIssuer:               at(issuerOff, len(l.issuer)),
		Signature:               raw[len(raw)-len(sig):],
		SignatureAlgorithm:      l.sigAlg,
		PublicKeyAlgorithm:      x509.ECDSA,
		PublicKey:               f.publicKey,
		Version:                 3,
		SerialNumber:            serial,
		Issuer:                  l.issuerName,
		Subject:                 subjectName,
		NotBefore:               notBefore,
		NotAfter:                notAfter,
		KeyUsage:                keyUsageLeafBits,
		Extensions: append(append(make([]pkix.Extension, 0, 6), l.fixedExts...),
			pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 14}, Value: skidValue},
			l.akidExt,
			pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: sanCritical, Value: sanValue}),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		MaxPathLen:            -1,
		SubjectKeyId:          skid,
		AuthorityKeyId:        l.akid,
		DNSNames:              f.dnsNames,
		URIs:                  []*url.URL{u},
	}, nil
}

func serialBytes(n *big.Int) []byte {
	b := n.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}

// appendTime appends t as UTCTime in 1950-2049 and GeneralizedTime
// otherwise (RFC 5280 §4.1.2.5), as encoding/asn1 does.
func appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y >= 1950 && y < 2050 {
		b = append(b, tagUTCTime, 13)
		return t.AppendFormat(b, "060102150405Z")
	}
	b = append(b, tagGeneralized, 15)
	return t.AppendFormat(b, "20060102150405Z")
}

func appendExtension(b []byte, oid []byte, critical bool, value []byte) []byte {
	n := len(oid) + lenTLV(len(value))
	if critical {
		n += 3
	}
	b = appendHeader(b, tagSequence, n)
	b = append(b, oid...)
	if critical {
		b = append(b, 0x01, 0x01, 0xff)
	}
	return appendTLV(b, tagOctetString, value)
}

func appendTLV(b []byte, tag byte, content []byte) []byte {
	return append(appendHeader(b, tag, len(content)), content...)
}

func appendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	default:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// lenTLV is the encoded size of a TLV with n content bytes.
func lenTLV(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n < 0x100:
		return 3 + n
	case n < 0x10000:
		return 4 + n
	default:
		return 5 + n
	}
}
