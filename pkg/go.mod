module github.com/shanhai-dev/shanhai/pkg

go 1.26
