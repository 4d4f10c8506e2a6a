package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// guessPasswords tries wrong passwords for one account until it is refused, and returns how many
// attempts were answered 401 first.
func guessPasswords(t *testing.T, s *server, email string) int {
	t.Helper()
	for i := 0; i < 30; i++ {
		r := s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": email, "password": fmt.Sprintf("guess number %d", i)})
		switch r.status {
		case 401:
		case 429:
			if r.errCode(t) != "rate_limited" {
				t.Fatalf("429 with %s", r.body)
			}
			if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
				t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
			}
			return i
		default:
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	t.Fatal("30 wrong passwords in a row were never refused")
	return 0
}

func TestLoginGuessingIsRateLimited(t *testing.T) {
	s := startServer(t)
	s.register("target@example.com", "Target")
	if n := guessPasswords(t, s, "target@example.com"); n > 10 {
		t.Fatalf("%d guesses before the limit, want at most 10", n)
	}
	// While limited, even the right password is refused: the limit counts attempts, not failures.
	r := s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "target@example.com", "password": "correct horse battery"})
	expect(t, r, 429, "rate_limited")
	// Another account from the same address still gets its own attempts (until the per-IP limit).
	s.register("bystander@example.com", "Bystander")
	expect(t, s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "bystander@example.com", "password": "correct horse battery"}), 200, "")
}

// With REDIS_URL set, limits live in Redis (shared by every process) and /api/health/cache checks it.
func TestRateLimitsInRedis(t *testing.T) {
	redisURL := os.Getenv("ATLAS_TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/15"
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s (scripts/ensure-redis.sh starts one): %v", redisURL, err)
	}
	s := startServerWith(t, map[string]string{"REDIS_URL": redisURL})
	expect(t, s.do("GET", "/api/health/cache", "", nil), 200, "")
	s.register("redis-target@example.com", "Target")
	if n := guessPasswords(t, s, "redis-target@example.com"); n > 10 {
		t.Fatalf("%d guesses before the limit, want at most 10", n)
	}
	keys, err := rdb.Keys(context.Background(), "rate:atlas:login-email:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("Redis holds %v (%v), want the login limit of one account", keys, err)
	}
}
