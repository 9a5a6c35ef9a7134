"""The stream contract refuses events that would break its consumers, and its stream names do not collide."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from shared.events import EmbeddingManifest, PaperEmbedded, ReplayRequested, Stream, dead_letter_stream
from tests.unit.notifier.notifier_papers import hf_papers

MANIFEST = EmbeddingManifest(model_id="all-MiniLM-L6-v2", dims=384, max_tokens=256, precision="fp32", sha256="x")


def test_no_dead_letter_stream_is_another_contract_stream() -> None:
    """``deliveries.dead`` was once both the notifier's spent deliveries and the dead letters of ``deliveries``."""
    names = {str(stream) for stream in Stream}
    assert not {dead_letter_stream(stream) for stream in Stream} & names


@pytest.mark.parametrize(
    ("vector", "why"),
    [
        (PaperEmbedded.pack(np.ones(10)), "vector has 10 values, the manifest says 384 dims"),
        (PaperEmbedded.pack(np.full(384, np.nan)), "NaN or infinite"),
        (PaperEmbedded.pack(np.r_[np.ones(383), np.inf]), "NaN or infinite"),
        (base64.b64encode(b"\x00" * 767).decode(), "not float16 values"),
    ],
    ids=["short", "nan", "inf", "odd-bytes"],
)
def test_an_unusable_vector_is_refused_with_its_reason(vector: str, why: str, fixtures_dir) -> None:
    paper = hf_papers(fixtures_dir)[0]
    with pytest.raises(ValidationError, match=why):
        PaperEmbedded(paper=paper, vector=vector, manifest=MANIFEST)


def test_a_real_vector_is_kept(fixtures_dir) -> None:
    paper = hf_papers(fixtures_dir)[0]
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    event = PaperEmbedded(paper=paper, vector=PaperEmbedded.pack(vector), manifest=MANIFEST)
    assert np.allclose(event.array(), vector, atol=1e-2)


def test_a_replay_request_names_its_subscription() -> None:
    """A junk entry on deliveries.replay validated as "replay everyone's dead deliveries" before."""
    with pytest.raises(ValidationError, match="subscription_id"):
        ReplayRequested.model_validate({"foo": "bar"})
    assert ReplayRequested(subscription_id="s1").delivery_ids == []
