"""Framework integrations for bounce-middleware.

Installed as ``bounce_middleware.adapters``. Each module imports its framework
and is only usable with the matching extra installed, e.g.
``pip install "bounce-middleware[django]"``.
"""
