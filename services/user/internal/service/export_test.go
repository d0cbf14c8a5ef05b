package service

import "time"

// SetFirstHousekeeping sets how long after Start the first housekeeping round runs (a minute in production).
func SetFirstHousekeeping(s *Service, d time.Duration) { s.firstHousekeeping = d }
