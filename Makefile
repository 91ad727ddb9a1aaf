# The two commands that matter on a fresh machine:
#   make demo   - local demo: local Kafka broker, embedded ClickHouse, a runaway agent blocked
#   make test   - the whole test suite against a real broker and embedded ClickHouse
PYTHON ?= python3

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install --quiet -e ".[test]"
	deploy/kafka/kafka.sh fetch

demo: install
	$(PYTHON) -m tokenfuse.cli.main demo

test: install
	deploy/kafka/with-broker.sh $(PYTHON) -m pytest
