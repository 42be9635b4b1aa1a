"""The BLAS thread policy (xpnet/threads.py): its decisions, and that a user's setting always wins."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import xpnet
import xpnet.experiments
from xpnet import threads
from xpnet.callbacks import Callback

A_MACS = 784 * 300 + 300 * 100 + 100 * 10  # model A: 266,200 multiply-adds per sample


@pytest.fixture(autouse=True)
def _no_user_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in threads.USER_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("macs", "batch", "cores", "ranks", "busy", "expected"),
    [
        (A_MACS, 32, 2, 1, 0, 2),  # model A, idle 2-core machine: 1.28x faster with 2
        (A_MACS, 32, 2, 1, 1, 1),  # one other busy process: 2 threads ran 2.4x slower
        (A_MACS, 512, 2, 2, 0, 1),  # 2 MPI ranks on 2 cores: one each
        (A_MACS, 512, 8, 2, 0, 4),  # never more than cores / ranks
        (A_MACS, 512, 8, 2, 2, 3),  # ... less what others keep busy
        (A_MACS, 512, 8, 1, 20, 1),  # at least one
        (784 * 128 + 1280, 32, 8, 1, 0, 1),  # model B at batch 32: 3.3M multiply-adds, too small to split
        (A_MACS, 4096, 1, 1, 0, 1),  # one core
    ],
)
def test_policy_decisions(macs: int, batch: int, cores: int, ranks: int, busy: int, expected: int) -> None:
    assert threads.choose_threads(macs, batch, cores, ranks, busy).threads == expected


def test_macs_per_sample_of_model_A() -> None:
    assert threads.macs_per_sample(xpnet.experiments.build_model("A")) == A_MACS


def test_macs_per_sample_counts_convolutions_over_their_output_pixels() -> None:
    # LeNet: conv 5·5·1·6 over 28×28 and 5·5·6·16 over 14×14, then dense 784·120 + 120·84 + 84·10
    lenet = xpnet.experiments.build_model("lenet")
    assert threads.macs_per_sample(lenet) == 150 * 784 + 2400 * 196 + 784 * 120 + 120 * 84 + 84 * 10
    assert threads.choose_threads(threads.macs_per_sample(lenet), 32, 2).threads == 2


def test_local_ranks_from_the_launcher() -> None:
    assert threads.local_ranks(4, {"MPI_LOCALNRANKS": "2"}) == 2
    assert threads.local_ranks(4, {"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}) == 4
    assert threads.local_ranks(3, {}) == 3


def test_busy_elsewhere_counts_no_negative() -> None:
    assert threads.busy_elsewhere(samples=2, interval=0.0) >= 0


@pytest.mark.parametrize("var", ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_blas_environment_variable_wins(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "3")
    decision = threads.decide(A_MACS, 4096)
    assert decision.threads is None and f"{var}=3" in decision.reason
    before = threads.current_threads()
    with threads.blas_threads_for(A_MACS, 4096):
        assert threads.current_threads() == before


def test_xpnet_variable_and_explicit_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_BLAS_THREADS", "1")
    assert threads.decide(A_MACS, 4096).threads == 1
    assert threads.decide(A_MACS, 4096, threads=2).threads == 2  # an explicit argument beats the variable
    monkeypatch.setenv("XPNET_BLAS_THREADS", "lots")
    with pytest.raises(ValueError, match="XPNET_BLAS_THREADS must be a positive number of threads, received 'lots'"):
        threads.decide(A_MACS, 32)


def test_block_sets_and_restores_the_limit() -> None:
    before = threads.current_threads()
    with threads.blas_threads_for(A_MACS, 32, threads=1) as decision:
        assert decision.threads == 1 and threads.current_threads() == 1
    assert threads.current_threads() == before


class _SeeThreads(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int | None] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.seen.append(threads.current_threads())


def _fit_and_see() -> list[int | None]:
    rng = np.random.default_rng(0)
    x, y = rng.random((512, 784), dtype=np.float32), rng.integers(0, 10, 512)
    model = xpnet.Sequential([xpnet.Dense(300, "relu", input_shape=(784,)), xpnet.Dense(10, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
    see = _SeeThreads()
    model.fit(x, y, batch_size=256, epochs=1, verbose=0, callbacks=[see])
    return see.seen


def test_fit_applies_the_policy_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    before = threads.current_threads()
    monkeypatch.setenv("XPNET_BLAS_THREADS", "1")
    assert _fit_and_see() == [1]
    assert threads.current_threads() == before


def test_fit_keeps_a_threadpoolctl_limit_set_around_it() -> None:
    # 256 x 238k multiply-adds would get every core on an idle machine; the caller's limit wins.
    with threadpool_limits(limits=1, user_api="blas"):
        assert _fit_and_see() == [1]


def test_fit_keeps_an_enclosing_block() -> None:
    with threads.blas_threads_for(A_MACS, 32, threads=1):
        assert _fit_and_see() == [1]


def test_a_thread_count_above_the_usable_cpus_is_capped_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.delenv("XPNET_BLAS_THREADS", raising=False)
    with pytest.warns(RuntimeWarning, match=r"^threads=8 is more than the 2 usable CPUs; using 2 BLAS threads$"):
        decision = threads.decide(A_MACS, 32, threads=8)
    assert decision.threads == 2 and "capped at the 2 usable CPUs" in str(decision)
    monkeypatch.setenv("XPNET_BLAS_THREADS", "64")
    with pytest.warns(RuntimeWarning, match=r"^XPNET_BLAS_THREADS=64 is more than the 2 usable CPUs"):
        assert threads.decide(A_MACS, 32).threads == 2
    monkeypatch.setenv("XPNET_BLAS_THREADS", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a count that fits pins the run, silently
        assert threads.decide(A_MACS, 32).threads == 2
        assert threads.decide(A_MACS, 32, threads=1).threads == 1


def test_cli_help_says_what_else_results_depend_on(capsys: pytest.CaptureFixture[str]) -> None:
    from xpnet import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "at most the usable CPUs" in text and "CPU model and the NumPy/BLAS build" in text
