"""Not collected by the suite (no ``test_`` prefix): run as its own pytest session by
test_faults_embedded_cleanup.py to see what a test session leaves behind."""


def test_uses_the_database(db_url):
    import psycopg

    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as c:
        assert c.execute("SELECT postgis_version()").fetchone()[0]
