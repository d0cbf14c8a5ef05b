package server

import "github.com/gin-gonic/gin"

// NoStore is middleware for routes that answer personal data (a user's
// orders, payments): every answer, a problem included, carries
// Cache-Control: no-store, so no cache on the way keeps it, the browser's
// disk cache among them, where with no Cache-Control an answer stayed
// readable after logout. "private" would still let the browser store it.
func NoStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
}
