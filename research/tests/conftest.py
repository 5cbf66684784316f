"""The lab's tests reuse the product tests' fixtures: the tiny collections and the cross-encoder built on
the fly."""

from tests.conftest import cross_encoder_path, run_onnx_cache  # noqa: F401
from tests.evaluation.conftest import tiny_beir  # noqa: F401
