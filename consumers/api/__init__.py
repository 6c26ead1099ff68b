"""HTTP routes of the registry: operations (metrics, lag dashboard) and the risk API.

Owns the aiohttp application, its routes and token checks. May import ``schemas``,
``streams`` base modules (settings, pseudonym, calendar, consent store, Redis client,
:mod:`streams.runtime`) and the other ``consumers`` packages.
"""
