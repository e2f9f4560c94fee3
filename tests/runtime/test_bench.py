import time

import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.bench import SETTLE_MS, bench_models, machine_info, parse_batches, percentiles, timed_turns, turn_orders


def test_bench_interleaves_models_and_reports_ratios(digits_run):
    fp32, int8 = digits_run / "model.fp32.onnx", digits_run / "model.int8.onnx"
    result = bench_models([fp32, int8], batches=[1, 4], warmup=2, runs=20)
    assert result["interleaved"] and result["threads"] == 1 and result["provider"] == "cpu"
    assert {"cpu", "machine", "onnxruntime", "cores"} <= set(result["machine"])
    rows = {(r["variant"], r["batch"]): r for r in result["results"]}
    assert set(rows) == {("fp32", 1), ("int8", 1), ("fp32", 4), ("int8", 4)}
    assert rows[("fp32", 1)]["speedup"] == 1.0
    for r in rows.values():
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / r["p50_ms"])
        assert r["size_bytes"] > 0
    assert rows[("int8", 4)]["speedup"] == pytest.approx(rows[("fp32", 4)]["p50_ms"] / rows[("int8", 4)]["p50_ms"])


def test_turn_orders_vary_who_runs_behind_whom():
    """Every turn runs each model once; across turns each model follows every other one, unlike a rotation."""
    orders = list(turn_orders(4, 200))
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    behind = {(a, b) for o in orders for a, b in zip(o, o[1:])}
    assert behind == {(a, b) for a in range(4) for b in range(4) if a != b}
    assert orders == list(turn_orders(4, 200))  # seeded: a rerun times in the same orders


def test_each_timed_call_follows_untimed_calls_of_the_same_model_for_the_settling_time():
    """A call shorter than SETTLE_MS is repeated untimed until that time has passed; a longer one
    settles with a single untimed call."""
    calls: list[tuple[int, float]] = []  # (model, when the call began)

    def model(i: int, seconds: float):
        def call():
            calls.append((i, time.perf_counter()))
            time.sleep(seconds)
        return call

    short, long = SETTLE_MS / 1e3 / 20, 2 * SETTLE_MS / 1e3
    timed, seen = [], 0
    for i, ms in timed_turns([model(0, short), model(1, long)], 4):
        timed.append((i, ms, calls[seen:]))  # the calls since the last timed one: its settling, then itself
        seen = len(calls)
    assert sorted(i for i, _, _ in timed) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all({m for m, _ in since} == {i} for i, _, since in timed)
    settling = [since[-1][1] - since[0][1] for i, _, since in timed if i == 0]  # from the first untimed call to the timed one
    assert all(s >= 0.9 * SETTLE_MS / 1e3 for s in settling)  # SETTLE_MS from just before the first call's start; one call takes a twentieth
    assert all(len(since) == 2 and ms >= 1e3 * long for i, ms, since in timed if i == 1)


def test_parse_batches():
    assert parse_batches("1,32") == [1, 32]
    for bad in ("", "0", "1,x", "-4"):
        with pytest.raises(EdgecnnError, match="--batch must be positive integers"):
            parse_batches(bad)


def test_percentiles_and_machine_info():
    stats = percentiles([1.0] * 98 + [10.0, 20.0])
    assert stats["p50_ms"] == 1.0 and stats["p99_ms"] > 9.0
    assert machine_info()["onnxruntime"]


def test_bench_refuses_nothing_to_measure(digits_run):
    with pytest.raises(EdgecnnError, match="at least one"):
        bench_models([])
    with pytest.raises(EdgecnnError, match="--runs"):
        bench_models([digits_run / "model.fp32.onnx"], runs=0)


def test_op_profile_shares_sum_to_one(digits_run):
    from edgecnn.runtime.bench import profile_model

    ops = profile_model(digits_run / "model.int8.onnx", batch=4, runs=5)["ops"]
    assert ops and abs(sum(o["share"] for o in ops) - 1.0) < 1e-6
    assert ops == sorted(ops, key=lambda o: -o["us_per_run"])
