"""The web viewer: server-rendered pages and a JSON API over the read models, and live
trials straight from the event log. Read-only; binds loopback unless told otherwise."""

from opeval.viewer._app import create_app
from opeval.viewer._data import StoreView
from opeval.viewer._server import bind, is_loopback, serve, url_of

__all__ = ["StoreView", "bind", "create_app", "is_loopback", "serve", "url_of"]
