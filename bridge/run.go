package bridge

import (
	"context"

	"github.com/shanhai-dev/shanhai/pkg/server"

	"github.com/shanhai-dev/shanhai/bridge/internal/app"
	"github.com/shanhai-dev/shanhai/bridge/internal/config"
)

// Options say where Run reads its configuration and where it reports: the
// zero value is the production binary (cmd/bridge); cmd/shanhai fills them to
// host the bridge beside the services in one process (see server.Part).
type Options = server.Part

// Run starts the bridge and serves until ctx ends or (unless ctx is
// server.Hosted) SIGINT/SIGTERM arrives, then drains. A bad configuration is
// returned as a *config.Error (pkg/config) before anything starts.
func Run(ctx context.Context, o Options) error {
	var cfg config.Config
	if err := o.LoadConfig(&cfg); err != nil {
		return err
	}
	return app.RunWith(ctx, cfg, o)
}
