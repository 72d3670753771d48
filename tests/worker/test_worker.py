"""``logferry worker`` against SQS on the moto server: shipping, settling, dead letters."""

from __future__ import annotations

import pytest

from tests.worker.conftest import WorkerSetup, s3_event, shapes


@pytest.mark.parametrize("shape", ["s3", "sns", "eventbridge", "minio", "cos"])
def test_a_message_of_each_shape_is_shipped_and_acked(setup: WorkerSetup, shape: str) -> None:
    setup.put("logs/a.json", 10)
    setup.notify(shapes(setup.bucket, "logs/a.json")[shape])
    stats, _ = setup.run(setup.config())
    assert len(setup.shipped_lines()) == 10
    assert stats.to_dict()["messages"]["acked"] == 1
    assert setup.counts() == (0, 0)
