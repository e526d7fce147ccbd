package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/neural-hive/hive-identity/internal/config"
)

// validateCommand is `spire-agent validate`: it loads the configuration the
// way `run` does (same flags) and says whether the agent could start with
// it: "SPIRE agent configuration file is valid." on stdout and exit 0, or
// "SPIRE agent configuration file is invalid: <first problem>" on stderr
// and exit 1, followed, when there are several problems, by each one with
// its location. Warnings and unknown keys are logged as SPIRE logs them.
type validateCommand struct {
	e      *env
	fs     *flag.FlagSet
	flags  *runFlags
	finish func()
}

func newValidateCommand(e *env) command {
	c := &validateCommand{e: e}
	c.fs, c.flags, c.finish = newRunFlagSet(e, "validate")
	return c
}

func (c *validateCommand) synopsis() string {
	return "Checks an agent configuration file without starting the agent"
}

func (c *validateCommand) help() string {
	printUsage(c.fs)
	return flag.ErrHelp.Error()
}

const invalidConfigPrefix = "SPIRE agent configuration file is invalid: "

func (c *validateCommand) run(ctx context.Context, args []string) int {
	if err := c.fs.Parse(args); err != nil {
		_, _ = fmt.Fprintf(c.e.stderr, "%s%v\n", invalidConfigPrefix, err)
		return exitFailure
	}
	c.finish()
	_, logs, err := c.flags.load(ctx, c.e)
	logs.close()
	if err != nil {
		_, _ = fmt.Fprint(c.e.stderr, config.FormatError(invalidConfigPrefix, err))
		return exitFailure
	}
	c.e.printf("SPIRE agent configuration file is valid.\n")
	return exitOK
}
