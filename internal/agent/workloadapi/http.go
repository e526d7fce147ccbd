package workloadapi

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// X509SVIDPath is the HTTP/1.1 endpoint of the runbook on the Workload API
// socket. Extension: not part of the SPIFFE Workload API.
const X509SVIDPath = "/v1/spiffe/workload/x509svid"

// httpSVID is one entry of the JSON answer. It never carries a private key.
type httpSVID struct {
	SPIFFEID string `json:"spiffe_id"`
	// ExpiresAt is the leaf's NotAfter in unix seconds.
	ExpiresAt int64 `json:"expires_at"`
	// X509SVID is the PEM chain, leaf first.
	X509SVID string `json:"x509_svid"`
	Hint     string `json:"hint"`
}

type httpSVIDs struct {
	SVIDs []httpSVID `json:"svids"`
}

type httpError struct {
	Error string `json:"error"`
}

// httpHandler serves GET /v1/spiffe/workload/x509svid: the caller, attested
// like a gRPC caller, gets its X509-SVIDs (certificates only) as JSON, in
// the order of FetchX509SVID; a caller without identity gets 403.
//
// The endpoint does not require the workload.spiffe.io header (the
// runbook's curl does not send it) and therefore answers only public data:
// no private key, no JWT-SVID.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(X509SVIDPath, s.serveX509SVIDs)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, httpError{Error: "not found"})
	})
	return mux
}

// httpMethod is the method label of the HTTP/1.1 endpoint in
// spire_agent_workload_api_calls_total.
const httpMethod = "x509svid_http"

func (s *Server) serveX509SVIDs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.cfg.Metrics.WorkloadAPICall(httpMethod, codes.InvalidArgument.String())
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, httpError{Error: "method not allowed"})
		return
	}
	ctx := r.Context()
	log := s.callLogger(ctx, "GET "+X509SVIDPath)
	selectors, err := s.attest(ctx, log)
	if err != nil {
		s.cfg.Metrics.WorkloadAPICall(httpMethod, status.Code(err).String())
		code := http.StatusInternalServerError
		if status.Code(err) == codes.Unauthenticated {
			code = http.StatusUnauthorized
		}
		writeJSON(w, code, httpError{Error: status.Convert(err).Message()})
		return
	}
	u := s.cfg.Cache.Snapshot(selectors)
	ids := uniqueHints(u.Identities, log)
	if len(ids) == 0 {
		err := s.noIdentity(log)
		s.cfg.Metrics.WorkloadAPICall(httpMethod, status.Code(err).String())
		writeJSON(w, http.StatusForbidden, httpError{Error: status.Convert(err).Message()})
		return
	}
	s.cfg.Metrics.WorkloadAPICall(httpMethod, codes.OK.String())
	out := httpSVIDs{SVIDs: make([]httpSVID, 0, len(ids))}
	for _, id := range ids {
		var chain bytes.Buffer
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: id.SVID.LeafDER()})
		for _, c := range id.SVID.Intermediates() {
			_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		out.SVIDs = append(out.SVIDs, httpSVID{
			SPIFFEID:  id.Entry.SPIFFEID.String(),
			ExpiresAt: id.SVID.NotAfter.Unix(),
			X509SVID:  chain.String(),
			Hint:      id.Entry.Hint,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
