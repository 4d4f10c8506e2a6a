package httpapi

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/atlas-workspace/atlas/domain"
)

// Limit is a rate: Rate events per Period, with bursts of up to Burst.
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// The limits the API applies. Sign-in and registration are limited hard enough to stop guessing.
var (
	LimitPerIP       = Limit{Rate: 6000, Burst: 300, Period: time.Minute} // every request, by client IP
	LimitPerUser     = Limit{Rate: 3000, Burst: 300, Period: time.Minute} // every authenticated request
	LimitLoginIP     = Limit{Rate: 20, Burst: 10, Period: time.Minute}    // login attempts per IP
	LimitLoginEmail  = Limit{Rate: 10, Burst: 5, Period: time.Minute}     // login attempts per email
	LimitRegisterIP  = Limit{Rate: 20, Burst: 10, Period: time.Minute}    // registrations per IP
	LimitNewAPIKeyIP = Limit{Rate: 30, Burst: 10, Period: time.Minute}    // API keys created per IP
)

// RateLimiter decides whether one more request under key fits limit; when it does not, it says how
// long to wait.
type RateLimiter interface {
	Allow(ctx context.Context, key string, limit Limit) (ok bool, retryAfter time.Duration, err error)
}

// LocalLimiter keeps rates in this process (token buckets of golang.org/x/time/rate). Idle keys are
// dropped, so memory stays bounded by the keys seen in the last few minutes.
type LocalLimiter struct {
	mu      sync.Mutex
	buckets map[string]*localBucket
	swept   time.Time
}

type localBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewLocalLimiter returns an empty in-process limiter.
func NewLocalLimiter() *LocalLimiter { return &LocalLimiter{buckets: map[string]*localBucket{}} }

// Allow implements RateLimiter.
func (l *LocalLimiter) Allow(_ context.Context, key string, limit Limit) (bool, time.Duration, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &localBucket{lim: rate.NewLimiter(rate.Limit(float64(limit.Rate)/limit.Period.Seconds()), limit.Burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, nil
}

// RedisLimiter keeps rates in Redis (GCRA, github.com/go-redis/redis_rate), shared by every process.
// When Redis fails it decides with a local limiter instead, so protection does not lapse.
type RedisLimiter struct {
	limiter  *redis_rate.Limiter
	prefix   string
	fallback *LocalLimiter
	log      *slog.Logger
}

// NewRedisLimiter returns a limiter over limiter whose keys start with prefix.
func NewRedisLimiter(limiter *redis_rate.Limiter, prefix string, log *slog.Logger) *RedisLimiter {
	return &RedisLimiter{limiter: limiter, prefix: prefix, fallback: NewLocalLimiter(), log: log}
}

// Allow implements RateLimiter.
func (r *RedisLimiter) Allow(ctx context.Context, key string, limit Limit) (bool, time.Duration, error) {
	res, err := r.limiter.Allow(ctx, r.prefix+key, redis_rate.Limit{Rate: limit.Rate, Burst: limit.Burst, Period: limit.Period})
	if err != nil {
		r.log.Warn("rate limit in Redis failed; deciding in process", "error", err)
		return r.fallback.Allow(ctx, key, limit)
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// limit answers 429 rate_limited, with Retry-After in whole seconds, when key is over limit.
func (s *Server) limit(c echo.Context, key string, l Limit) error {
	if s.deps.RateLimiter == nil {
		return nil
	}
	ok, retry, err := s.deps.RateLimiter.Allow(c.Request().Context(), key, l)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	return domain.Errorf(domain.CodeRateLimited, "too many requests; retry in %d s", secs)
}

// limitByIP applies LimitPerIP to every request except health checks and metrics.
func (s *Server) limitByIP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := c.Request().URL.Path
		if p == "/metrics" || p == "/api/health" || len(p) > 12 && p[:12] == "/api/health/" {
			return next(c)
		}
		if err := s.limit(c, "ip:"+c.RealIP(), LimitPerIP); err != nil {
			return err
		}
		return next(c)
	}
}
