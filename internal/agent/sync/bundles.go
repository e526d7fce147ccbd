package sync

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/telemetry"
)

// bundleData is a bundle of the server API with its tainted authorities.
type bundleData struct {
	bundle *spiffebundle.Bundle
	// taintedX509 are the X.509 authorities marked tainted: SVIDs chained to
	// them are rotated.
	taintedX509 []*x509.Certificate
}

// bundleFromProto converts a bundle.v1 bundle.
func bundleFromProto(pb *types.Bundle) (*bundleData, error) {
	if pb == nil {
		return nil, wrapErr(errors.New("bundle is nil"))
	}
	td, err := spiffeid.TrustDomainFromString(pb.GetTrustDomain())
	if err != nil {
		return nil, wrapErr(fmt.Errorf("bundle: invalid trust domain %q: %w", pb.GetTrustDomain(), err))
	}
	out := &bundleData{bundle: spiffebundle.New(td)}
	for _, a := range pb.GetX509Authorities() {
		cert, err := x509.ParseCertificate(a.GetAsn1())
		if err != nil {
			return nil, wrapErr(fmt.Errorf("bundle %q: invalid X.509 authority: %w", td, err))
		}
		out.bundle.AddX509Authority(cert)
		if a.GetTainted() {
			out.taintedX509 = append(out.taintedX509, cert)
		}
	}
	for _, k := range pb.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			return nil, wrapErr(fmt.Errorf("bundle %q: invalid JWT authority %q: %w", td, k.GetKeyId(), err))
		}
		if err := out.bundle.AddJWTAuthority(k.GetKeyId(), pub); err != nil {
			return nil, wrapErr(fmt.Errorf("bundle %q: %w", td, err))
		}
	}
	if pb.GetRefreshHint() > 0 {
		out.bundle.SetRefreshHint(time.Duration(pb.GetRefreshHint()) * time.Second)
	}
	if pb.GetSequenceNumber() > 0 {
		out.bundle.SetSequenceNumber(pb.GetSequenceNumber())
	}
	return out, nil
}

// ownBundleFromProto converts the bundle of the agent's trust domain.
func (c *Client) ownBundleFromProto(pb *types.Bundle) (*bundleData, error) {
	b, err := bundleFromProto(pb)
	if err != nil {
		return nil, err
	}
	if td := b.bundle.TrustDomain(); td != c.cfg.TrustDomain {
		return nil, wrapErr(fmt.Errorf("server returned the bundle of %q, not %q", td, c.cfg.TrustDomain))
	}
	if len(b.bundle.X509Authorities()) == 0 {
		return nil, wrapErr(errors.New("server bundle has no X.509 authorities"))
	}
	return b, nil
}

// fetchBundles gets the agent's trust domain bundle and the bundles of
// federated, in one connection use. A federated bundle the server does not
// have is left out (with a warning), as SPIRE's agent does.
func (c *Client) fetchBundles(ctx context.Context, federated []spiffeid.TrustDomain) (own *bundleData, feds map[spiffeid.TrustDomain]*bundleData, err error) {
	err = c.call(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		client := bundlev1.NewBundleClient(cc)
		resp, err := client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
		if err != nil {
			return fmt.Errorf("get bundle: %w", err)
		}
		if own, err = c.ownBundleFromProto(resp); err != nil {
			return err
		}
		feds = make(map[spiffeid.TrustDomain]*bundleData, len(federated))
		for _, td := range federated {
			resp, err := client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: td.Name()})
			switch status.Code(err) {
			case codes.OK:
			case codes.NotFound:
				c.log.Warn("Federated bundle not found", telemetry.FederatedBundle, td.String())
				continue
			default:
				return fmt.Errorf("get federated bundle %q: %w", td, err)
			}
			b, err := bundleFromProto(resp)
			if err != nil {
				return err
			}
			if b.bundle.TrustDomain() != td {
				return wrapErr(fmt.Errorf("server returned the bundle of %q for %q", b.bundle.TrustDomain(), td))
			}
			feds[td] = b
		}
		return nil
	})
	return own, feds, err
}
