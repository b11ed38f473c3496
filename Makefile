# Convenience targets; ./dev is the real entry script (works without make).
.PHONY: run test build bench torture
run:
	./dev run
test:
	./dev test
build:
	./dev build
bench:
	./dev bench
torture:
	./dev torture
