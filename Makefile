# FaceGraft: `make demo` runs the main job, `make test` the tests. Both create .venv with
# the pinned dependencies when it is missing and fetch the sample footage into the cache.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facegraft-installed
SAMPLES = $${FACEGRAFT_CACHE:-$$HOME/.cache/facegraft}/samples

.PHONY: demo test test-slow samples lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

samples: $(STAMP)
	$(BIN)/facegraft samples

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) samples lint
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP) samples
	$(BIN)/python -m pytest -m slow

demo: $(STAMP) samples
	$(BIN)/facegraft track $(SAMPLES)/single_face.mp4 --shot out/demo/plate
	$(BIN)/facegraft preview --shot out/demo/plate --out out/demo/track_preview.mp4
	$(BIN)/facegraft build --shot out/demo/plate --blend out/demo/plate/scene.blend
	$(BIN)/facegraft track $(SAMPLES)/franck.mp4 --shot out/demo/source
	$(BIN)/facegraft transfer --source out/demo/source --blend out/demo/plate/scene.blend
	$(BIN)/facegraft guides --shot out/demo/plate --blend out/demo/plate/scene.blend \
		--shape-key "Source Identity"
	$(BIN)/facegraft dataset --shot out/demo/plate
	@echo "demo: out/demo/track_preview.mp4, out/demo/plate/scene.blend, guides and dataset in out/demo/plate"

bench: $(STAMP) samples
	$(BIN)/python bench/track.py $(SAMPLES)/franck.mp4
	rm -rf out/bench && mkdir -p out/bench/franck
	$(BIN)/python bench/guides.py $(SAMPLES)/franck.mp4 --shot out/bench/franck
	$(BIN)/python bench/dataset.py out/bench/franck

clean-venv:
	rm -rf $(VENV)

# The extension zip, built with Blender's own tool (shipped inside the bpy wheel).
BLENDER_EXT = $(VENV)/lib/python3.11/site-packages/bpy/5.0/scripts/addons_core/bl_pkg/cli/blender_ext.py
.PHONY: extension
extension: $(STAMP)
	mkdir -p dist
	$(BIN)/python $(BLENDER_EXT) build --source-dir . --output-dir dist
