"""Replay: fixture files applied in order, all or nothing per file (`files`); runs of
plain Data Pipelines messages applied in bulk (`bulk`); the one path every operation
takes through the service, shared with `serve` and `check` (`apply`); and `expect`
records held against the workspace (`expect`)."""

from cio_anon.replay.files import ReplaySummary, replay, replay_into

__all__ = ["ReplaySummary", "replay", "replay_into"]
