module github.com/flowps/flowps

go 1.26.8
