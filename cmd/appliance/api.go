package main

import (
	"log/slog"

	"github.com/shakenline/shakenline/api"
	"github.com/shakenline/shakenline/config"
)

func newAPI(cfg config.Config, a *appliance, log *slog.Logger) (apiServer, error) {
	return api.New(api.Config{Addr: cfg.API}), nil
}
