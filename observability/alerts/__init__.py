"""Alerting: Prometheus rules generated from the SLO spec and the metric catalogue, the Alertmanager
routing tree rendered from the environment, a bridge that forwards Sentry's alerts into Alertmanager,
and a test alert that proves each receiver takes notifications.

- ``rules``: ``obskit alerts rules`` (recording and alerting rules, YAML)
- ``routing``: ``obskit alerts alertmanager-config`` (Alertmanager's config, YAML)
- ``bridge``: ``obskit sentry-bridge`` (Sentry's webhooks -> Alertmanager's API)
- ``testalert``: ``obskit test-alert`` (one alert per receiver, and which accepted it)
"""

from __future__ import annotations

__all__: list[str] = []
