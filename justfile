# edge: the same one-line commands as the README, wrapped.

venv := ".venv"

# create the virtual environment and install edge with its test tools
setup:
    python3 -m venv {{venv}} && {{venv}}/bin/pip install -q -e '.[test]'

# run the daemon in the foreground (extra args go to `edge run`)
run *ARGS:
    python3 -m venv {{venv}} && {{venv}}/bin/pip install -q -e . && {{venv}}/bin/edge run {{ARGS}}

# the whole test suite, linters included (exactly what CI runs)
test:
    python3 -m venv {{venv}} && {{venv}}/bin/pip install -q -e '.[test]' && {{venv}}/bin/ruff check edge bench && {{venv}}/bin/mypy && {{venv}}/bin/python -m pytest

# ruff (with the ASYNC rules) and mypy --strict on edge/
lint: setup
    {{venv}}/bin/ruff check edge bench
    {{venv}}/bin/mypy

# print the benchmark figures
bench: setup
    {{venv}}/bin/python bench/bench_spine.py
    {{venv}}/bin/python bench/bench_capture.py
    {{venv}}/bin/python bench/bench_mcp.py

# a fake cloud to try edge by hand
dev-cloud: setup
    {{venv}}/bin/edge dev-cloud
