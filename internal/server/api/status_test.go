package api_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server/api"
	"github.com/neural-hive/hive-identity/internal/server/datastore"
)

func TestMakeErr(t *testing.T) {
	sqlErr := errors.New(`sqlite: UNIQUE constraint failed: entries.entry_id; SELECT * FROM entries`)
	for _, tt := range []struct {
		name     string
		code     codes.Code
		msg      string
		err      error
		wantMsg  string
		wantLog  string
		noLogged string
	}{
		{name: "ok/invalid argument shows the cause", code: codes.InvalidArgument, msg: "failed to convert entry", err: api.Publicf("bad parent"),
			wantMsg: "failed to convert entry: bad parent", wantLog: "Invalid argument: failed to convert entry"},
		{name: "ok/not found hides the cause", code: codes.NotFound, msg: "entry not found", err: sqlErr,
			wantMsg: "entry not found", wantLog: "Entry not found", noLogged: "sqlite"},
		{name: "ok/internal hides driver text", code: codes.Internal, msg: "failed to create entry", err: fmt.Errorf("datastore: create entry: %w", sqlErr),
			wantMsg: "failed to create entry", wantLog: "UNIQUE constraint"},
		{name: "ok/store refusal is shown without prefix", code: codes.AlreadyExists, msg: "failed to create entry",
			err: &datastore.Error{Kind: datastore.ErrAlreadyExists, Msg: `entry "x" already exists`}, wantMsg: `failed to create entry: entry "x" already exists`},
		{name: "ok/missing bundle", code: codes.Internal, msg: "failed to create entry", err: &datastore.MissingBundleError{TrustDomain: "spiffe://nosuch.example"},
			wantMsg: `failed to create entry: unable to find federated bundle "spiffe://nosuch.example"`},
		{name: "ok/status error", code: codes.Internal, msg: "failed", err: status.Error(codes.Unavailable, "down"), wantMsg: "failed: down"},
		{name: "ok/no error", code: codes.FailedPrecondition, msg: "upstream authority is not configured", wantMsg: "upstream authority is not configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			err := api.MakeErr(log, tt.code, tt.msg, tt.err)
			st := status.Convert(err)
			if st.Code() != tt.code || st.Message() != tt.wantMsg {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tt.code, tt.wantMsg)
			}
			if strings.Contains(st.Message(), "sqlite") || strings.Contains(st.Message(), "SELECT") {
				t.Fatalf("SQL leaked to the client: %q", st.Message())
			}
			if n := strings.Count(buf.String(), "\n"); n != 1 {
				t.Fatalf("logged %d lines, want 1: %s", n, buf.String())
			}
			if !strings.Contains(buf.String(), tt.wantLog) {
				t.Fatalf("log %q lacks %q", buf.String(), tt.wantLog)
			}
			if tt.noLogged != "" && strings.Contains(buf.String(), tt.noLogged) {
				t.Fatalf("log %q has %q", buf.String(), tt.noLogged)
			}
		})
	}
	if api.MakeErr(nil, codes.OK, "x", nil) != nil {
		t.Fatal("OK must give nil")
	}
}

func TestMakeStatus(t *testing.T) {
	st := api.MakeStatus(nil, codes.NotFound, "entry not found", errors.New("x"))
	if st.Code != int32(codes.NotFound) || st.Message != "entry not found" {
		t.Fatalf("got %v", st)
	}
	if ok := api.MakeStatus(nil, codes.OK, "", nil); ok.Code != 0 || ok.Message != "OK" {
		t.Fatalf("got %v", ok)
	}
}

func TestStoreCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code codes.Code
	}{
		{&datastore.Error{Kind: datastore.ErrNotFound}, codes.NotFound},
		{&datastore.SimilarEntryError{}, codes.AlreadyExists},
		{&datastore.MissingBundleError{}, codes.Internal},
		{&datastore.BundleInUseError{}, codes.FailedPrecondition},
		{&datastore.Error{Kind: datastore.ErrInvalidArgument}, codes.InvalidArgument},
		{errors.New("boom"), codes.Internal},
		{nil, codes.OK},
	} {
		if got := api.StoreCode(tt.err); got != tt.code {
			t.Errorf("StoreCode(%v) = %v, want %v", tt.err, got, tt.code)
		}
	}
}
