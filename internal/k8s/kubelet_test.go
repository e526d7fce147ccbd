package k8s_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/neural-hive/hive-identity/internal/k8s"
	"github.com/neural-hive/hive-identity/internal/k8s/k8stest"
)

func TestKubeletPods(t *testing.T) {
	kl := k8stest.NewKubelet(t)
	kl.SetPods(k8stest.PodList(k8stest.Pod(k8stest.PodSpec{
		Namespace: "neural-hive-execution", Name: "worker-agents-7d9f8-abcde", UID: "0d4c5e6f-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
		ServiceAccount: "worker-agents", NodeName: "worker-1",
		Containers: []k8stest.Container{{Name: "worker", Image: "worker:1", ImageID: "worker@sha256:00", ContainerID: "containerd://" + k8stest.ContainerID("w")}},
	})))
	dir := t.TempDir()
	token := kl.WriteToken(t, dir)
	caFile := kl.CA().WriteFile(t, dir, "kubelet-ca.crt")
	otherCA := k8stest.NewCA(t).WriteFile(t, dir, "other-ca.crt")

	for _, tt := range []struct {
		name    string
		cfg     k8s.KubeletConfig
		wantErr string
	}{
		{name: "ok/node name verified against the kubelet CA", cfg: k8s.KubeletConfig{Host: "localhost", CAFile: caFile, TokenFile: token}},
		{name: "ok/no node name: chain verified, name not", cfg: k8s.KubeletConfig{CAFile: caFile, TokenFile: token}},
		{name: "ok/skip verification", cfg: k8s.KubeletConfig{Host: "localhost", CAFile: otherCA, TokenFile: token, SkipVerification: true}},
		// T6: pod data from a kubelet we cannot verify decides nothing.
		{name: "fail/T6 wrong CA with node name", cfg: k8s.KubeletConfig{Host: "localhost", CAFile: otherCA, TokenFile: token}, wantErr: "certificate signed by unknown authority"},
		{name: "fail/T6 wrong CA without node name", cfg: k8s.KubeletConfig{CAFile: otherCA, TokenFile: token}, wantErr: "certificate signed by unknown authority"},
		{name: "fail/T6 expired kubelet certificate by clock", cfg: k8s.KubeletConfig{CAFile: caFile, TokenFile: token, Clock: func() time.Time { return time.Now().Add(48 * time.Hour) }}, wantErr: "expired"},
		{name: "fail/anonymous is unauthorized", cfg: k8s.KubeletConfig{Host: "localhost", CAFile: caFile, Anonymous: true}, wantErr: "401"},
		{name: "fail/missing token file", cfg: k8s.KubeletConfig{Host: "localhost", CAFile: caFile, TokenFile: filepath.Join(dir, "none")}, wantErr: "kubelet token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SecurePort = kl.Port()
			c, err := k8s.NewKubelet(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			list, err := c.Pods(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 || list.Items[0].Spec.ServiceAccountName != "worker-agents" ||
				list.Items[0].Status.ContainerStatuses[0].RuntimeID() != k8stest.ContainerID("w") {
				t.Fatalf("pods = %+v", list)
			}
		})
	}
}

func TestKubeletConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     k8s.KubeletConfig
		wantErr string
	}{
		{name: "fail/both ports", cfg: k8s.KubeletConfig{ReadOnlyPort: 10255, SecurePort: 10250}, wantErr: "cannot use both the read-only and secure port"},
		{name: "fail/cert without key", cfg: k8s.KubeletConfig{CertFile: "c"}, wantErr: "must be given together"},
		{name: "fail/anonymous and token", cfg: k8s.KubeletConfig{Anonymous: true, TokenFile: "t"}, wantErr: "exclusive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := k8s.NewKubelet(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	k, err := k8s.NewKubelet(k8s.KubeletConfig{ReadOnlyPort: 10255})
	if err != nil || k.URL() != "http://127.0.0.1:10255/pods" {
		t.Fatalf("read-only URL = %v %v", k, err)
	}
	k, _ = k8s.NewKubelet(k8s.KubeletConfig{Host: "worker-1"})
	if k.URL() != "https://worker-1:10250/pods" {
		t.Fatalf("secure URL = %s", k.URL())
	}
}

func TestKubeletReload(t *testing.T) {
	kl := k8stest.NewKubelet(t)
	dir := t.TempDir()
	token := kl.WriteToken(t, dir)
	now := time.Now()
	clock := func() time.Time { return now }
	c, err := k8s.NewKubelet(k8s.KubeletConfig{Host: "localhost", SecurePort: kl.Port(), CAFile: kl.CA().WriteFile(t, dir, "ca.crt"), TokenFile: token, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pods(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("rotated-away"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pods(context.Background()); err != nil {
		t.Fatalf("within the reload interval the old token is kept: %v", err)
	}
	now = now.Add(k8s.DefaultKubeletReloadInterval)
	if _, err := c.Pods(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("after the reload interval the new token is used: %v", err)
	}
}
