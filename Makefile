# FaceGraft: `make demo` runs the main job, `make test` the tests. Both create .venv with
# the pinned dependencies when it is missing and fetch the sample footage into the cache.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facegraft-installed
IDENTITY_STAMP := $(VENV)/.facegraft-identity
DEMO_MINUTES ?= 11
SAMPLES = $${FACEGRAFT_CACHE:-$$HOME/.cache/facegraft}/samples

.PHONY: demo test test-slow samples lint bench eval clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,blender]'
	touch $(STAMP)

# The Blender LTS releases the manifest promises, as Python modules: one venv each with
# the same pins (pyproject.toml) and that release of bpy, for the Blender-side tests.
LTS_RELEASES := 4.2.23 4.5.15
LTS_STAMPS := $(foreach r,$(LTS_RELEASES),.venv-bpy-$(r)/.facegraft-installed)
LTS_TESTS := tests/test_build.py tests/test_composite.py tests/test_extension.py
.venv-bpy-%/.facegraft-installed: pyproject.toml
	test -x .venv-bpy-$*/bin/python || $(PYTHON) -m venv .venv-bpy-$*
	.venv-bpy-$*/bin/python -m pip install --disable-pip-version-check -e '.[dev]' bpy==$*
	touch $@

# dlib (prebuilt wheel) and its face-recognition models: the identity figures of eval.
$(IDENTITY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,blender,identity]'
	$(BIN)/facegraft samples --identity-model
	touch $(IDENTITY_STAMP)

samples: $(STAMP)
	$(BIN)/facegraft samples

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) samples lint $(LTS_STAMPS)
	$(BIN)/python -m pytest -m "not slow"
	for release in $(LTS_RELEASES); do \
		.venv-bpy-$$release/bin/python -m pytest -m "not slow" $(LTS_TESTS) || exit 1; \
	done

test-slow: $(STAMP) samples $(IDENTITY_STAMP)
	$(BIN)/python -m pytest -m slow

# The whole pipeline: man A (franck.mp4) onto man B's plate (single_face.mp4), cpu profile.
demo: $(STAMP) samples $(IDENTITY_STAMP)
	$(BIN)/facegraft run --source $(SAMPLES)/franck.mp4 --plate $(SAMPLES)/single_face.mp4 \
		--shot out/demo --profile cpu --minutes $(DEMO_MINUTES)
	@echo "demo: out/demo/final.mp4, out/demo/contact_sheet.png, out/demo/metrics.json, out/demo/shot.blend"

# The swap judged on the dev pairs (bench/quality.py): every pair, the guide ablation on
# self and a_to_b, cpu profile, the demo's step count; the table in out/quality/table.md.
# About 3 hours on 2 cores (one model after the other).
EVAL_STEPS ?= 1500
eval: $(STAMP) samples $(IDENTITY_STAMP)
	$(BIN)/python bench/quality.py --steps $(EVAL_STEPS) --out out/quality

bench: $(STAMP) samples
	$(BIN)/python bench/track.py $(SAMPLES)/franck.mp4
	rm -rf out/bench && mkdir -p out/bench/franck
	$(BIN)/python bench/guides.py $(SAMPLES)/franck.mp4 --shot out/bench/franck
	$(BIN)/python bench/dataset.py out/bench/franck
	$(BIN)/facegraft run --source $(SAMPLES)/franck.mp4 --plate $(SAMPLES)/single_face.mp4 \
		--shot out/bench/run --profile tiny --steps 40 --source-frames 0:200
	$(BIN)/python bench/merge.py out/bench/run --profile tiny

# A folder of the worker's wheels, for studios without internet: the add-on's preferences
# install the worker from it (Wheels Folder, then Install Worker).
WORKER_WHEELS ?= dist/worker-wheels
.PHONY: worker-wheels
worker-wheels: $(STAMP)
	$(BIN)/python -m pip download --disable-pip-version-check -r worker_requirements.txt \
		-d $(WORKER_WHEELS)
	@echo "worker wheels: $(WORKER_WHEELS)"

clean-venv:
	rm -rf $(VENV) .venv-bpy-*

# The extension zip, built with Blender's own tool (shipped inside the bpy wheel).
BLENDER_EXT = $(wildcard $(VENV)/lib/python3.11/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py)
.PHONY: extension
extension: $(STAMP)
	mkdir -p dist
	$(BIN)/python $(BLENDER_EXT) build --source-dir . --output-dir dist
