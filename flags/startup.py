"""What runs once before a flag service starts serving: migrations and bootstrap tokens.

`flags.cli serve` calls `prepare` in the parent process before any worker
starts. Running it from several processes against one database at once is
safe: both steps run under the migration lock.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from flags.db import make_engine, migrate
from flags.settings import Settings
from flags.tokens import BOOTSTRAP_ADMIN, BOOTSTRAP_CLIENT, ensure_token

logger = logging.getLogger(__name__)


def prepare(settings: Settings) -> None:
    """Migrate the schema and ensure the bootstrap tokens named in `settings`."""

    def _bootstrap(session: Session) -> None:
        if settings.admin_secret:
            ensure_token(session, name=BOOTSTRAP_ADMIN, scope="admin", secret=settings.admin_secret)
        if settings.client_secret:
            ensure_token(session, name=BOOTSTRAP_CLIENT, scope="client", secret=settings.client_secret)

    engine = make_engine(settings.database_url)
    try:
        migrate(engine, after=_bootstrap)
    finally:
        engine.dispose()
    logger.info("database ready at %s", engine.url.render_as_string(hide_password=True))
