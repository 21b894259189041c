"""Flask integration: an extension that wraps ``app.wsgi_app`` in the middleware.

::

    db = SQLAlchemy(model_class=Base)
    bounces = BounceExtension(db=db, user_model=User)

    def create_app():
        app = Flask(__name__)
        app.config.from_mapping(BOUNCE_PATH="/postmark/bounce",
                                BOUNCE_CREDENTIALS=["postmark:long-random-password"])
        db.init_app(app)
        bounces.init_app(app)
        return app

Modules: ``extension`` (configuration, the middleware, the state) and
``notice`` (the one-time flash).
"""

from __future__ import annotations

import warnings
from typing import Any

try:
    import flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    from bounce_middleware.errors import ImproperlyInstalled

    raise ImproperlyInstalled("flask", "Flask") from exc

from .extension import EXTENSION_KEY as EXTENSION_KEY
from .extension import BounceExtension, BounceState
from .extension import read_config as read_config
from .notice import UserLookup as UserLookup

__all__ = ["BounceExtension", "BounceState"]


def __getattr__(name: str) -> Any:
    # Names renamed for the one vocabulary of every adapter, kept for a while.
    if name == "UserLoader":
        warnings.warn("UserLoader is now UserLookup", DeprecationWarning, stacklevel=2)
        return UserLookup
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
