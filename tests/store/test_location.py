"""Store locations: a file or a PostgreSQL URL, checked before anything connects."""

from __future__ import annotations

import pytest

from opeval.errors import UsageError
from opeval.store import PostgresURL, parse_store


def test_a_url_gives_the_recorders_five_settings() -> None:
    location = parse_store("postgresql://opeval:s3cret@db.internal:5433/runs")
    assert isinstance(location, PostgresURL)
    assert location.conninfo() == {"user": "opeval", "password": "s3cret", "host": "db.internal", "port": "5433",
                                   "dbname": "runs"}
    assert "s3cret" not in str(location)


@pytest.mark.parametrize(("url", "said"), [
    ("postgresql://u:pw@h/db?sslmode=require", "set sslmode in the environment instead (PGSSLMODE)"),
    ("postgresql://u@h/db?application_name=x&connect_timeout=3", "(PGAPPNAME, PGCONNECT_TIMEOUT)"),
    ("postgresql://u@h/", "name the database"),
])
def test_a_url_the_recorder_cannot_honour_is_refused(url: str, said: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_store(url).conninfo()  # type: ignore[union-attr]
    assert said in str(e.value) and "pw" not in str(e.value) and "\n" not in str(e.value)
