# Two commands do all set-up on a fresh machine (see README.md):
#   make demo   - install everything, then run the whole workflow on the built-in synthetic catalyst
#   make test   - install everything, then run the test suite (unit, lint, end-to-end, Slurm)
SHELL := /bin/bash
CORES ?= 2
STAMP := .venv/.installed
ENV := source .venv/bin/activate && export VTK_DEFAULT_OPENGL_WINDOW=vtkOSOpenGLRenderWindow KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} TF_CPP_MIN_LOG_LEVEL=2 &&

.PHONY: venv demo test report lint check clean
venv: $(STAMP)
$(STAMP): pyproject.toml .ci/setup.sh
	bash .ci/setup.sh
	touch $@

demo: $(STAMP)
	$(ENV) snakemake --cores $(CORES)
	$(ENV) snakemake --report report.html
	@echo "Results in results/, report in report.html"

test: $(STAMP) check
	$(ENV) python -m pytest

report: $(STAMP)
	$(ENV) snakemake --report report.html

lint: $(STAMP)
	$(ENV) snakemake --lint

# static checks of the code (settings in pyproject.toml): ruff (pyflakes, pycodestyle, import order, pyupgrade,
# bugbear) on the package, rule scripts, tests and benchmarks; mypy on the package
check: $(STAMP)
	$(ENV) ruff check workflow/scripts tests benchmarks && mypy

clean:
	rm -rf results logs benchmarks/results .snakemake report.html
