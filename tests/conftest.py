# The fake Anthropic Messages API fixture (`fake_anthropic`), for every test.
from fake_anthropic import fake_anthropic  # noqa: F401

# Every limits backend behind one parametrized fixture (`limits_backend`), and Redis.
from limits_backends import limits_backend, redis_session  # noqa: F401
