"""Planning a papers.parsed batch: what is embedded, what is dead-lettered and why, what is a repeat."""

from __future__ import annotations

import numpy as np

from services.embedder.batch import embedded_events, paper_text, plan_batch
from shared.events import EmbeddingManifest, PaperParsed
from shared.paper import Paper
from tests.unit.embedder.model_cache import labeled_rows


def events(n: int) -> list[PaperParsed]:
    return [PaperParsed(paper=Paper(id=r["id"], title=r["title"], abstract=r["summary"])) for r in labeled_rows(n)]


def test_real_papers_are_embedded_as_title_then_abstract() -> None:
    (event,) = events(1)
    text = paper_text(event)
    assert text.startswith("Token-Level Uncertainty-Aware Objective for Language Model Post-Training. In the current")
    assert "\n" not in text and "causal language modeling" in text


def test_empty_and_broken_texts_are_rejected_with_a_reason_and_the_rest_goes_on() -> None:
    good = events(3)
    empty = good[0].model_copy(update={"paper": good[0].paper.model_copy(update={"title": " ", "abstract": ""})})
    symbols = good[1].model_copy(
        update={"paper": good[1].paper.model_copy(update={"title": "$$ -- $$", "abstract": ""})}
    )
    bodies = [good[0].model_dump(mode="json"), empty.model_dump_json(), b"{not json", symbols, {"paper": {}}, good[2]]
    plan = plan_batch(bodies)
    assert [i.index for i in plan.items] == [0, 5]
    reasons = {r.index: r.reason for r in plan.rejected}
    assert reasons[1] == f"empty text: paper {good[0].paper.id} has neither title nor abstract"
    assert reasons[2].startswith("not JSON")
    assert reasons[3].startswith(f"broken text: paper {good[1].paper.id} has no words")
    assert reasons[4].startswith("not a PaperParsed event")


def test_the_same_event_twice_in_one_batch_is_embedded_once() -> None:
    first, second = events(2)
    plan = plan_batch([first, second, first.model_dump(mode="json")])
    assert [i.event.event_id for i in plan.items] == [first.event_id, second.event_id]
    assert plan.repeats == [2]


def test_embedded_events_carry_vector_and_manifest() -> None:
    plan = plan_batch(events(2))
    vectors = np.eye(2, 384, dtype=np.float32)
    manifest = EmbeddingManifest(model_id="m", dims=384, max_tokens=256, precision="int8", sha256="ab")
    out = embedded_events(plan.items, vectors, manifest)
    assert [e.paper.id for e in out] == [i.event.paper.id for i in plan.items]
    assert out[1].array()[1] == 1.0 and out[1].array().sum() == 1.0 and out[1].dtype == "float16"
    assert out[0].manifest.space == "m:384"
