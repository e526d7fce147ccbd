package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAgentWorkloadAttestorK8s(t *testing.T) {
	for _, tt := range []struct {
		name    string
		data    string
		wantErr string
		check   func(t *testing.T, k *WorkloadAttestorK8s)
	}{
		{name: "ok/secure port with CA", data: `
            kubelet_secure_port = 10250
            kubelet_ca_path = "/run/secrets/kubelet-ca.crt"
            node_name_env = "MY_NODE_NAME"
            poll_retry_interval = "250ms"
            max_poll_attempts = 10
            disable_container_selectors = true`,
			check: func(t *testing.T, k *WorkloadAttestorK8s) {
				if k.KubeletSecurePort != 10250 || k.KubeletCAPath != "/run/secrets/kubelet-ca.crt" || k.NodeNameEnv != "MY_NODE_NAME" ||
					k.PollRetryInterval != 250*time.Millisecond || k.MaxPollAttempts != 10 || !k.DisableContainerSelectors {
					t.Fatalf("%+v", k)
				}
			}},
		{name: "ok/skip verification", data: `skip_kubelet_verification = true`,
			check: func(t *testing.T, k *WorkloadAttestorK8s) {
				if !k.SkipKubeletVerification {
					t.Fatal("skip_kubelet_verification lost")
				}
			}},
		{name: "ok/proc_dir extension", data: `proc_dir = "/tmp/proc"`,
			check: func(t *testing.T, k *WorkloadAttestorK8s) {
				if k.ProcDir != "/tmp/proc" {
					t.Fatalf("proc_dir: %q", k.ProcDir)
				}
			}},
		{name: "fail/unknown key named", data: `kubelet_port = 1`, wantErr: `kubelet_port`},
		{name: "fail/bad duration", data: `poll_retry_interval = "soon"`, wantErr: `could not parse poll_retry_interval "soon"`},
		{name: "fail/both ports", data: "kubelet_read_only_port = 10255\n            kubelet_secure_port = 10250", wantErr: "both the read-only and the secure port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := agentConf("", "    WorkloadAttestor \"k8s\" {\n        plugin_data {\n            "+tt.data+"\n        }\n    }", "")
			a, err := checkAgent(t, text)
			if tt.wantErr != "" {
				var ce *Error
				if !errors.As(err, &ce) || !strings.Contains(strings.Join(ce.Lines(), "\n"), tt.wantErr) {
					t.Fatalf("want a problem naming %q, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.WorkloadAttestorK8s == nil {
				t.Fatal("k8s attestor not decoded")
			}
			tt.check(t, a.WorkloadAttestorK8s)
		})
	}
}
