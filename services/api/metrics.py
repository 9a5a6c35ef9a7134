"""``GET /metrics``: the pipeline in Prometheus' text format, read from Redis at each scrape.

Every number lives in Redis already (streams, consumer groups, dead letters, the fetcher's counters), so
the api keeps no metric state of its own: any api replica answers the same, and a restart loses nothing.
What is read is ``shared.status``, the same as ``paperwire status`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from shared.status import StreamStatus, fetcher_counters, streams_status

RETRIES = "retries"  # the fetcher's one counter that is not an attempt outcome


@dataclass
class Snapshot:
    streams: list[StreamStatus]
    fetcher: dict[str, int]


async def gather(redis: aioredis.Redis) -> Snapshot:
    return Snapshot(streams=await streams_status(redis), fetcher=await fetcher_counters(redis))


def families(snapshot: Snapshot) -> list[Metric]:
    """The metric families of one scrape (pure: tests and the renderer call it with any snapshot)."""
    length = GaugeMetricFamily("paperwire_stream_length", "Entries in the stream (XLEN).", labels=["stream"])
    dead = GaugeMetricFamily(
        "paperwire_stream_dead_letters", "Entries in the stream's dead-letter stream <stream>.dead.", labels=["stream"]
    )
    group_labels = ["stream", "group"]
    pending = GaugeMetricFamily(
        "paperwire_group_pending", "Entries delivered to the group and not acked yet (XPENDING).", labels=group_labels
    )
    lag = GaugeMetricFamily(
        "paperwire_group_lag",
        "Entries of the stream not yet delivered to the group (absent where Redis cannot tell).",
        labels=group_labels,
    )
    caught_up = GaugeMetricFamily(
        "paperwire_group_caught_up", "1 when the group was delivered the stream's last entry.", labels=group_labels
    )
    consumers = GaugeMetricFamily(
        "paperwire_group_consumers", "Consumers the group knows (XINFO GROUPS).", labels=group_labels
    )
    for stream in snapshot.streams:
        length.add_metric([stream.stream], stream.length)
        dead.add_metric([stream.stream], stream.dead)
        for g in stream.groups:
            labels = [g.stream, g.group]
            pending.add_metric(labels, g.pending)
            caught_up.add_metric(labels, 1 if g.caught_up else 0)
            consumers.add_metric(labels, g.consumers)
            if g.lag is not None:
                lag.add_metric(labels, g.lag)
    requests = CounterMetricFamily(
        "paperwire_fetcher_requests",
        "Fetcher HTTP attempts by outcome: ok, status_<code> (429, 503, ...), timeout, transport_error, too_large.",
        labels=["outcome"],
    )
    retries = CounterMetricFamily("paperwire_fetcher_retries", "Fetcher attempts that were retried after a failure.")
    retries.add_metric([], snapshot.fetcher.get(RETRIES, 0))
    for outcome, value in sorted(snapshot.fetcher.items()):
        if outcome != RETRIES:
            requests.add_metric([outcome], value)
    return [length, dead, pending, lag, caught_up, consumers, requests, retries]


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def render(snapshot: Snapshot, accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type): the classic text format, or OpenMetrics when the scraper's Accept asks for it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(snapshot)))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
