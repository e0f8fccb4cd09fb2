module github.com/latchkeyhq/latchkey

go 1.26
