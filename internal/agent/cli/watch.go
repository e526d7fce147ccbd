package cli

import (
	"context"
	"crypto/x509"
	"flag"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// watchCommand is `api watch`: it streams X.509 contexts with go-spiffe's
// Workload API client and prints each update until ctx is cancelled. Stream
// errors are printed on stderr as they happen (go-spiffe retries with
// backoff); on cancellation it prints the final error and exits 1, as SPIRE does.
type watchCommand struct {
	e          *env
	fs         *flag.FlagSet
	socketPath string
}

func newWatchCommand(e *env) command {
	c := &watchCommand{e: e, fs: newFlagSet("watch", e.stderr)}
	c.fs.StringVar(&c.socketPath, "socketPath", defaultSocketPath, "Unix socket of the agent's Workload API")
	return c
}

func (c *watchCommand) synopsis() string {
	return "Prints the X509-SVIDs of the Workload API, then every update as it arrives"
}

func (c *watchCommand) help() string {
	printUsage(c.fs)
	return flag.ErrHelp.Error()
}

func (c *watchCommand) run(ctx context.Context, args []string) int {
	if err := c.fs.Parse(args); err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	target, err := socketTarget(c.socketPath)
	if err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	w := &x509Watcher{e: c.e, last: c.e.now()}
	if err := workloadapi.WatchX509Context(ctx, w, workloadapi.WithAddr(target)); err != nil {
		c.e.errorln(err)
		return exitFailure
	}
	return exitOK
}

// x509Watcher prints each X.509 context update with the time since the
// previous one (or since the watch started). go-spiffe calls it from the
// watching goroutine only.
type x509Watcher struct {
	e    *env
	last time.Time
}

func (w *x509Watcher) OnX509ContextUpdate(x509Context *workloadapi.X509Context) {
	svids := make([]*x509SVID, 0, len(x509Context.SVIDs))
	for _, s := range x509Context.SVIDs {
		svid := &x509SVID{id: s.ID.String(), chain: s.Certificates, federated: map[string][]*x509.Certificate{}}
		for _, b := range x509Context.Bundles.Bundles() {
			if b.TrustDomain() == s.ID.TrustDomain() {
				svid.bundle = b.X509Authorities()
			} else {
				svid.federated[b.TrustDomain().Name()] = b.X509Authorities()
			}
		}
		svids = append(svids, svid)
	}
	now := w.e.now()
	printX509SVIDs(w.e.stdout, svids, now.Sub(w.last), false)
	w.last = now
}

func (w *x509Watcher) OnX509ContextWatchError(err error) {
	w.e.errorln(err)
}
