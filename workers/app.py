"""The Celery app, configured from the environment on first use and instrumented by the kit.

Importing this module defines the app object and nothing else: the environment is read the first time
Celery reads its configuration (the worker and beat do that at start, a producer on its first publish),
and the kit's signal handlers are connected at that moment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery

from observability.errors import ConfigError
from workers.settings import WorkerSettings

__all__ = ["WorkerApp", "make_app"]


class _LazyConfig(Mapping[str, Any]):
    """Celery settings computed from :class:`WorkerSettings` when Celery first reads them."""

    def __init__(self, settings: WorkerSettings | None) -> None:
        self._settings = settings
        self._values: dict[str, Any] | None = None

    @property
    def settings(self) -> WorkerSettings:
        if self._settings is None:
            try:
                self._settings = WorkerSettings.from_env()
            except ConfigError as exc:
                _raise_for_celery_cli(exc)
                raise
        return self._settings

    def _data(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self.settings.celery_config()
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


def _raise_for_celery_cli(exc: ConfigError) -> None:
    """Under ``celery worker`` / ``celery beat`` (which read the config while parsing options), a bad
    setting is one line and exit code 2 instead of a traceback."""
    import click

    ctx = click.get_current_context(silent=True)

    class BadSetting(click.ClickException):
        exit_code = 2

    if ctx is not None and ctx.find_root().command.name == "celery":
        message = f"obskit: {exc}"
        raise BadSetting(message) from None


class WorkerApp(Celery):  # type: ignore[misc]  # celery ships no type hints
    """A Celery app that knows the kit's worker settings (metrics port, backlog interval, crons)."""

    def __init__(self, main: str, *, settings: WorkerSettings | None = None, **kwargs: Any) -> None:
        # Tasks whose request binds the task's unit where the main process handles a lost child.
        kwargs.setdefault("task_cls", "workers.instrumentation:Task")
        super().__init__(main, **kwargs)
        self._obskit_config = _LazyConfig(settings)
        self.config_from_object(self._obskit_config)
        self.on_after_configure.connect(_instrument, weak=False)

    @property
    def settings(self) -> WorkerSettings:
        """The worker settings (read from the environment on first use)."""
        return self._obskit_config.settings


def _instrument(sender: Any = None, **_: Any) -> None:
    from workers import instrumentation

    instrumentation.setup()


def make_app(
    settings: WorkerSettings | None = None, *, main: str = "workers", set_as_current: bool = True
) -> WorkerApp:
    """The kit's Celery app with the example tasks; ``settings`` default to the environment, read lazily."""
    return WorkerApp(main, settings=settings, include=["workers.tasks"], set_as_current=set_as_current)
