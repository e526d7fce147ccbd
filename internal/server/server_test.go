package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/neural-hive/hive-identity/internal/server"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// start runs a server on dir until the returned stop is called.
func start(t *testing.T, dir string) (*grpc.ClientConn, func()) {
	conn, _, stop := startServer(t, dir)
	return conn, stop
}

func startServer(t *testing.T, dir string) (*grpc.ClientConn, *server.Server, func()) {
	t.Helper()
	s, err := server.New(server.Config{
		TrustDomain: td,
		DataDir:     filepath.Join(dir, "data"),
		SocketPath:  filepath.Join(dir, "s", "api.sock"),
		BindAddress: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		LogLevel:    new(slog.LevelVar),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("server not ready after a minute")
	}
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "s", "api.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	}
	t.Cleanup(stop)
	return conn, s, stop
}

func TestServer_RunServesAndRestarts(t *testing.T) {
	ctx := context.Background()
	dir := tempDir(t)
	conn, stop := start(t, dir)

	health, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || health.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health %v %v", health, err)
	}
	if lg, err := loggerv1.NewLoggerClient(conn).GetLogger(ctx, &loggerv1.GetLoggerRequest{}); err != nil || lg.CurrentLevel != types.LogLevel_INFO {
		t.Fatalf("logger %v %v", lg, err)
	}
	b1, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil || len(b1.X509Authorities) != 1 || len(b1.JwtAuthorities) != 1 {
		t.Fatalf("bundle %v %v", b1, err)
	}
	resp, err := entryv1.NewEntryClient(conn).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/w"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/spire/server"},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:0"}},
	}}})
	if err != nil || resp.Results[0].Status.Code != 0 {
		t.Fatalf("create %v %v", resp, err)
	}

	// Files: datastore and keys under data_dir; the admin socket 0660 in a 0770 directory.
	for _, f := range []string{"data/datastore.sqlite3", "data/keys.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	si, err := os.Lstat(filepath.Join(dir, "s", "api.sock"))
	if err != nil || si.Mode()&fs.ModeSocket == 0 || si.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v %v", si, err)
	}
	if di, _ := os.Stat(filepath.Join(dir, "s")); di.Mode().Perm() != 0o770 {
		t.Fatalf("socket dir mode %v", di.Mode().Perm())
	}

	stop()
	if _, err := os.Lstat(filepath.Join(dir, "s", "api.sock")); err == nil {
		t.Fatal("socket left after stop")
	}

	// A restart keeps the entries and the CA.
	conn, _ = start(t, dir)
	n, err := entryv1.NewEntryClient(conn).CountEntries(ctx, &entryv1.CountEntriesRequest{})
	if err != nil || n.Count != 1 {
		t.Fatalf("count after restart %v %v", n, err)
	}
	b2, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil || string(b2.X509Authorities[0].Asn1) != string(b1.X509Authorities[0].Asn1) {
		t.Fatalf("CA changed across a restart: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     server.Config
		wantErr string
	}{
		{name: "ok/defaults from data_dir", cfg: server.Config{TrustDomain: td, DataDir: "/var/lib/x"}},
		{name: "ok/memory keys and explicit SQLite file", cfg: server.Config{TrustDomain: td,
			KeyManager: server.KeyManagerConfig{Kind: "memory"}, DataStore: server.DataStoreConfig{ConnectionString: "/tmp/x.db"}}},
		{name: "fail/no trust domain", cfg: server.Config{DataDir: "/x"}, wantErr: "trust domain is required"},
		{name: "fail/no data_dir", cfg: server.Config{TrustDomain: td}, wantErr: "data_dir must be configured"},
		{name: "fail/unknown database", cfg: server.Config{TrustDomain: td, DataDir: "/x", DataStore: server.DataStoreConfig{DatabaseType: "mysql"}}, wantErr: `unsupported database type "mysql"`},
		{name: "fail/postgres without DSN", cfg: server.Config{TrustDomain: td, DataDir: "/x", DataStore: server.DataStoreConfig{DatabaseType: "postgres"}}, wantErr: "connection string is required"},
		{name: "fail/unknown key manager", cfg: server.Config{TrustDomain: td, DataDir: "/x", KeyManager: server.KeyManagerConfig{Kind: "aws_kms"}}, wantErr: `unsupported key manager "aws_kms"`},
		{name: "fail/unknown key type", cfg: server.Config{TrustDomain: td, DataDir: "/x", CAKeyType: "ed25519"}, wantErr: "ed25519"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRun_FailsOnBadSocket(t *testing.T) {
	dir := tempDir(t)
	sock := filepath.Join(dir, "api.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{TrustDomain: td, DataDir: dir, SocketPath: sock, BindAddress: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run: %v", err)
	}
}

// Agents bootstrap over TCP: the bundle is readable without a client
// certificate, over TLS with the server SVID spiffe://<td>/spire/server.
func TestServer_TCPBootstrap(t *testing.T) {
	ctx := context.Background()
	admin, s, _ := startServer(t, tempDir(t))
	b, err := bundlev1.NewBundleClient(admin).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, a := range b.X509Authorities {
		c, err := x509.ParseCertificate(a.Asn1)
		if err != nil {
			t.Fatal(err)
		}
		roots.AddCert(c)
	}
	var serverID string
	tlsCfg := &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below, by SPIFFE ID
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			serverID = leaf.URIs[0].String()
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
	}
	conn, err := grpc.NewClient(s.TCPAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := bundlev1.NewBundleClient(conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil || len(got.X509Authorities) != 1 {
		t.Fatalf("GetBundle over TCP: %v %v", got, err)
	}
	if serverID != "spiffe://example.org/spire/server" {
		t.Fatalf("server SVID ID %q", serverID)
	}
	// Admin RPCs need an admin identity over TCP.
	_, err = entryv1.NewEntryClient(conn).CountEntries(ctx, &entryv1.CountEntriesRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("CountEntries without identity: %v", err)
	}
}

func grpcUnix(t *testing.T, path string) (*grpc.ClientConn, error) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, nil
}
