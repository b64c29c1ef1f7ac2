# Development tasks, as in stable-baselines3 and sb3-contrib.
.PHONY: lint format check-codestyle type pytest slow docs

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
