# The fake Anthropic Messages API fixture (`fake_anthropic`), for every test.
from fake_anthropic import fake_anthropic  # noqa: F401
