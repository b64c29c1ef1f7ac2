# Development tasks, as in stable-baselines3 and sb3-contrib.
.PHONY: lint format check-codestyle type pytest slow docs results-table

lint:
	ruff check .

format:
	ruff check --fix .
	ruff format .

check-codestyle:
	ruff format --check .

type:
	mypy

pytest:
	pytest

slow:
	pytest -m slow

docs:
	sphinx-build -W --keep-going -b html docs docs/_build/html

# The summary tables of README.md and benchmarks/RESULTS.md, from benchmarks/results/headline.csv.
results-table:
	python benchmarks/results_table.py
