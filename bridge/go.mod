module github.com/shanhai-dev/shanhai/bridge

go 1.26.0

require github.com/shanhai-dev/shanhai/pkg v0.0.0-00010101000000-000000000000

require github.com/caarlos0/env/v11 v11.4.2 // indirect

replace github.com/shanhai-dev/shanhai/pkg => ../pkg
