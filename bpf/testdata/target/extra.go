package main

import "net/http"

// extra mounts the database, Redis and messaging endpoints (see clients.go when present).
var extra = func(*http.ServeMux) {}
