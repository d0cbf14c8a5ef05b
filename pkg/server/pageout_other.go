//go:build !linux

package server

// PageOutExecutable does nothing off Linux: MADV_PAGEOUT and /proc/self/maps
// are Linux's.
func PageOutExecutable() (Pageout, error) {
	return Pageout{Refused: "not Linux"}, nil
}
