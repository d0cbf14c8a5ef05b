//go:build !race

package faulttest

const rssScale = 1
