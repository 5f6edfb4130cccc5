"""lib_lcm.weights.progress: the one wording of download progress (decimal MB, one decimal)."""
from __future__ import annotations

from lib_lcm.weights.progress import megabytes, progress_text


def test_progress_text_with_a_total():
    assert progress_text("lcm-lora-sdv1-5", 56_600_000, 134_621_556) == "Downloading lcm-lora-sdv1-5: 42% of 134.6 MB"
    assert progress_text("lcm-lora-sdxl", 0, 393_855_224) == "Downloading lcm-lora-sdxl: 0% of 393.9 MB"
    assert progress_text("x", 999, 1000) == "Downloading x: 99% of 0.0 MB"  # rounded down: 100% means done
    assert progress_text("x", 1000, 1000) == "Downloading x: 100% of 0.0 MB"


def test_progress_text_without_a_total():
    assert progress_text("lcm-lora-sdv1-5", 12_345_678, None) == "Downloading lcm-lora-sdv1-5: 12.3 MB"
    assert progress_text("lcm-lora-sdv1-5", 12_345_678, 0) == "Downloading lcm-lora-sdv1-5: 12.3 MB"


def test_megabytes_are_decimal():
    assert megabytes(134_621_556) == "134.6 MB"
    assert megabytes(2**20) == "1.0 MB"
    assert megabytes(0) == "0.0 MB"
