"""`lrr_jax.load_results`: rows with identity fields and run directory, with and without pandas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from report_fixtures import LEVELS, make_fake_runs

import lrr_jax
from lrr_jax import schema
from lrr_jax.reporting import analysis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_fake_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def no_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError


def test_public_api_is_listed_and_lazy():
    assert {"load_level", "load_results", "__version__"} <= set(dir(lrr_jax))
    assert lrr_jax.__all__ == ["load_level", "load_results"]
    assert lrr_jax.load_results is analysis.load_results
    code = ("import sys, lrr_jax, lrr_jax.reporting.summary, lrr_jax.reporting.analysis; "
            "lrr_jax.load_results; dir(lrr_jax); "
            "assert 'jax' not in sys.modules, 'jax imported'; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_results_rows_without_pandas(paths, no_pandas):
    rows = lrr_jax.load_results(paths["root"])  # a workdir: method subdirectories found
    assert isinstance(rows, list) and isinstance(rows[0], dict)
    # 3 methods + 2 transfers + 2 random (2 seeds each) and 6 perturbation replicas.
    assert len(rows) == (7 * 2 + 6) * LEVELS
    assert list(rows[0])[:len(schema.RESULT_COLUMNS)] == schema.names(schema.RESULT_COLUMNS)
    assert list(rows[0])[len(schema.RESULT_COLUMNS):] == list(analysis.EXTRA_COLUMNS)
    by_dir = {}
    for row in rows:
        by_dir.setdefault(os.path.relpath(row["run_dir"], paths["root"]), set()).add(row["label"])
    assert by_dir["multi/lrr"] == {"LRR"}
    assert by_dir["perturb"] == {"LRR (p=0)", "LRR (p=0.1)", "LRR (p=0.3)"}
    assert by_dir["imp_lrr_signs"] == {"IMP + LRR mask & signs"}
    signs = next(r for r in rows if r["label"] == "IMP + LRR mask & signs")
    assert signs["mask_source"] == signs["sign_source"] == paths["lrr"]
    assert signs["sign_transfer"] == "source_signs" and signs["method"] == "imp"
    plain = next(r for r in rows if r["label"] == "LRR" and r["level"] == 3 and r["seed"] == 1)
    assert plain["mask_source"] == "" and plain["perturb_prob"] == 0.0
    assert plain["sparsity"] == pytest.approx(1 - 0.8 ** 3)
    assert plain["dataset"] == "cifar10" and plain["model"] == "resnet18"
    assert os.path.isabs(plain["run_dir"])
    perturbed = [r for r in rows if r["perturb_prob"] == 0.3]
    assert {r["seed"] for r in perturbed} == {0, 1}
    assert {r["steps_after_last_flip"] for r in perturbed} == {117}
    # A list of run directories; a single run directory; as_frame=False.
    one = lrr_jax.load_results([paths["lrr"], paths["perturb"]], as_frame=False)
    assert len(one) == (2 + 6) * LEVELS
    with pytest.raises(ImportError, match="pandas"):
        lrr_jax.load_results(paths["lrr"], as_frame=True)


def test_sign_flip_rows(paths, no_pandas):
    rows = lrr_jax.load_results(paths["perturb"], kind="sign_flips")
    assert list(rows[0])[:len(schema.SIGN_FLIP_COLUMNS)] == schema.names(
        schema.SIGN_FLIP_COLUMNS)
    assert {r["label"] for r in rows} == {"LRR (p=0)", "LRR (p=0.1)", "LRR (p=0.3)"}
    row = next(r for r in rows if r["level"] == 2 and r["perturb_prob"] == 0.1)
    assert row["sparsity"] == pytest.approx(1 - 0.8 ** 2) and row["seed"] in (0, 1)
    assert row["run_dir"] == os.path.abspath(paths["perturb"])
    assert {r["reference"] for r in rows} == {"init", "prev"}


def test_errors(paths, tmp_path, no_pandas):
    with pytest.raises(ValueError, match="kind"):
        lrr_jax.load_results(paths["lrr"], kind="flips")
    with pytest.raises(FileNotFoundError, match="no such path"):
        lrr_jax.load_results([paths["lrr"], str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        lrr_jax.load_results(str(tmp_path))


def test_dataframe_with_pandas(paths):
    pandas = pytest.importorskip("pandas")
    df = lrr_jax.load_results(paths["root"])
    assert isinstance(df, pandas.DataFrame)
    assert list(df.columns) == schema.names(schema.RESULT_COLUMNS) + list(
        analysis.EXTRA_COLUMNS)
    assert len(df) == (7 * 2 + 6) * LEVELS
    # Unset text identity fields are '', so grouping on them keeps every row.
    assert df.groupby(["method", "mask_source", "sign_source", "sign_transfer"]).ngroups == 3 + 2
    means = df[df.level == 3].groupby("label").test_acc.mean()
    assert means["IMP"] == pytest.approx(0.89)
    flips = lrr_jax.load_results(paths["multi"], kind="sign_flips")
    assert set(flips.label) == {"IMP", "WR", "LRR"}
    assert lrr_jax.load_results(paths["lrr"], as_frame=False)[0]["label"] == "LRR"


def readme_block(after: str, index: int = 0, doc: str = "docs/OUTPUTS.md") -> str:
    """The `index`-th ```python block of a doc (the analysis example: docs/OUTPUTS.md)
    after the line `after`."""
    with open(os.path.join(REPO, doc)) as f:
        text = f.read()
    rest = text[text.index(after):]
    start = -1
    for _ in range(index + 1):
        start = rest.index("```python\n", start + 1)
    start += len("```python\n")
    return rest[start:rest.index("```", start)]


def _run_readme_example(code, paths, tmp_path):
    """The README's example, copied literally (only its two paths replaced), on a workdir;
    each curve is the per-level mean over the 2 seeds at the level's sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert code.count("/tmp/quick") == 1 and code.count("/tmp/acc.png") == 1
    out = tmp_path / "acc.png"
    code = code.replace("/tmp/quick", paths["root"] + "/multi").replace("/tmp/acc.png", str(out))
    plt.close("all")
    exec(compile(code, "docs/OUTPUTS.md", "exec"), {})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = plt.gca()
    assert sorted(ax.get_legend_handles_labels()[1]) == ["IMP", "LRR", "WR"]
    rows = lrr_jax.load_results(paths["root"] + "/multi", as_frame=False)
    for line, label in zip(*ax.get_legend_handles_labels()):
        xs, ys = line.lines[0].get_data()
        mine = [r for r in rows if r["label"] == label]
        assert len(xs) == LEVELS
        for level, (x, y) in enumerate(zip(xs, ys)):
            at = [r["test_acc"] for r in mine if r["level"] == level]
            assert len(at) == 2 and y == pytest.approx(sum(at) / 2)
            assert x == pytest.approx(1 - 0.8 ** level)
    plt.close("all")


def test_readme_analysis_example_works_without_pandas(paths, tmp_path, no_pandas):
    """The README's first command installs lrr_jax without pandas: its example runs so."""
    _run_readme_example(readme_block("## Analysis from Python"), paths, tmp_path)


def test_readme_analysis_example_with_pandas(paths, tmp_path):
    pytest.importorskip("pandas")
    code = readme_block("## Analysis from Python", index=1)
    assert "groupby" in code
    _run_readme_example(code, paths, tmp_path)
