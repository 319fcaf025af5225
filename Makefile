# wiremesh: `make lab` and `make test` are the two commands a new machine needs (as root).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
LAB_NAME ?= lab
LAB_NODES ?= 3
LAB_PODS ?= 2

.PHONY: deps lab lab-down test test-unit test-netns test-e2e check bench

deps:
	@hack/install-deps.sh

lab: deps
	@./bin/wiremesh lab up --name $(LAB_NAME) --nodes $(LAB_NODES) --pods-per-node $(LAB_PODS)

lab-down:
	@./bin/wiremesh lab down --name $(LAB_NAME)

check: deps
	tsc -p tsconfig.json
	eslint .
	prettier --check .

test: deps
	@hack/run-tests.sh

test-unit: deps
	@hack/run-tests.sh unit

test-netns: deps
	@hack/run-tests.sh netns

test-e2e: deps
	@hack/run-tests.sh e2e

bench: deps
	npm run bench -- all
