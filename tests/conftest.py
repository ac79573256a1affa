# The fake Anthropic Messages API fixture (`fake_anthropic`), for every test; and the stores
# every store test runs against (`store_url`: SQLite and PostgreSQL).
from fake_anthropic import fake_anthropic  # noqa: F401

# Every limits backend behind one parametrized fixture (`limits_backend`), and Redis.
from limits_backends import limits_backend, redis_session  # noqa: F401
from stores import pg_database, pg_url, store_url  # noqa: F401
