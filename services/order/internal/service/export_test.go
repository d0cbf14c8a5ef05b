package service

import "context"

// Housekeep runs one housekeeping round now (Start runs the first a minute after start).
func Housekeep(s *Service, ctx context.Context) { s.housekeeping(ctx) }

// ExpireRound runs one expiry round now (Start runs one every minute).
func ExpireRound(s *Service, ctx context.Context) { s.expiry.round(ctx) }
