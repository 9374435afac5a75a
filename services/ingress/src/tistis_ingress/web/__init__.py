"""The web inbox: server-rendered pages (Jinja2) with a little JavaScript, served by the
ingress itself at /inbox. Spanish first, English by choice (`?lang=en`, or the user's setting)."""

from .pages import pages_router

__all__ = ["pages_router"]
