package verify

import (
	"errors"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/rcd"
)

// Metrics, registered once in the default VictoriaMetrics set (the API's
// /metrics writes it). They are process-wide: several Verifiers add up.
// Per-Verifier numbers are in Stats.
var (
	mX5UHits            = metrics.NewCounter(`shakenline_verify_x5u_cache_hits_total`)
	mX5UMisses          = metrics.NewCounter(`shakenline_verify_x5u_cache_misses_total`)
	mX5UFetchFailures   = metrics.NewCounter(`shakenline_verify_x5u_fetch_failures_total`)
	mX5UFailureHits     = metrics.NewCounter(`shakenline_verify_x5u_failure_cache_hits_total`)
	mX5ULoaded          = metrics.NewCounter(`shakenline_verify_x5u_cache_loaded_total`)
	mX5UPersisted       = metrics.NewCounter(`shakenline_verify_x5u_cache_persisted_total`)
	mX5UPersistFailures = metrics.NewCounter(`shakenline_verify_x5u_cache_persist_failures_total`)
	mCRLFetches         = metrics.NewCounter(`shakenline_verify_crl_fetches_total`)
	mCRLFetchFailures   = metrics.NewCounter(`shakenline_verify_crl_fetch_failures_total`)
	mCRLFailOpen        = metrics.NewCounter(`shakenline_verify_crl_fail_open_total`)

	mPassed       = metrics.NewCounter(`shakenline_verify_results_total{verstat="TN-Validation-Passed",code="0"}`)
	mFailed403    = metrics.NewCounter(`shakenline_verify_results_total{verstat="TN-Validation-Failed",code="403"}`)
	mFailed436    = metrics.NewCounter(`shakenline_verify_results_total{verstat="TN-Validation-Failed",code="436"}`)
	mFailed437    = metrics.NewCounter(`shakenline_verify_results_total{verstat="TN-Validation-Failed",code="437"}`)
	mFailed438    = metrics.NewCounter(`shakenline_verify_results_total{verstat="TN-Validation-Failed",code="438"}`)
	mNoTN428      = metrics.NewCounter(`shakenline_verify_results_total{verstat="No-TN-Validation",code="428"}`)
	mNoTN438      = metrics.NewCounter(`shakenline_verify_results_total{verstat="No-TN-Validation",code="438"}`)
	mResultsOther = metrics.NewCounter(`shakenline_verify_results_total{verstat="other",code="other"}`)

	// Each PASSporT verified, by type and outcome (a call may carry a
	// shaken, div and rcd PASSporTs; other types are skipped).
	mShakenPassed = metrics.NewCounter(`shakenline_verify_passports_total{ppt="shaken",result="passed"}`)
	mShakenFailed = metrics.NewCounter(`shakenline_verify_passports_total{ppt="shaken",result="failed"}`)
	mDivPassed    = metrics.NewCounter(`shakenline_verify_passports_total{ppt="div",result="passed"}`)
	mDivFailed    = metrics.NewCounter(`shakenline_verify_passports_total{ppt="div",result="failed"}`)
	mRCDPassed    = metrics.NewCounter(`shakenline_verify_passports_total{ppt="rcd",result="passed"}`)
	mRCDFailed    = metrics.NewCounter(`shakenline_verify_passports_total{ppt="rcd",result="failed"}`)
	mOtherSkipped = metrics.NewCounter(`shakenline_verify_passports_total{ppt="other",result="skipped"}`)
	// Rich Call Data of calls that passed: shown, or why not.
	mRCDShown     = metrics.NewCounter(`shakenline_verify_rcd_total{result="shown"}`)
	mRCDIntegrity = metrics.NewCounter(`shakenline_verify_rcd_total{result="integrity-failed"}`)
	mRCDFetch     = metrics.NewCounter(`shakenline_verify_rcd_total{result="fetch-failed"}`)
	mRCDBad       = metrics.NewCounter(`shakenline_verify_rcd_total{result="invalid"}`)
	// Linked content (content.go).
	mContentHits     = metrics.NewCounter(`shakenline_verify_content_cache_hits_total`)
	mContentMisses   = metrics.NewCounter(`shakenline_verify_content_cache_misses_total`)
	mContentFailures = metrics.NewCounter(`shakenline_verify_content_fetch_failures_total`)
)

const pptOther = "other"

// pptOf is id's type for the counters.
func pptOf(id *passport.Identity) string {
	if id == nil {
		return pptOther
	}
	return id.PPT
}

// countPassport counts one PASSporT verified.
func countPassport(ppt string, passed bool) {
	switch {
	case ppt == passport.PPTShaken && passed:
		mShakenPassed.Inc()
	case ppt == passport.PPTShaken:
		mShakenFailed.Inc()
	case ppt == passport.PPTDiv && passed:
		mDivPassed.Inc()
	case ppt == passport.PPTDiv:
		mDivFailed.Inc()
	case ppt == passport.PPTRCD && passed:
		mRCDPassed.Inc()
	case ppt == passport.PPTRCD:
		mRCDFailed.Inc()
	default:
		mOtherSkipped.Inc()
	}
}

// countRCD counts the Rich Call Data outcome of a call that passed.
func countRCD(err error) {
	switch {
	case err == nil:
		mRCDShown.Inc()
	case errors.Is(err, rcd.ErrIntegrity):
		mRCDIntegrity.Inc()
	case errors.Is(err, rcd.ErrFetch):
		mRCDFetch.Inc()
	default:
		mRCDBad.Inc()
	}
}

func resultCounter(verstat string, code int) *metrics.Counter {
	switch {
	case verstat == Passed:
		return mPassed
	case verstat == Failed && code == CodeStaleDate:
		return mFailed403
	case verstat == Failed && code == CodeBadInfo:
		return mFailed436
	case verstat == Failed && code == CodeUnsupported:
		return mFailed437
	case verstat == Failed && code == CodeInvalid:
		return mFailed438
	case verstat == NoTN && code == CodeUseIdentity:
		return mNoTN428
	case verstat == NoTN && code == CodeInvalid:
		return mNoTN438
	}
	return mResultsOther
}

func countResult(verstat string, code int) { resultCounter(verstat, code).Inc() }

// counters are one Verifier's numbers behind Stats.
type counters struct {
	hits, misses, fetchFailures, failureHits  atomic.Uint64
	loaded, loadFailures, persisted           atomic.Uint64
	persistFailures, preloaded                atomic.Uint64
	crlFetches, crlFetchFailures, crlFailOpen atomic.Uint64
}

// Stats are one Verifier's counters since New.
type Stats struct {
	CacheHits        uint64 // x5u found in the in-memory cache
	CacheMisses      uint64 // x5u not cached (fetched, or collapsed into a fetch)
	FetchFailures    uint64 // x5u fetches (or URL checks) that failed
	FailureHits      uint64 // calls failed at once on a remembered fetch failure (FailureTTL)
	Loaded           uint64 // chains loaded from CacheDir at New
	LoadFailures     uint64 // CacheDir files skipped as unreadable or malformed
	Persisted        uint64 // chains written to CacheDir
	PersistFailures  uint64 // chains not written (queue full or I/O error)
	Preloaded        uint64 // PreloadFile URLs fetched or found cached
	CRLFetches       uint64 // CRL downloads attempted
	CRLFetchFailures uint64 // CRL downloads that failed
	CRLFailOpen      uint64 // verifications passed without a usable CRL
}

// Stats returns a snapshot of the Verifier's counters.
func (v *Verifier) Stats() Stats {
	c := &v.stats
	return Stats{
		CacheHits: c.hits.Load(), CacheMisses: c.misses.Load(), FetchFailures: c.fetchFailures.Load(), FailureHits: c.failureHits.Load(),
		Loaded: c.loaded.Load(), LoadFailures: c.loadFailures.Load(), Persisted: c.persisted.Load(),
		PersistFailures: c.persistFailures.Load(), Preloaded: c.preloaded.Load(),
		CRLFetches: c.crlFetches.Load(), CRLFetchFailures: c.crlFetchFailures.Load(), CRLFailOpen: c.crlFailOpen.Load(),
	}
}
