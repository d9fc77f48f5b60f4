"""`gpuad bench`: the harness and the JSON schema at tiny sizes with one repeat (not timing), and the
pre-timing equality check that keeps a wrong implementation from being timed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gpuad.bench import _size
from gpuad.bench.cases import Case, Env, check_case, run_case
from gpuad.bench.harness import ResultMismatch, Timing, check_same, compare, format_table
from gpuad.bench.report import section
from gpuad.bench.suite_kernels import elementwise_cases
from gpuad.cli import main


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One in-process `gpuad bench --suite all` at size 1024 with one repeat, its JSON and plot."""
    out = tmp_path_factory.mktemp("bench")
    path, png = out / "bench.json", out / "bench.png"
    code = main(["bench", "--suite", "all", "--sizes", "1024", "--repeat", "1", "--min-time", "0",
                 "--compare", "torch", "--json", str(path), "--plot", str(png)])
    assert code == 0
    return json.loads(path.read_text()), png


def test_json_schema(recorded):
    result, png = recorded
    assert result["schema"] == "gpuad-bench/1"
    assert result["suites"] == ["kernels", "training", "memory"]
    machine = result["machine"]
    for key in ("python", "numpy", "gpuad", "processor", "cpus", "date", "command", "copy_bandwidth_gbs"):
        assert machine[key], key
    assert machine["command"].startswith("gpuad bench --suite all")
    assert png.stat().st_size > 10_000
    timed = [r for r in result["results"] if r["kind"] == "time"]
    assert {r["suite"] for r in timed} == {"kernels", "training"}
    for r in timed:
        assert r["reference"] in r["impls"], r["case"]
        for t in r["impls"].values():
            assert len(t["samples"]) == 1 and t["number"] >= 1 and t["median"] > 0
    cases = {r["case"] for r in timed}
    assert {"swish forward", "swish forward+backward", "sum", "matmul", "200-op elementwise chain fwd+bwd",
            "MLP step (ops)"} <= cases
    swish = next(r for r in timed if r["case"] == "swish forward")
    assert swish["size"] == 1024 and swish["bytes"] == 8 * 1024
    assert {"numpy chain", "gpuad op-by-op"} <= set(swish["impls"])
    memory = [r for r in result["results"] if r["kind"] == "memory"]
    assert len(memory) == 1
    peaks = memory[0]["impls"]
    assert peaks["gpuad retain_graph"]["peak_bytes"] > peaks["gpuad tape freeing"]["peak_bytes"] > 0


def test_report_states_machine_and_date(recorded, tmp_path):
    result, _ = recorded
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    text = section([str(path)])
    assert result["machine"]["date"] in text and result["machine"]["processor"] in text
    assert "| swish forward" not in text and "**swish forward**" in text


def _case(wrong_by: float, calls: list) -> Case:
    def ref():
        return np.arange(4.0)

    def other():
        calls.append(1)
        return np.arange(4.0) * wrong_by

    return Case("kernels", "toy", {"ref": ref, "other": other}, "ref", size=4)


def test_wrong_implementation_is_caught_before_timing():
    calls: list = []
    with pytest.raises(ResultMismatch, match="toy.*other differs from ref"):
        run_case(_case(1.01, calls), Env(compare=()))
    assert len(calls) == 1  # run once for the check, never timed


def test_wrong_gpuad_kernel_in_a_real_case_is_caught():
    env = Env(sizes=[1024], compare=())
    case = next(elementwise_cases(env, 1024))
    right = case.impls["gpuad op-by-op"]
    case.impls["gpuad op-by-op"] = lambda: right() * 1.001
    with pytest.raises(ResultMismatch, match="gpuad op-by-op"):
        check_case(case)


def test_failing_implementation_is_left_out_with_a_note():
    env = Env(compare=())

    def broken():
        raise RuntimeError("not built yet")

    case = Case("kernels", "toy", {"ref": lambda: np.ones(3), "broken": broken}, "ref")
    check_case(case, env)
    assert list(case.impls) == ["ref"] and "not built yet" in env.notes[0]
    with pytest.raises(RuntimeError):
        check_case(Case("kernels", "toy", {"ref": broken}, "ref"), env)


def test_check_same_tuples_and_tolerance():
    check_same({"a": (np.ones(3), 2.0), "b": [np.ones(3) + 1e-7, np.float32(2.0)]}, "a")
    with pytest.raises(ResultMismatch, match="returns 1 results"):
        check_same({"a": (np.ones(3), 2.0), "b": np.ones(3)}, "a")
    with pytest.raises(ResultMismatch, match="shapes"):
        check_same({"a": np.ones(3), "b": np.ones(4)}, "a")


def test_compare_round_robin_and_table():
    order = []
    timings = compare({"x": lambda: order.append("x"), "y": lambda: order.append("y")}, samples=3,
                      min_sample_s=0.0, pause_s=0.0)
    assert all(len(t.samples) == 3 for t in timings.values())
    assert order[-6:] == ["x", "y", "y", "x", "x", "y"]  # round r starts at implementation r mod n
    table = format_table({"a": Timing("a", [2e-6]), "b": Timing("b", [1e-6])}, ["a"], bytes_moved=8000, per=2)
    assert "0.50x" in table and "GB/s" in table and "per item" in table


def test_size_option():
    assert _size("2**10") == 1024 and _size("4096") == 4096


def test_unavailable_device_is_one_clear_line():
    import gpuad as ga

    if ga.cuda.is_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(SystemExit, match="gpuad bench: device 'cuda.*not available"):
        main(["bench", "--suite", "kernels", "--device", "cuda", "--sizes", "1024", "--repeat", "1"])


def test_report_checks_issue_2_targets(recorded, tmp_path):
    result, _ = recorded
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    text = section([str(path)], intro="### Notes\n\nhand-written analysis")
    chain = next(r for r in result["results"] if r["case"] == "200-op elementwise chain fwd+bwd")
    if "torch" in chain["impls"]:  # the per-op target is relative to PyTorch (not installed in CI)
        assert "Per-op cost (forward + backward, 8-element tensors)" in text and "target <= 1.00x" in text
    assert "MLP step 784-512-512-10" in text and "target <= 1.10x" in text
    assert text.index("hand-written analysis") < text.index("#### kernels")


def test_pin_threads_returns_when_already_pinned(monkeypatch):
    from gpuad.bench.harness import pin_threads

    for k, v in {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "NUMBA_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                 "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}.items():
        monkeypatch.setenv(k, v)
    pin_threads(1, ["-c", "raise SystemExit(3)"])  # no re-exec: returns here


def test_report_replaces_only_the_marked_readme_block(tmp_path):
    from gpuad.bench.report import END, START, replace_block

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nold numbers\n{END}\n\n## after\n")
    replace_block(readme, "## Performance\nnew numbers")
    assert readme.read_text() == f"# title\n\n{START}\n## Performance\nnew numbers\n{END}\n\n## after\n"
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(SystemExit, match="needs the lines"):
        replace_block(tmp_path / "plain.md", "x")
