package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/config"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Config is what a binary reads from the environment.
type Config struct {
	Addr            string        `env:"HTTP_ADDR" envDefault:":8082" desc:"listen address"`
	AdminAddr       string        `env:"ADMIN_ADDR" envDefault:"127.0.0.1:9082" desc:"pprof listener; empty disables"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s" desc:"drain deadline"`
	LogLevel        slog.Level    `env:"LOG_LEVEL" envDefault:"info" desc:"debug, info, warn, error"`
}

type createOrder struct {
	UserID string `json:"user_id" binding:"required"`
	Total  int64  `json:"total_cents" binding:"min=1"`
}

// The shape of every Shanhai main: config, logger, telemetry, server, routes,
// Run. Run returns after the ordered shutdown.
func Example() {
	var cfg Config
	config.MustLoad(&cfg) // exits 2 listing every bad variable

	log := telemetry.NewLogger(os.Stdout, cfg.LogLevel)
	slog.SetDefault(log)
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "order", ServiceVersion: "dev", Logger: log})
	if err != nil {
		log.Error("telemetry", "error", err)
		os.Exit(1)
	}

	srv := server.New(server.Options{
		Name: "order", Addr: cfg.Addr, AdminAddr: cfg.AdminAddr,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: log, Telemetry: tel,
		Checks: []server.Check{{Name: "postgres", Probe: func(ctx context.Context) error { return nil /* db.PingContext(ctx) */ }}},
		// Deregister: registry.Deregister,
	})
	srv.Router().POST("/v1/orders", func(c *gin.Context) {
		var req createOrder
		if !server.DecodeJSON(c, &req) {
			return // a 400/413/415/422 problem is already written
		}
		if req.Total > 1_000_000_00 {
			problem.Abort(c, http.StatusUnprocessableEntity, "order too large",
				problem.FieldError{Field: "total_cents", Detail: "must be at most 100000000"})
			return
		}
		c.JSON(http.StatusCreated, gin.H{"user_id": req.UserID})
	})
	srv.OnShutdown(func(context.Context) error { return nil /* stop consumers, close the database */ })

	if err := srv.Run(ctx); err != nil {
		log.Error("shutdown", "error", err)
		os.Exit(1)
	}
}
