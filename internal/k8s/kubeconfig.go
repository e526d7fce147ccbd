package k8s

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// kubeConfig is the part of a kubeconfig file (clientcmd v1 Config) the
// client uses.
type kubeConfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			TLSServerName            string `yaml:"tls-server-name"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Token                 string         `yaml:"token"`
			TokenFile             string         `yaml:"tokenFile"`
			ClientCertificate     string         `yaml:"client-certificate"`
			ClientCertificateData string         `yaml:"client-certificate-data"`
			ClientKey             string         `yaml:"client-key"`
			ClientKeyData         string         `yaml:"client-key-data"`
			Username              string         `yaml:"username"`
			Password              string         `yaml:"password"`
			Exec                  map[string]any `yaml:"exec"`
			AuthProvider          map[string]any `yaml:"auth-provider"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// loadKubeConfig reads the current context of a kubeconfig file. Relative
// file references resolve against the kubeconfig's directory, as kubectl
// does. Exec and auth-provider credentials are not supported.
func loadKubeConfig(file string, clock func() time.Time) (*restConfig, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("k8s: read kubeconfig: %w", err)
	}
	var kc kubeConfig
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		return nil, fmt.Errorf("k8s: parse kubeconfig %s: %w", file, err)
	}
	fail := func(format string, args ...any) (*restConfig, error) {
		return nil, fmt.Errorf("k8s: kubeconfig %s: %s", file, fmt.Sprintf(format, args...))
	}
	if kc.CurrentContext == "" {
		return fail("no current-context")
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
			break
		}
	}
	if !found {
		return fail("context %q not found", kc.CurrentContext)
	}
	dir := filepath.Dir(file)
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}

	rc := &restConfig{tls: &tls.Config{MinVersion: tls.VersionTLS12, Time: clock}}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl := c.Cluster
		if cl.ProxyURL != "" {
			return fail("cluster %q: proxy-url is not supported", clusterName)
		}
		u, err := url.Parse(cl.Server)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fail("cluster %q: invalid server %q", clusterName, cl.Server)
		}
		rc.server = u
		rc.tls.ServerName = cl.TLSServerName
		switch {
		case cl.InsecureSkipTLSVerify:
			rc.tls.InsecureSkipVerify = true //nolint:gosec // the operator's kubeconfig asks for it
		case cl.CertificateAuthorityData != "":
			pemBytes, err := base64.StdEncoding.DecodeString(cl.CertificateAuthorityData)
			if err != nil {
				return fail("cluster %q: certificate-authority-data: %v", clusterName, err)
			}
			if rc.tls.RootCAs, err = certPool(pemBytes, "certificate-authority-data"); err != nil {
				return fail("cluster %q: %v", clusterName, err)
			}
		case cl.CertificateAuthority != "":
			if rc.tls.RootCAs, err = readCertPool(resolve(cl.CertificateAuthority)); err != nil {
				return fail("cluster %q: %v", clusterName, err)
			}
		}
		break
	}
	if !found {
		return fail("cluster %q not found", clusterName)
	}

	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		us := u.User
		if us.Exec != nil || us.AuthProvider != nil {
			return fail("user %q: exec and auth-provider credentials are not supported; use a token, a token file or a client certificate", userName)
		}
		switch {
		case us.Token != "":
			rc.token = us.Token
		case us.TokenFile != "":
			if rc.token, err = readToken(resolve(us.TokenFile)); err != nil {
				return fail("user %q: %v", userName, err)
			}
		case us.Username != "":
			rc.username, rc.password = us.Username, us.Password
		}
		certPEM, keyPEM := []byte(nil), []byte(nil)
		if certPEM, err = dataOrFile(us.ClientCertificateData, resolve(us.ClientCertificate)); err != nil {
			return fail("user %q: client certificate: %v", userName, err)
		}
		if keyPEM, err = dataOrFile(us.ClientKeyData, resolve(us.ClientKey)); err != nil {
			return fail("user %q: client key: %v", userName, err)
		}
		switch {
		case certPEM != nil && keyPEM != nil:
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return fail("user %q: client certificate: %v", userName, err)
			}
			rc.tls.Certificates = []tls.Certificate{pair}
		case certPEM != nil || keyPEM != nil:
			return fail("user %q: client certificate and key must be given together", userName)
		}
		break
	}
	// A context without a known user is anonymous, as kubectl treats it.
	return rc, nil
}

func dataOrFile(data, file string) ([]byte, error) {
	switch {
	case data != "":
		return base64.StdEncoding.DecodeString(data)
	case file != "":
		return os.ReadFile(file)
	}
	return nil, nil
}
