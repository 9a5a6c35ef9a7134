"""One logging setup: every line JSON, naming its logger, whichever library wrote it."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.logs import configure_logging


def test_structlog_and_standard_library_lines_are_json_naming_their_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """onnxruntime's provider warning and uvicorn log through the standard library: they were plain text, and in
    ``paperwire run`` no line said which service wrote it."""
    configure_logging("INFO")
    structlog.get_logger("paperwire.parser").info("document_parsed", papers=3)
    logging.getLogger("paperwire.embedding").warning("CUDA not available to ONNX Runtime: running on %s", "CPU")
    structlog.get_logger("paperwire.parser").debug("below the level")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
        ("paperwire.parser", "info", "document_parsed"),
        ("paperwire.embedding", "warning", "CUDA not available to ONNX Runtime: running on CPU"),
    ]
    assert lines[0]["papers"] == 3 and all("timestamp" in line for line in lines)
