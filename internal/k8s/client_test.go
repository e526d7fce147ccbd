package k8s_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/k8s"
	"github.com/neural-hive/hive-identity/internal/k8s/k8stest"
)

func TestClientKubeConfig(t *testing.T) {
	ctx := context.Background()
	api := k8stest.NewAPIServer(t)
	api.AddToken("agent-token", k8stest.Token{
		Namespace: "spire-system", ServiceAccount: "spire-agent",
		PodName: "spire-agent-x7k2p", PodUID: "3b1f2c9e-8a4d-4f7e-9c1a-2d5e6f708192", NodeName: "worker-1",
		Audiences: []string{"spire-server"}, Expiry: time.Now().Add(time.Hour),
	})
	api.AddPod("spire-system", "spire-agent-x7k2p", k8stest.Pod(k8stest.PodSpec{
		Namespace: "spire-system", Name: "spire-agent-x7k2p", UID: "3b1f2c9e-8a4d-4f7e-9c1a-2d5e6f708192",
		NodeName: "worker-1", HostIP: "172.18.0.3", ServiceAccount: "spire-agent",
		Labels: map[string]string{"app": "spire-agent"},
	}))
	api.AddNode("worker-1", k8stest.Node("worker-1", "6f0e3d1c-4b2a-4c8e-9d7f-1a2b3c4d5e6f", "172.18.0.3", nil))
	c := k8s.NewClient(k8s.ClientConfig{KubeConfigFile: api.KubeConfig(t, t.TempDir())})

	st, err := c.ReviewToken(ctx, "agent-token", []string{"spire-server"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Authenticated || st.User.Username != "system:serviceaccount:spire-system:spire-agent" {
		t.Fatalf("status = %+v", st)
	}
	ns, sa, err := st.User.ServiceAccount()
	if err != nil || ns != "spire-system" || sa != "spire-agent" {
		t.Fatalf("ServiceAccount() = %q %q %v", ns, sa, err)
	}
	name, uid, err := st.User.BoundPod()
	if err != nil || name != "spire-agent-x7k2p" || uid != "3b1f2c9e-8a4d-4f7e-9c1a-2d5e6f708192" {
		t.Fatalf("BoundPod() = %q %q %v", name, uid, err)
	}
	if got := api.Reviews(); len(got) != 1 || got[0].Audiences[0] != "spire-server" {
		t.Fatalf("reviews = %+v", got)
	}

	st, err = c.ReviewToken(ctx, "agent-token", []string{"other"})
	if err != nil || st.Authenticated || !strings.Contains(st.Error, "audiences") {
		t.Fatalf("wrong audience: %+v %v", st, err)
	}

	pod, err := c.GetPod(ctx, "spire-system", "spire-agent-x7k2p")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "worker-1" || pod.Status.HostIP != "172.18.0.3" || pod.Metadata.Labels["app"] != "spire-agent" {
		t.Fatalf("pod = %+v", pod)
	}
	node, err := c.GetNode(ctx, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	if node.Metadata.UID != "6f0e3d1c-4b2a-4c8e-9d7f-1a2b3c4d5e6f" || node.Metadata.Labels["kubernetes.io/hostname"] != "worker-1" {
		t.Fatalf("node = %+v", node)
	}

	_, err = c.GetPod(ctx, "spire-system", "gone")
	if !k8s.IsNotFound(err) || !strings.Contains(err.Error(), `pods "gone" not found`) {
		t.Fatalf("missing pod: %v", err)
	}

	for _, bad := range []string{"..", "a/b", "%2e%2e", ""} {
		before := api.Requests()
		if _, err := c.GetNode(ctx, bad); err == nil || !strings.Contains(err.Error(), "invalid node name") {
			t.Errorf("GetNode(%q) = %v", bad, err)
		}
		if api.Requests() != before {
			t.Errorf("GetNode(%q) reached the server", bad)
		}
	}

	api.Close()
	_, err = c.ReviewToken(ctx, "agent-token", []string{"spire-server"})
	if err == nil || !strings.Contains(err.Error(), "token review") {
		t.Fatalf("server down: %v", err)
	}
}

func TestClientInCluster(t *testing.T) {
	api := k8stest.NewAPIServer(t)
	dir := t.TempDir()
	api.ServiceAccountDir(t, dir)
	host, port, _ := strings.Cut(strings.TrimPrefix(api.URL(), "https://"), ":")
	env := map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
	api.AddNode("n1", k8stest.Node("n1", "uid-1", "10.0.0.1", nil))
	c := k8s.NewClient(k8s.ClientConfig{ServiceAccountDir: dir, Getenv: func(k string) string { return env[k] }})
	if _, err := c.GetNode(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}

	// A token rotated on disk is read for the next request.
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	var apiErr *k8s.APIError
	if _, err := c.GetNode(context.Background(), "n1"); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Fatalf("stale token: %v", err)
	}
}

func TestKubeConfigShapes(t *testing.T) {
	api := k8stest.NewAPIServer(t)
	api.AddNode("n1", k8stest.Node("n1", "uid-1", "10.0.0.1", nil))
	ca := base64.StdEncoding.EncodeToString(api.CA().PEM())
	head := "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
	for _, tt := range []struct {
		name, text string
		files      map[string]string
		wantErr    string
	}{
		{name: "ok/relative token file and CA file", text: head + "clusters:\n- name: k\n  cluster:\n    server: " + api.URL() + "\n    certificate-authority: pki/ca.crt\nusers:\n- name: u\n  user:\n    tokenFile: tok\n",
			files: map[string]string{"pki/ca.crt": string(api.CA().PEM()), "tok": "@token\n"}},
		{name: "ok/json kubeconfig", text: `{"current-context":"c","contexts":[{"name":"c","context":{"cluster":"k","user":"u"}}],"clusters":[{"name":"k","cluster":{"server":"` + api.URL() + `","certificate-authority-data":"` + ca + `"}}],"users":[{"name":"u","user":{"token":"@token"}}]}`},
		{name: "fail/unknown CA", text: head + "clusters:\n- name: k\n  cluster:\n    server: " + api.URL() + "\nusers:\n- name: u\n  user:\n    token: \"@token\"\n",
			wantErr: "certificate"},
		{name: "fail/exec credentials", text: head + "clusters:\n- name: k\n  cluster:\n    server: " + api.URL() + "\nusers:\n- name: u\n  user:\n    exec:\n      command: aws\n",
			wantErr: "exec and auth-provider credentials are not supported"},
		{name: "fail/missing context", text: "current-context: nope\n", wantErr: `context "nope" not found`},
		{name: "fail/no current context", text: "clusters: []\n", wantErr: "no current-context"},
		{name: "fail/bad server", text: head + "clusters:\n- name: k\n  cluster:\n    server: ftp://x\n", wantErr: "invalid server"},
		{name: "fail/not yaml", text: "{{{", wantErr: "parse kubeconfig"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// "@token" stands for the server's client token.
			fill := func(s string) string { return strings.ReplaceAll(s, "@token", api.ClientToken()) }
			text := fill(tt.text)
			dir := t.TempDir()
			for name, body := range tt.files {
				p := filepath.Join(dir, name)
				_ = os.MkdirAll(filepath.Dir(p), 0o700)
				if err := os.WriteFile(p, []byte(fill(body)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			kc := filepath.Join(dir, "config")
			if err := os.WriteFile(kc, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := k8s.NewClient(k8s.ClientConfig{KubeConfigFile: kc}).GetNode(context.Background(), "n1")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
