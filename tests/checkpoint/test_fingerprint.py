"""run.fingerprint: a per-step digest of model state that sees a one-ulp change, the same in numpy and PyTorch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import runstone
from runstone import Client
from runstone.api import fingerprint as fp
from runstone.api.fingerprint import fingerprint
from runstone.errors import UsageError
from tests.conftest import child_env, runstone_cmd

torch = pytest.importorskip("torch")


def _next_ulp(array: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    changed = array.copy()
    changed[index] = np.nextafter(changed[index], np.inf, dtype=array.dtype)
    return changed


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_a_one_ulp_change_in_one_weight_changes_the_fingerprint(dtype: type) -> None:
    rng = np.random.default_rng(0)
    weights = {"a": rng.normal(size=(64, 32)).astype(dtype), "b": rng.normal(size=7).astype(dtype)}
    before = fingerprint(weights)
    assert len(before) == 12 and int(before, 16) >= 0
    assert fingerprint({k: v.copy() for k, v in weights.items()}) == before  # content, not identity
    for name, index in (("a", (63, 31)), ("a", (0, 0)), ("b", (3,))):
        changed = {**weights, name: _next_ulp(weights[name], index)}
        assert fingerprint(changed) != before


def test_numpy_and_torch_agree_on_the_same_bits_on_any_device() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    assert fingerprint(model) == fingerprint(model.state_dict()) == fingerprint(state)
    with torch.no_grad():
        model[0].weight[1, 2] = torch.nextafter(model[0].weight[1, 2], torch.tensor(1.0))
    assert fingerprint(model) != fingerprint(state)
    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
        assert fingerprint(model.cuda()) == fingerprint(model.cpu())


def test_bfloat16_and_integer_buffers_count() -> None:
    model = torch.nn.Linear(8, 8).to(torch.bfloat16)
    before = fingerprint(model)
    with torch.no_grad():
        flat = model.weight.view(-1)
        flat[5] = torch.nextafter(flat[5].float(), torch.tensor(10.0)).to(torch.bfloat16)
        if fingerprint(model) == before:  # the float32 step may round back: step the bf16 bits
            bits = model.weight.view(torch.int16).view(-1)
            bits[5] += 1
    assert fingerprint(model) != before
    norm = torch.nn.BatchNorm1d(3)
    counted = fingerprint(norm)
    norm.num_batches_tracked += 1  # an int64 buffer
    assert fingerprint(norm) != counted


def test_names_shapes_and_dtypes_are_part_of_it() -> None:
    values = np.arange(6, dtype=np.float32)
    assert fingerprint({"w": values}) != fingerprint({"v": values})
    assert fingerprint({"w": values}) != fingerprint({"w": values.reshape(2, 3)})
    assert fingerprint({"w": values}) != fingerprint({"w": values.view(np.int32)})


def test_a_fitted_scikit_learn_estimator() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Ridge

    x, y = load_digits(return_X_y=True)
    model = Ridge()
    with pytest.raises(UsageError, match="fit it first"):
        fingerprint(model)
    model.fit(x[:300], y[:300])
    first = fingerprint(model)
    model.coef_[0] = np.nextafter(model.coef_[0], np.inf)
    assert fingerprint(model) != first


def test_what_cannot_be_fingerprinted_is_refused() -> None:
    with pytest.raises(UsageError, match="Cannot fingerprint a builtins.object"):
        fingerprint(object())
    with pytest.raises(UsageError, match="holds no tensors"):
        fingerprint({})


def test_fingerprints_form_a_series_per_run(workdir: Path) -> None:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with runstone.init(project="p", name="fp") as run:
        seen = {}
        for step in range(5):
            opt.zero_grad()
            model(torch.ones(2, 3)).sum().backward()
            opt.step()
            run.log({"loss": 1.0}, step=step)
            seen[step] = run.fingerprint(model)  # at the step of the latest log call
        seen[4] = run.fingerprint({"w": model.weight.detach().numpy()}, step=4, name="weight")
        with pytest.raises(UsageError, match="keeps for its own series"):
            run.log({"runstone.fingerprint/model": 1.0})
    client = Client()
    series = client.fingerprints(run.id)
    assert list(series) == [0, 1, 2, 3, 4] and len(set(series.values())) == 5
    assert series[3] == seen[3]
    assert client.fingerprints(run.id, "weight") == {4: seen[4]}
    with pytest.raises(runstone.RunstoneError, match="it has: model, weight"):
        client.fingerprints(run.id, "ema")
    shown = subprocess.run(
        [*runstone_cmd(), "show", "fp"], env=child_env(), capture_output=True, text=True, check=True
    ).stdout
    assert f"model: 5 steps, {seen[3]}" not in shown and f"{series[4]} at step 4" in shown
    assert "runstone.fingerprint" not in shown  # kept out of the metrics table
    listed = subprocess.run([*runstone_cmd(), "ls"], env=child_env(), capture_output=True, text=True).stdout
    assert "metrics.loss" in listed and "fingerprint" not in listed


def test_moved_values_change_it_and_numpy_matches_torch_at_any_size() -> None:
    w = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert fingerprint({"w": w}) != fingerprint({"w": w.T.copy()})  # a transpose
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    assert fingerprint({"a": a, "b": b}) != fingerprint({"a": b, "b": a})  # values exchanged
    rng = np.random.default_rng(1)
    for sizes in ([1], [1023, 1, 5000], [2048, 3], [700, 700, 700]):  # rows of 1,024 cut anywhere
        arrays = {f"t{i}": rng.normal(size=n).astype(np.float32) for i, n in enumerate(sizes)}
        tensors = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
        assert fingerprint(arrays) == fingerprint(tensors)
        columns = fp._torch_columns(torch, [t.view(torch.int32) for t in tensors.values()]).numpy()
        assert columns.tolist() == fp._numpy_columns(np, [v.view(np.int32) for v in arrays.values()]).tolist()


def test_odd_tensors_and_arrays() -> None:
    z = torch.tensor([1 + 2j, 3 - 1j])
    assert fingerprint({"z": z.conj()}) == fingerprint({"z": z.conj().resolve_conj()})
    assert fingerprint({"z": z.conj()}) != fingerprint({"z": z})
    assert fingerprint({"x": z.conj().imag}) == fingerprint({"x": z.conj().imag.clone()})
    with pytest.raises(UsageError, match="sparse_coo tensor cannot be fingerprinted"):
        fingerprint({"s": torch.eye(3).to_sparse()})
    long = np.array([1.5, 2.5], dtype=np.longdouble)
    assert len({fingerprint({"x": long.copy()}) for _ in range(5)}) == 1  # padding bytes do not count
    assert fingerprint({"x": np.array([True, False])}) != fingerprint({"x": np.array([False, True])})
