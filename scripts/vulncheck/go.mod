module github.com/shanhai-dev/shanhai/scripts/vulncheck

go 1.26.0
