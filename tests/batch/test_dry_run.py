"""The dry run shows chains, predicted order and an estimate, from priors without history."""

from __future__ import annotations

import pytest

from webtask_frames import run_batch
from webtask_frames._batch.priors import COLD_FACTOR, PRIORS, prior_for


def test_without_history_the_estimate_comes_from_the_model_prior() -> None:
    grid = {"i": [0, 1, 2], "k": ["a", "b"]}  # 6 items, chains a and b of 3 each
    result = run_batch("T {i}", grid, reuse_key="{k}", dry_run=True)
    prior = prior_for(None)
    assert prior.model == "haiku"
    per_chain = prior.cost_usd * COLD_FACTOR + 2 * prior.cost_usd
    assert result.plan.estimate_basis == "prior"
    assert result.plan.estimated_cost_usd == pytest.approx(2 * per_chain)
    # Two chains run side by side: one cold run and two reuse runs each.
    span = prior.duration_s * COLD_FACTOR + 2 * prior.duration_s
    assert result.plan.estimated_duration_s == pytest.approx(span)

    tasks = result.tasks
    assert list(tasks.columns) == [
        "_item",
        "_item_key",
        "i",
        "k",
        "status",
        "reuse_key",
        "order",
        "cold",
        "estimated_cost_usd",
        "estimated_duration_s",
    ]
    assert sorted(tasks["order"]) == list(range(6))
    assert list(tasks["reuse_key"]) == ["a", "b", "a", "b", "a", "b"]
    assert list(tasks["cold"]) == [True, True, False, False, False, False]
    assert tasks["estimated_cost_usd"].sum() == pytest.approx(result.plan.estimated_cost_usd)
    # Each chain keeps grid order.
    for key in ("a", "b"):
        chain = tasks[tasks["reuse_key"] == key]
        assert list(chain["order"]) == sorted(chain["order"])

    summary = result.summary()
    assert "chains: a: 3, b: 3" in summary
    assert "order: items" in summary
    assert "prior for haiku" in summary and "no history yet" in summary
    assert "<NA>" not in tasks.to_string()
    assert "Plan, in predicted order" in result._repr_html_()


@pytest.mark.parametrize("model", ["haiku", "sonnet", "opus"])
def test_each_model_has_its_own_prior(model: str) -> None:
    result = run_batch("T", {"i": [0]}, reuse_key="k", model=model, dry_run=True)
    assert result.plan.estimated_cost_usd == pytest.approx(PRIORS[model].cost_usd * COLD_FACTOR)
    assert f"prior for {model}" in result.summary()


def test_priors_grow_with_the_model() -> None:
    costs = [PRIORS[m].cost_usd for m in ("haiku", "sonnet", "opus")]
    assert costs == sorted(costs) and len(set(costs)) == 3
