package main

import (
	"context"
	"fmt"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/verify"
)

// rcdFetchBudget bounds the fetch of everything a policy's Rich Call Data
// link to, when it loads.
const rcdFetchBudget = 30 * time.Second

// resolveRCD computes the rcdi digests of tbl's Rich Call Data (package
// rcd) by fetching the content they link to with the x5u client's rules
// (verify.ContentFetcher: https, no private targets, size cap, timeouts;
// http and private targets only with lab). A failure names the rule and
// the URL: the policy is refused (at start, the appliance does not start;
// on reload, the running policy stays).
func resolveRCD(ctx context.Context, tbl *policy.Table, cfg config.Config) error {
	if !tbl.NeedsContent() {
		return nil
	}
	f := verify.NewContentFetcher(verify.ContentConfig{AllowHTTP: cfg.Lab, AllowPrivate: cfg.Lab})
	ctx, cancel := context.WithTimeout(ctx, rcdFetchBudget)
	defer cancel()
	if err := tbl.ResolveRCD(ctx, f.Fetch); err != nil {
		return fmt.Errorf("policy rcd: %w", err)
	}
	return nil
}
