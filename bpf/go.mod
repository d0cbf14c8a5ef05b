module github.com/shanhai-dev/shanhai/bpf

go 1.26

require github.com/shanhai-dev/shanhai/pkg v0.0.0-00010101000000-000000000000

replace github.com/shanhai-dev/shanhai/pkg => ../pkg
