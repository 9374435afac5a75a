"""Fails loudly when aiormq or pamqp change what the batching publisher relies on.

`Publisher._write` does per batch what aiormq's `Channel.basic_publish` does per message, with
aiormq's own bookkeeping (tistis_common.broker explains why: one socket write per batch). That
bookkeeping is not public API, so libs/common/pyproject.toml caps aiormq and pamqp, and this test
checks each piece on a real channel. If it fails after an upgrade: compare `basic_publish` of
the new aiormq with `Publisher._write`, adapt, move the caps."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import aiormq
from aiormq.abc import ChannelFrame
from packaging.version import Version
from pamqp.header import ContentHeader
from tistis_common.broker import Publisher, connect
from tistis_common.topology import declare_topology

TESTED = {"aiormq": ("6.8", "6.10"), "pamqp": ("3.3", "3.4")}


class TestAiormqInternals:
    def test_installed_versions_are_the_tested_ones(self):
        for package, (low, high) in TESTED.items():
            assert Version(low) <= Version(version(package)) < Version(high), (
                f"{package} {version(package)} is outside what the batching publisher was checked "
                f"with ({low} <= v < {high}): see this module's docstring")

    async def test_the_channel_has_what_the_batching_publisher_uses(self, settings):
        connection = await connect(settings.rabbitmq_url)
        try:
            setup = await connection.channel()
            await declare_topology(setup, settings.retry_delays, queues=[])
            publisher = await Publisher.open(connection)
            underlay = await publisher.channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)
            assert isinstance(underlay.lock, asyncio.Lock)
            assert isinstance(underlay.delivery_tag, int)
            assert isinstance(underlay.confirmations, dict)
            assert isinstance(underlay.message_id_delivery_tag, dict)
            assert isinstance(underlay.write_queue, asyncio.Queue)
            assert isinstance(underlay.number, int) and isinstance(underlay.is_closed, bool)
            assert callable(underlay.create_future)
            assert list(underlay._split_body(b"x" * 10))  # the body frames of one message
            assert list(inspect.signature(ChannelFrame.marshall).parameters)[:2] == [
                "channel_number", "frames"]
            assert "body_size" in inspect.signature(ContentHeader).parameters
            # and basic_publish still keeps its confirmations the way _write imitates
            source = inspect.getsource(aiormq.Channel.basic_publish)
            for piece in ("self.delivery_tag += 1", "self.confirmations[self.delivery_tag]",
                          "message_id_delivery_tag"):
                assert piece in source, f"aiormq's basic_publish no longer does {piece!r}"
            await publisher.channel.close()
        finally:
            await connection.close()
