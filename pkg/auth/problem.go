package auth

import "github.com/gin-gonic/gin"

// problemAbort is a stand-in until pkg/problem lands.
func problemAbort(c *gin.Context, status int, detail string) {
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, gin.H{"type": "about:blank", "title": "Unauthorized", "status": status, "detail": detail, "instance": c.Request.URL.Path})
}
