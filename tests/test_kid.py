"""benchmarks/kid.py: the unbiased KID estimator, and how it finds (or asks for) Inception's weights.

The real ImageNet weights cannot be fetched here, so the feature path runs on an
Inception-v3 with random weights saved to a file: what is checked is the loading and
the shapes, not the values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import kid


def plug_in_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The same estimate written pair by pair, leaving out i == j within each set."""
    d = a.shape[1]

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return (float(x @ y) / d + 1.0) ** 3

    m, n = len(a), len(b)
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_the_pairwise_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    assert kid.mmd2_unbiased(a, b) == pytest.approx(plug_in_reference(a, b), rel=1e-10)


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two() -> None:
    """Small sets from one distribution average to about 0 (a biased estimate would sit
    clearly above: its diagonal terms add about E[k(x, x)] / n); a shifted set scores far above."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_sd = kid.kid(a, b, subsets=50, subset_size=20)
    assert abs(same) < 3 * same_sd / np.sqrt(50)
    shifted, _ = kid.kid(a, rng.normal(0.5, 1.0, size=(400, 16)), subsets=50, subset_size=20)
    assert shifted > 10 * max(abs(same), same_sd / np.sqrt(50))
    assert kid.kid(a, b, subsets=5, subset_size=20, seed=3) == kid.kid(a, b, subsets=5, subset_size=20, seed=3)


def test_kid_needs_two_images_per_set() -> None:
    with pytest.raises(ValueError, match="at least 2 images in each set, got 1 and 5"):
        kid.kid(np.zeros((1, 4)), np.zeros((5, 4)))


def test_missing_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(ValueError) as err:
        kid.weights_path(None)
    msg = str(err.value)
    assert str(tmp_path / "keras" / "models" / kid.WEIGHTS_FILE) in msg
    assert "keras.applications.InceptionV3(include_top=False)" in msg and "--inception-weights" in msg
    with pytest.raises(ValueError, match="nope.h5 does not exist"):
        kid.weights_path(tmp_path / "nope.h5")
    cached = tmp_path / "keras" / "models" / kid.WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert kid.weights_path(None) == cached


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """An Inception-v3 with random weights, and the file they were saved to."""
    import keras

    net = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                         input_shape=(kid.INPUT_SIZE, kid.INPUT_SIZE, 3))
    path = tmp_path_factory.mktemp("inception") / "random.weights.h5"
    net.save_weights(str(path))
    return path, net


@pytest.mark.slow
def test_features_load_a_weights_file_and_resize_any_image_size(random_weights: tuple[Path, object]) -> None:
    path, net = random_weights
    loaded = kid.inception(path)
    images = np.random.default_rng(0).uniform(-1, 1, size=(3, 32, 32, 3)).astype(np.float32)
    f = kid.features(loaded, images, batch=2)
    assert f.shape == (3, 2048)
    np.testing.assert_allclose(f, kid.features(net, images), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_script_scores_an_export_and_without_weights_says_what_to_fetch(
        random_weights: tuple[Path, object], tiny_job_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.fixtures.models import ROOT, trainer_env

    def run(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "benchmarks/kid.py", str(tiny_job_dir), "--images", "6",
               "--subsets", "3", *extra]
        return subprocess.run(cmd, cwd=ROOT, env={**trainer_env(), "KERAS_HOME": str(tmp_path)},
                              capture_output=True, text=True, timeout=300)

    missing = run()
    assert missing.returncode != 0 and "--inception-weights FILE" in missing.stderr
    assert "Traceback" not in missing.stderr
    done = run("--inception-weights", str(random_weights[0]))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "n = 6 vs 6 real; KID x1e3 over 3 subsets of 6"
    assert lines[1].startswith("floor (real A vs real B)") and " sd " in lines[1]
    assert lines[2].startswith(f"{tiny_job_dir.name} (step ")
