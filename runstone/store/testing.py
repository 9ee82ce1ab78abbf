"""The contract every Store backend passes.

Layer 4 helper for tests (needs pytest and hypothesis, which the ``test``
extra installs). A backend's test module subclasses ``StoreContract`` and
provides a ``store`` fixture returning a new, empty store::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            with open_store(...) as s:
                yield s
"""

from __future__ import annotations

import math
import struct
import threading
import uuid
from array import array
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstone.entities import ArtifactSpec, Batch, MetricSeries, OutputChunk, RunSpec, RunStatus
from runstone.errors import AmbiguousError, NotFoundError, StateError, UsageError
from runstone.store.base import RunQuery, Store
from runstone.store.query import parse_filter, parse_order

__all__ = ["StoreContract", "make_batch", "make_spec"]


def make_spec(run_id: str, *, project: str = "proj", name: str = "run", start_ms: int = 1_000) -> RunSpec:
    return RunSpec(
        id=run_id,
        project=project,
        name=name,
        start_time_ms=start_ms,
        command=("python", "train.py", "--lr", "0.1"),
        cwd="/work",
        host="host-a",
        user="alice",
        pid=4242,
        runstone_version="0.0.test",
    )


def make_batch(run_id: str, **metrics: Any) -> Batch:
    """A batch with one series per keyword: key=(steps, values[, timestamps])."""
    series = []
    for key, spec in metrics.items():
        steps, values = spec[0], spec[1]
        stamps = spec[2] if len(spec) > 2 else [5_000 + s for s in steps]
        series.append(MetricSeries(key, array("q", steps), array("d", values), array("q", stamps)))
    return Batch(uuid.uuid4().hex, run_id, metrics=tuple(series))


def _id(n: int) -> str:
    return f"{n:032x}"


def _bits(values: Any) -> list[int]:
    return [struct.unpack("<q", struct.pack("<d", float(v)))[0] for v in values]


class StoreContract:
    """Behaviour every store must show. Subclasses provide the ``store`` fixture."""

    # --- runs -----------------------------------------------------------------

    def test_create_and_get_round_trip(self, store: Store) -> None:
        store.create_run(make_spec(_id(1), name="first"))
        run = store.get_run(_id(1))
        assert run.id == _id(1)
        assert run.project == "proj"
        assert run.name == "first"
        assert run.status is RunStatus.RUNNING
        assert run.command == ("python", "train.py", "--lr", "0.1")
        assert (run.cwd, run.host, run.user, run.pid) == ("/work", "host-a", "alice", 4242)
        assert run.start_time_ms == 1_000
        assert run.end_time_ms is None
        assert run.config == {}
        assert run.config_digest.startswith("sha256:")
        assert run.metrics == {} and run.params == {} and run.tags == {}

    def test_create_is_idempotent(self, store: Store) -> None:
        store.create_run(make_spec(_id(1), name="first"))
        store.create_run(make_spec(_id(1), name="second"))
        assert store.get_run(_id(1)).name == "first"
        assert store.run_ids() == [_id(1)]

    def test_get_missing_run_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError, match=_id(9)):
            store.get_run(_id(9))

    # --- metrics --------------------------------------------------------------

    def test_metric_history_round_trips_bit_for_bit(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        values = [0.5, -0.0, 0.0, math.inf, -math.inf, math.nan, 1e-310, 1.7976931348623157e308]
        store.apply_batch(make_batch(_id(1), loss=(list(range(len(values))), values)))
        history = store.get_run(_id(1)), store.metric_history(_id(1), "loss")
        hist = history[1]
        assert hist.steps.tolist() == list(range(len(values)))
        assert _bits(hist.values.tolist()) == _bits(values)
        assert hist.timestamps_ms.tolist() == [5_000 + s for s in range(len(values))]

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
    )
    @given(
        points=st.lists(
            st.tuples(st.integers(0, 2**63 - 1), st.floats(width=64), st.integers(0, 2**62)),
            min_size=1,
            max_size=60,
        )
    )
    def test_metric_round_trip_property(self, store: Store, points: list[tuple[int, float, int]]) -> None:
        run_id = uuid.uuid4().hex
        store.create_run(make_spec(run_id))
        steps, values, stamps = zip(*points, strict=True)
        store.apply_batch(make_batch(run_id, m=(list(steps), list(values), list(stamps))))
        expected: dict[int, tuple[float, int]] = {}
        for step, value, stamp in points:
            expected[step] = (value, stamp)  # the last-logged value of a step wins
        hist = store.metric_history(run_id, "m")
        assert hist.steps.tolist() == sorted(expected)
        assert _bits(hist.values.tolist()) == _bits(expected[s][0] for s in sorted(expected))
        assert hist.timestamps_ms.tolist() == [expected[s][1] for s in sorted(expected)]

    def test_summary_last_min_max_count(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), acc=([0, 1, 2], [0.5, 0.9, 0.7])))
        store.apply_batch(make_batch(_id(1), acc=([3, 4], [math.nan, 0.1])))
        summary = store.get_run(_id(1)).metrics["acc"]
        assert summary.last_value == 0.1
        assert summary.last_step == 4
        assert (summary.min_value, summary.max_value, summary.count) == (0.1, 0.9, 5)

    def test_summary_last_is_by_step_not_arrival(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), acc=([10], [0.9])))
        store.apply_batch(make_batch(_id(1), acc=([5], [0.1])))
        assert store.get_run(_id(1)).metrics["acc"].last_value == 0.9

    def test_nan_last_value_reads_back_as_nan(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), x=([0], [math.nan])))
        summary = store.get_run(_id(1)).metrics["x"]
        assert math.isnan(summary.last_value)
        assert summary.min_value is None and summary.max_value is None

    def test_repeated_and_unordered_steps_last_logged_wins(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), m=([0, 1, 2], [0.0, 1.0, 2.0])))
        store.apply_batch(make_batch(_id(1), m=([1, 5, 3], [10.0, 50.0, 30.0])))
        hist = store.metric_history(_id(1), "m")
        assert hist.steps.tolist() == [0, 1, 2, 3, 5]
        assert hist.values.tolist() == [0.0, 10.0, 2.0, 30.0, 50.0]

    def test_summary_forgets_overwritten_points(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), m=([0], [0.1])))
        store.apply_batch(make_batch(_id(1), m=([0, 1], [5.0, 7.0])))
        summary = store.get_run(_id(1)).metrics["m"]
        assert (summary.min_value, summary.max_value, summary.count, summary.last_value) == (5.0, 7.0, 2, 7.0)
        store.create_run(make_spec(_id(2)))
        store.apply_batch(make_batch(_id(2), m=([3, 3, 2], [1.0, math.nan, 4.0])))  # repeats in one batch
        summary = store.get_run(_id(2)).metrics["m"]
        assert (summary.min_value, summary.max_value, summary.count, summary.last_step) == (4.0, 4.0, 2, 3)
        assert math.isnan(summary.last_value)
        assert store.find_runs(RunQuery(filter=parse_filter("min(metrics.m) < 1"))) == []

    def test_many_keys_and_a_key_twice_in_one_batch_as_if_sent_one_by_one(self, store: Store) -> None:
        def series(key: str, steps: list[int], value: float) -> MetricSeries:
            return MetricSeries(key, array("q", steps), array("d", [value] * len(steps)), array("q", steps))

        parts = [series(f"k{i}", [0, 1, 2], float(i)) for i in range(700)]  # past one IN (...) list
        parts += [series("a", [0, 1], 1.0), series("b", [0], 2.0), series("a", [1, 2], 3.0)]
        store.create_run(make_spec(_id(1)))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), metrics=tuple(parts)))
        store.create_run(make_spec(_id(2)))
        for part in parts:
            store.apply_batch(Batch(uuid.uuid4().hex, _id(2), metrics=(part,)))
        together, one_by_one = store.get_run(_id(1)).metrics, store.get_run(_id(2)).metrics
        assert len(together) == 702 and together == one_by_one
        assert together["a"].count == 3 and together["a"].last_value == 3.0
        for key in ("a", "k699"):
            first, second = store.metric_history(_id(1), key), store.metric_history(_id(2), key)
            assert list(first.steps) == list(second.steps) and list(first.values) == list(second.values)

    def test_long_series_spans_chunks(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        n = 150_000
        steps = list(range(0, 2 * n, 2))  # not consecutive: stored explicitly
        store.apply_batch(make_batch(_id(1), m=(steps, [float(s) for s in steps], [1] * n)))
        hist = store.metric_history(_id(1), "m")
        assert len(hist) == n
        assert hist.steps[-1] == 2 * (n - 1)
        assert bool((hist.values == hist.steps.astype(float)).all())

    def test_missing_metric_lists_known_ones(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), loss=([0], [1.0])))
        with pytest.raises(NotFoundError, match="'loss'"):
            store.metric_history(_id(1), "acc")

    def test_batch_for_missing_run_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError):
            store.apply_batch(make_batch(_id(7), loss=([0], [1.0])))

    # --- idempotent batches ---------------------------------------------------

    def test_applying_a_batch_twice_changes_nothing(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        batch = make_batch(_id(1), loss=([0, 1], [1.0, 0.5]))
        batch = Batch(
            batch.batch_id,
            batch.run_id,
            metrics=batch.metrics,
            params={"lr": 0.1},
            tags={"a": "b"},
            output=(OutputChunk(0, b"hello\n"),),
        )
        assert store.apply_batch(batch) is True
        assert store.apply_batch(batch) is False
        run = store.get_run(_id(1))
        assert run.metrics["loss"].count == 2
        assert len(store.metric_history(_id(1), "loss")) == 2
        assert store.read_output(_id(1)) == b"hello\n"
        assert run.params == {"lr": 0.1}

    # --- params, tags, output -------------------------------------------------

    def test_params_merge_flatten_and_digest(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        tree = {"lr": 0.1, "model": {"depth": 3, "act": "relu"}, "layers": [64, 32], "flag": True}
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), params=tree))
        run = store.get_run(_id(1))
        assert run.config == tree
        assert run.params == {
            "flag": True,
            "layers": [64, 32],
            "lr": 0.1,
            "model.act": "relu",
            "model.depth": 3,
        }
        store.create_run(make_spec(_id(2)))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(2), params=dict(reversed(list(tree.items())))))
        assert store.get_run(_id(2)).config_digest == run.config_digest
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), params={"model": {"depth": 4}, "new": None}))
        run = store.get_run(_id(1))
        assert run.config["model"] == {"depth": 4, "act": "relu"}
        assert run.params["model.depth"] == 4 and run.params["new"] is None
        assert run.config_digest != store.get_run(_id(2)).config_digest

    def test_replacing_a_subtree_drops_its_old_leaves(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), params={"opt": {"lr": 0.1}}))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), params={"opt": "sgd"}))
        assert store.get_run(_id(1)).params == {"opt": "sgd"}

    def test_output_chunks_concatenate_in_order(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), output=(OutputChunk(6, b"world\n"),)))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), output=(OutputChunk(0, b"hello "),)))
        assert store.read_output(_id(1)) == b"hello world\n"
        assert store.get_run(_id(1)).output_size_bytes == 12

    def test_records_round_trip_and_replace(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        assert store.get_records(_id(1)) == {}
        code = {"status": "ok", "kind": "git", "git": {"commit": "ab" * 20, "dirty": True}}
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), records={"code": code}))
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), records={"seeds": {"status": "ok", "seed": 0}}))
        assert store.get_records(_id(1)) == {"code": code, "seeds": {"status": "ok", "seed": 0}}
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), records={"seeds": {"status": "ok", "seed": 1}}))
        assert store.get_records(_id(1))["seeds"]["seed"] == 1
        with pytest.raises(NotFoundError):
            store.get_records(_id(9))

    # --- lifecycle ------------------------------------------------------------

    def test_finish_and_only_tags_change_afterwards(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), loss=([0], [1.0])))
        store.finish_run(_id(1), status=RunStatus.FAILED, end_time_ms=9_000, exit_code=3, error="boom")
        run = store.get_run(_id(1))
        assert (run.status, run.end_time_ms, run.exit_code, run.error) == (
            RunStatus.FAILED,
            9_000,
            3,
            "boom",
        )
        assert run.duration_s == 8.0
        with pytest.raises(StateError, match="ended"):
            store.apply_batch(make_batch(_id(1), loss=([1], [2.0])))
        assert store.get_run(_id(1)).metrics["loss"].count == 1
        store.apply_batch(Batch(uuid.uuid4().hex, _id(1), tags={"reviewed": "yes"}))
        assert store.get_run(_id(1)).tags == {"reviewed": "yes"}

    def test_metric_chunks_replay_to_the_same_digests(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(
            make_batch(_id(1), loss=([0, 1, 2], [1.0, 0.5, math.nan]), acc=([5, 9], [0.1, 0.2]))
        )
        store.apply_batch(make_batch(_id(1), loss=([2, 3], [0.25, -0.0])))  # step 2 again: replaced
        chunks = store.metric_chunks(_id(1))
        assert [(c.key, list(c.steps)) for c in chunks] == [
            ("loss", [0, 1, 2]),
            ("acc", [5, 9]),
            ("loss", [2, 3]),
        ]
        store.create_run(make_spec(_id(2)))
        for i, chunk in enumerate(chunks):
            store.apply_batch(Batch(f"replay-{i}", _id(2), metrics=(chunk,)))
        assert store.metric_digests(_id(2)) == store.metric_digests(_id(1))
        assert _bits(store.metric_history(_id(2), "loss").values) == _bits([1.0, 0.5, 0.25, -0.0])
        with pytest.raises(NotFoundError):
            store.metric_chunks(_id(9))

    def test_finish_twice(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.finish_run(_id(1), status=RunStatus.FINISHED, end_time_ms=2_000)
        store.finish_run(_id(1), status=RunStatus.FINISHED, end_time_ms=3_000)  # a retry
        assert store.get_run(_id(1)).end_time_ms == 2_000
        with pytest.raises(StateError, match="already ended as finished"):
            store.finish_run(_id(1), status=RunStatus.KILLED, end_time_ms=4_000)
        with pytest.raises(NotFoundError):
            store.finish_run(_id(5), status=RunStatus.KILLED, end_time_ms=4_000)

    def test_crash_and_revival(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.create_run(make_spec(_id(2)))
        store.finish_run(_id(2), status=RunStatus.FINISHED, end_time_ms=2_000)
        assert [r.id for r in store.live_runs()] == [_id(1)]
        assert store.mark_crashed(_id(1), end_time_ms=1_500) is True
        assert store.mark_crashed(_id(2), end_time_ms=1_500) is False
        assert store.get_run(_id(1)).status is RunStatus.CRASHED
        assert store.live_runs() == []
        store.heartbeat(_id(1), 3_000)  # it was only suspended
        run = store.get_run(_id(1))
        assert (run.status, run.heartbeat_ms, run.end_time_ms) == (RunStatus.RUNNING, 3_000, None)
        store.heartbeat(_id(2), 3_000)
        assert store.get_run(_id(2)).status is RunStatus.FINISHED

    # --- IDs ------------------------------------------------------------------

    def test_resolve_run_id_by_prefix(self, store: Store) -> None:
        store.create_run(make_spec("0194aaaa" + "0" * 24))
        store.create_run(make_spec("0194aaab" + "0" * 24))
        store.create_run(make_spec("0194bbbb" + "0" * 24))
        assert store.resolve_run_id("0194b") == "0194bbbb" + "0" * 24
        assert store.resolve_run_id("0194-BBBB") == "0194bbbb" + "0" * 24
        with pytest.raises(AmbiguousError, match="matches 2 runs") as info:
            store.resolve_run_id("0194aa")
        assert len(info.value.candidates) == 2
        with pytest.raises(NotFoundError):
            store.resolve_run_id("0195")
        with pytest.raises(UsageError, match="not a run ID"):
            store.resolve_run_id("xyz")
        assert store.unique_prefix_length() == 8
        assert store.unique_prefix_length(minimum=4) == 8  # 0194aaaa vs 0194aaab

    # --- search ---------------------------------------------------------------

    def _three_runs(self, store: Store) -> None:
        for n, (lr, acc, opt, stage, project) in enumerate(
            [
                (0.1, 0.95, "adam", "dev", "p1"),
                (0.01, 0.80, "sgd", "prod", "p1"),
                (0.01, 0.99, "adam", "dev", "p2"),
            ],
            start=1,
        ):
            store.create_run(make_spec(_id(n), project=project, name=f"run-{opt}-{n}", start_ms=n * 1000))
            store.apply_batch(
                Batch(
                    uuid.uuid4().hex,
                    _id(n),
                    metrics=make_batch(
                        _id(n), acc=([0, 1], [0.5, acc]), loss=([0, 1], [1.0, 1 - acc])
                    ).metrics,
                    params={"lr": lr, "optimizer": {"name": opt}},
                    tags={"stage": stage},
                )
            )
        store.finish_run(_id(2), status=RunStatus.FAILED, end_time_ms=5_000)

    def _ids(self, store: Store, text: str | None = None, order: str = "", **kw: Any) -> list[int]:
        query = RunQuery(
            filter=parse_filter(text) if text else None, order_by=parse_order(order) if order else (), **kw
        )
        return [int(r.id, 16) for r in store.find_runs(query)]

    def test_find_runs_filters(self, store: Store) -> None:
        self._three_runs(store)
        ids = self._ids
        assert ids(store) == [3, 2, 1]  # newest first by default
        assert ids(store, "metrics.acc > 0.9") == [3, 1]
        assert ids(store, "metrics.acc > 0.9 and params.lr = 0.01") == [3]
        assert ids(store, "params.lr = '0.01'") == [3, 2]
        assert ids(store, "params.optimizer.name = adam or status = failed") == [3, 2, 1]
        assert ids(store, "not (tags.stage = 'dev')") == [2]
        assert ids(store, "tags.stage in ('prod', 'qa')") == [2]
        assert ids(store, "tags.stage not in ('prod')") == [3, 1]
        # a run without the tag matches neither `in` nor `not in` (as with = and !=)
        assert ids(store, "tags.nope in ('x')") == [] and ids(store, "tags.nope not in ('x')") == []
        assert ids(store, "name like 'RUN-ADAM%'") == [3, 1]
        assert ids(store, "min(metrics.loss) < 0.1") == [3, 1]
        assert ids(store, "max(metrics.acc) >= 0.99") == [3]
        assert ids(store, "count(metrics.acc) = 2") == [3, 2, 1]
        assert ids(store, "metrics.nope > 0") == []
        assert ids(store, "metrics.nope is null") == [3, 2, 1]
        assert ids(store, "tags.stage is not null and project = p2") == [3]
        assert ids(store, "duration_s = 3") == [2]
        assert ids(store, "started > '1970-01-01T00:00:01.5Z'") == [3, 2]
        assert ids(store, "status = running") == [3, 1]

    def test_artifacts_get_versions_by_content(self, store: Store) -> None:
        store.create_run(make_spec(_id(1), project="p", start_ms=1000))
        store.create_run(make_spec(_id(2), project="p", start_ms=2000))
        store.create_run(make_spec(_id(3), project="other", start_ms=3000))

        def spec(digest_char: str, **kw: Any) -> ArtifactSpec:
            fields: dict[str, Any] = {
                "name": "model",
                "kind": "model",
                "digest": "sha256:" + digest_char * 64,
                "size_bytes": 10,
                "file_count": 1,
                "is_dir": False,
                "stored": True,
                "metadata": {"acc": 0.9},
            }
            fields.update(kw)
            return ArtifactSpec(**fields)

        v1 = store.record_artifact(_id(1), spec("a"), direction="output", path="m.pt", time_ms=10)
        assert (v1.version, v1.run_id, v1.project, v1.ref) == (1, _id(1), "p", "model@v1")
        again = store.record_artifact(_id(1), spec("a"), direction="output", path="m.pt", time_ms=11)
        assert again == v1
        v2 = store.record_artifact(_id(1), spec("b"), direction="output", path="m.pt", time_ms=12)
        assert v2.version == 2 and v2.metadata == {"acc": 0.9}
        used = store.record_artifact(_id(2), spec("a"), direction="input", path="/abs/m.pt", time_ms=13)
        assert used == v1  # the producer stays the run that made it
        store.record_artifact(_id(3), spec("c"), direction="output", path="x", time_ms=14)
        data = store.record_artifact(
            _id(2),
            spec("d", name="data", kind="dataset", stored=False, is_dir=True, file_count=3),
            direction="input",
            path="data/",
            time_ms=15,
        )
        assert (data.version, data.run_id, data.stored, data.is_dir) == (1, None, False, True)
        uses = store.run_artifacts(_id(1))
        assert [(u.artifact.ref, u.direction, u.path) for u in uses] == [
            ("model@v1", "output", "m.pt"),
            ("model@v2", "output", "m.pt"),
        ]
        assert [(u.artifact.ref, u.direction) for u in store.run_artifacts(_id(2))] == [
            ("model@v1", "input"),
            ("data@v1", "input"),
        ]
        assert [a.ref for a in store.artifact_versions("p", "model")] == ["model@v1", "model@v2"]
        assert store.resolve_artifact("model", project="p") == v2
        assert store.resolve_artifact("model@v1", project="p") == v1
        assert store.resolve_artifact("model@1", project="p") == v1
        assert store.resolve_artifact("model@latest", project="p") == v2
        assert store.resolve_artifact("model@bbbb", project="p") == v2
        assert store.resolve_artifact("sha256:aaaa") == v1
        assert store.resolve_artifact("data") == data
        with pytest.raises(AmbiguousError, match="several projects"):
            store.resolve_artifact("model")
        with pytest.raises(NotFoundError, match=r"no version v9 \(versions: model@v1, model@v2\)"):
            store.resolve_artifact("model@v9", project="p")
        with pytest.raises(NotFoundError, match="No artifact named 'nope'"):
            store.resolve_artifact("nope")
        assert store.artifact_users(v1) == [(_id(1), "output"), (_id(2), "input")]
        refs = store.referenced_objects()
        assert refs == {"sha256:" + c * 64: False for c in "abc"}  # the unstored dataset is not an object
        with pytest.raises(UsageError, match="input or an output"):
            store.record_artifact(_id(1), spec("e"), direction="sideways", path="x", time_ms=1)
        with pytest.raises(NotFoundError):
            store.run_artifacts("f" * 32)

    def test_seal_and_metric_digests(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), loss=([0, 1], [1.0, 0.5])))
        first = store.metric_digests(_id(1))
        assert first["loss"]["count"] == 2 and first["loss"]["digest"].startswith("sha256:")
        store.apply_batch(make_batch(_id(1), loss=([2], [0.25])))
        assert store.metric_digests(_id(1))["loss"] != first["loss"]
        with pytest.raises(StateError, match="still running"):
            store.seal_run(_id(1), {"digest": "sha256:x"})
        store.finish_run(_id(1), status=RunStatus.FINISHED, end_time_ms=5_000)
        assert store.seal_run(_id(1), {"digest": "sha256:x", "manifest": {"a": 1}})
        assert not store.seal_run(_id(1), {"digest": "sha256:y"})  # sealed once
        assert store.get_records(_id(1))["manifest"] == {"digest": "sha256:x", "manifest": {"a": 1}}

    def test_reopen_a_run_and_supersede_its_later_steps(self, store: Store) -> None:
        store.create_run(make_spec(_id(1)))
        store.apply_batch(make_batch(_id(1), loss=(list(range(10)), [float(i) for i in range(10)])))
        store.apply_batch(make_batch(_id(1), acc=([2, 4, 6, 8], [0.2, 0.4, 0.6, 0.8])))
        store.apply_batch(make_batch(_id(1), late=([7, 9], [7.0, 9.0])))
        with pytest.raises(StateError, match="still running"):
            store.reopen_run(_id(1), time_ms=9_000, host="h", pid=1, entry={})
        store.finish_run(_id(1), status=RunStatus.KILLED, end_time_ms=6_000, error="SIGKILL")
        assert store.seal_run(_id(1), {"digest": "sha256:x"})
        before = store.reopen_run(_id(1), time_ms=9_000, host="host-b", pid=77, entry={"time_ms": 9_000})
        assert (before.status, before.end_time_ms, before.error) == (RunStatus.KILLED, 6_000, "SIGKILL")
        run = store.get_run(_id(1))
        assert (run.status, run.end_time_ms, run.error, run.host, run.pid) == (
            RunStatus.RUNNING,
            None,
            None,
            "host-b",
            77,
        )
        records = store.get_records(_id(1))
        assert "manifest" not in records
        assert records["resumes"] == {
            "resumes": [
                {
                    "time_ms": 9_000,
                    "previous": {
                        "status": "killed",
                        "end_time_ms": 6_000,
                        "exit_code": None,
                        "error": "SIGKILL",
                    },
                }
            ]
        }
        assert store.supersede_metrics(_id(1), 5) == {"loss": 4, "acc": 2, "late": 2}
        loss = store.metric_history(_id(1), "loss")
        assert list(loss.steps) == [0, 1, 2, 3, 4, 5] and list(loss.values) == [0, 1, 2, 3, 4, 5]
        assert list(store.metric_history(_id(1), "acc").steps) == [2, 4]
        summary = store.get_run(_id(1)).metrics
        assert "late" not in summary
        assert (summary["loss"].last_step, summary["loss"].count, summary["loss"].max_value) == (5, 6, 5.0)
        assert summary["acc"].last_value == 0.4
        with pytest.raises(NotFoundError):
            store.metric_history(_id(1), "late")
        assert store.supersede_metrics(_id(1), 5) == {}
        # points logged again after the cut continue the series; a later write still wins
        store.apply_batch(make_batch(_id(1), loss=([5, 6], [50.0, 60.0])))
        assert list(store.metric_history(_id(1), "loss").values) == [0, 1, 2, 3, 4, 50, 60]
        store.finish_run(_id(1), status=RunStatus.FINISHED, end_time_ms=10_000)
        store.reopen_run(_id(1), time_ms=11_000, host="h", pid=2, entry={"n": 2})
        assert [r.get("n") for r in store.get_records(_id(1))["resumes"]["resumes"]] == [None, 2]
        with pytest.raises(NotFoundError):
            store.reopen_run("f" * 32, time_ms=1, host="h", pid=1, entry={})

    def test_delete_an_artifact_only_its_maker_uses(self, store: Store) -> None:
        store.create_run(make_spec(_id(1), start_ms=1000))
        store.create_run(make_spec(_id(2), start_ms=2000))

        def spec(char: str) -> ArtifactSpec:
            return ArtifactSpec("ckpt", "checkpoint", "sha256:" + char * 64, 1, 1, False, True, {})

        v1 = store.record_artifact(_id(1), spec("a"), direction="output", path="x", time_ms=1)
        v2 = store.record_artifact(_id(1), spec("b"), direction="output", path="x", time_ms=2)
        v3 = store.record_artifact(_id(1), spec("c"), direction="output", path="x", time_ms=3)
        store.record_artifact(_id(2), spec("b"), direction="input", path="x", time_ms=4)
        assert not store.delete_artifact(v1, _id(2))  # not the maker
        assert not store.delete_artifact(v2, _id(1))  # another run uses it
        assert store.delete_artifact(v1, _id(1))
        assert not store.delete_artifact(v1, _id(1))  # already gone
        assert [a.ref for a in store.artifact_versions(None, "ckpt")] == ["ckpt@v2", "ckpt@v3"]
        assert [u.artifact.ref for u in store.run_artifacts(_id(1))] == ["ckpt@v2", "ckpt@v3"]
        assert "sha256:" + "a" * 64 not in store.referenced_objects()
        assert store.delete_artifact(v3, _id(1))
        assert store.record_artifact(_id(1), spec("d"), direction="output", path="x", time_ms=5).version == 3

    def test_a_param_set_to_null_is_null(self, store: Store) -> None:
        for n, value in enumerate([None, 0, "none"], start=1):
            store.create_run(make_spec(_id(n), start_ms=n * 1000))
            store.apply_batch(Batch(uuid.uuid4().hex, _id(n), params={"x": value}))
        store.create_run(make_spec(_id(4), start_ms=4000))
        assert self._ids(store, "params.x is null") == [4, 1]
        assert self._ids(store, "params.x is not null") == [3, 2]

    def test_find_runs_order_limit_offset_project(self, store: Store) -> None:
        self._three_runs(store)
        ids = self._ids
        assert ids(store, order="-metrics.acc") == [3, 1, 2]
        assert ids(store, order="metrics.acc") == [2, 1, 3]
        assert ids(store, order="params.lr,-name") == [2, 3, 1]
        assert ids(store, order="-metrics.acc", limit=2) == [3, 1]
        assert ids(store, order="-metrics.acc", limit=2, offset=1) == [1, 2]
        assert ids(store, order="-metrics.acc", offset=2) == [2]
        assert ids(store, project="p1") == [2, 1]
        assert ids(store, order="metrics.missing") == [3, 2, 1]  # missing sorts last, then newest
        assert store.count_runs(RunQuery(filter=parse_filter("metrics.acc > 0.9"))) == 2
        assert store.count_runs(RunQuery(project="p2")) == 1

    # --- concurrency ----------------------------------------------------------

    def test_concurrent_batches_from_threads_lose_nothing(self, store: Store) -> None:
        threads_n, batches_n, points_n = 4, 25, 40
        for t in range(threads_n):
            store.create_run(make_spec(_id(t + 1)))
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for b in range(batches_n):
                    steps = list(range(b * points_n, (b + 1) * points_n))
                    store.apply_batch(make_batch(_id(t + 1), shared=(steps, [float(s) for s in steps])))
                    # every thread also writes to run 1, under its own key
                    store.apply_batch(make_batch(_id(1), **{f"t{t}": (steps, [1.0] * points_n)}))
            except BaseException as e:  # reported below
                errors.append(e)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        for t in range(threads_n):
            assert len(store.metric_history(_id(t + 1), "shared")) == batches_n * points_n
            assert store.get_run(_id(1)).metrics[f"t{t}"].count == batches_n * points_n
