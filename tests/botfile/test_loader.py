"""The loader: what a bot author sees for each rule of the format (exact line:col and words)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from botrunner.bot import Bot, Memory, Model
from botrunner.botfile.loader import BotFileError, check_file, load_bot
from botrunner.botfile.problems import format_text
from botrunner.templating import Template, UrlTemplate, render_request

ROOT = Path(__file__).resolve().parents[2]
BROKEN = sorted((ROOT / "tests" / "broken").glob("*.yaml"))
# The bots themselves; their *.tests.yaml files are checked in tests/test_bottest_files.py.
EXAMPLES = sorted(p for p in (ROOT / "bots").glob("*.yaml") if not p.name.endswith(".tests.yaml"))

MINIMAL = """\
name: tutor
model:
  name: claude-sonnet-4-6
system: You are a tutor.
"""


def check(tmp_path: Path, text: str, *, env=None, strict=False, name="bot.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    bot, problems = check_file(path, strict=strict, env={} if env is None else env)
    return bot, [f"{p.line}:{p.column}: {p.severity}: {p.message}" for p in problems], problems


def only(tmp_path: Path, text: str, **kw) -> str:
    bot, shown, _ = check(tmp_path, text, **kw)
    assert len(shown) == 1, shown
    return shown[0]


# -- the broken bots folder: exact output for each ------------------------------------------------


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_bot_reports_exactly_the_expected_problems(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    relative = path.relative_to(ROOT)
    _, problems = check_file(relative, env={})
    expected = path.with_suffix(".expected").read_text(encoding="utf-8")
    assert format_text(problems) == expected


def test_every_broken_bot_has_an_expected_file():
    assert len(BROKEN) >= 15
    for path in BROKEN:
        assert path.with_suffix(".expected").exists(), path


# -- the example bots --------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_bots_are_valid_without_warnings(path):
    bot, problems = check_file(path, strict=True, env={})
    assert problems == []
    assert isinstance(bot, Bot)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/bot.schema.json"


def test_required_example_bots_exist():
    assert {p.name for p in EXAMPLES} >= {"tutor.yaml", "weather.yaml", "support.yaml"}


def test_tutor_bot_is_typed_and_frozen():
    bot = load_bot(ROOT / "bots" / "tutor.yaml", env={})
    assert bot.name == "tutor"
    assert bot.model == Model(name="claude-sonnet-4-6", max_tokens=1024, temperature=0.5)
    assert bot.memory == Memory(strategy="window", max_turns=20)
    assert bot.limits.per_user.requests_per_minute == 10
    assert bot.variables == {"subject": "maths"}
    assert len(bot.version) == 12
    assert bot.path == ROOT / "bots" / "tutor.yaml"
    text = bot.system.render({"today": "2025-01-02", "user": {"name": "Ada"}, "subject": "maths"})
    assert "Today is 2025-01-02." in text
    assert "The student is called Ada." in text
    with pytest.raises(AttributeError):
        bot.name = "other"  # type: ignore[misc]


def test_support_bot_summarizes_and_greets():
    bot = load_bot(ROOT / "bots" / "support.yaml", env={})
    assert bot.memory.strategy == "summarize"
    assert bot.greeting
    assert bot.limits.per_user.tokens_per_day == 50000


def test_weather_bot_tools_render_requests():
    bot = load_bot(ROOT / "bots" / "weather.yaml", env={"WEATHER_USER_AGENT": "ua/2"})
    tool = bot.tool("get_weather")
    assert tool is not None
    request = render_request(tool.http, {"latitude": 38.7, "longitude": -9.1})
    assert request.url == "https://api.open-meteo.com/v1/forecast"
    assert request.params["latitude"] == "38.7"
    assert request.headers == {"User-Agent": "ua/2"}
    assert tool.to_api()["input_schema"]["required"] == ["latitude", "longitude"]


def test_defaults_are_filled_in(tmp_path):
    bot, shown, _ = check(tmp_path, MINIMAL)
    assert shown == []
    assert bot.model.max_tokens == 1024
    assert bot.model.provider == "anthropic"
    assert bot.model.temperature is None
    assert bot.memory == Memory()
    assert bot.limits.max_message_chars == 4000
    assert bot.retry.max_retries == 3
    assert bot.retry.timeout_seconds == 60.0
    assert bot.tools == ()
    assert bot.greeting is None


def test_version_is_the_file_hash(tmp_path):
    import hashlib

    bot, _, _ = check(tmp_path, MINIMAL)
    digest = hashlib.sha256((tmp_path / "bot.yaml").read_bytes()).hexdigest()
    assert bot.version == digest[:12]


# -- each rule of the format ---------------------------------------------------------------------


def test_misspelt_key(tmp_path):
    _, shown, problems = check(tmp_path, MINIMAL.replace("system:", "sytem:"))
    assert shown == ['4:1: error: unknown key "sytem"']
    assert problems[0].hint == 'Did you mean "system"?'


def test_misspelt_nested_key(tmp_path):
    text = MINIMAL + "memory:\n  strategy: window\n  max_turn: 10\n"
    _, shown, problems = check(tmp_path, text)
    assert shown == ['7:3: error: unknown key "max_turn" in memory']
    assert problems[0].hint == 'Did you mean "max_turns"?'


def test_key_at_the_wrong_level_says_where_it_belongs(tmp_path):
    _, shown, problems = check(tmp_path, MINIMAL + "max_turns: 10\n")
    assert shown == ['5:1: error: unknown key "max_turns"']
    assert problems[0].hint == '"max_turns" belongs under memory:'


def test_x_keys_are_allowed_anywhere(tmp_path):
    text = """\
    x-owner: team-a
    name: tutor
    model:
      name: claude-sonnet-4-6
      x-note: cheaper model later
    system: You are a tutor.
    memory:
      x-why: short chats
    tools:
      - name: t
        x-todo: add caching
        description: d
        http:
          url: https://api.example.com/x
          x-comment: ${NOT_CHECKED} {{ nope }}
    """
    bot, shown, _ = check(tmp_path, text)
    assert shown == []
    assert bot.tools[0].name == "t"


def test_wrong_type(tmp_path):
    assert (
        only(tmp_path, MINIMAL.replace("  name: claude", "  max_tokens: lots\n  name: claude"))
        == '3:15: error: model.max_tokens should be a whole number, not the text "lots"'
    )


def test_missing_value(tmp_path):
    assert only(tmp_path, MINIMAL + "greeting:\n") == "5:10: error: greeting has no value"


def test_missing_required_key_points_at_the_parent(tmp_path):
    text = "name: tutor\nsystem: hi\nmodel:\n  max_tokens: 5\n"
    _, shown, problems = check(tmp_path, text)
    assert shown == ['3:1: error: "name" is missing in model']
    assert problems[0].hint == "Add name: here. The model to use, as its provider names it."


def test_bad_indentation(tmp_path):
    text = "name: tutor\nmodel:\n  name: claude-sonnet-4-6\n   max_tokens: 1024\nsystem: hi\n"
    _, shown, problems = check(tmp_path, text)
    assert shown == [
        '4:14: error: unexpected ":" here: this line is not indented like the lines around it'
    ]
    assert "same column" in problems[0].hint


def test_dedented_key(tmp_path):
    text = "name: tutor\nmodel:\n    name: claude-sonnet-4-6\n  max_tokens: 1024\nsystem: hi\n"
    assert only(tmp_path, text) == ("4:3: error: this line is not indented like the lines above it")


def test_tab_indentation(tmp_path):
    text = "name: tutor\nmodel:\n\tname: claude-sonnet-4-6\nsystem: hi\n"
    assert only(tmp_path, text) == "3:1: error: tabs cannot be used for indentation in YAML"


def test_unclosed_quote_points_at_the_opening_quote(tmp_path):
    text = 'name: tutor\nsystem: "hi\nmodel:\n  name: x\n'
    assert only(tmp_path, text) == "2:9: error: this quoted text is never closed"


def test_template_syntax_error_on_line_7_of_a_system_block(tmp_path):
    text = """\
    name: tutor
    model:
      name: claude-sonnet-4-6
    system: |
      line 1
      line 2
      line 3
      line 4
      line 5
      line 6
      {% if user.name %}Hello {{ user.name }.{% endif %}
      line 8
    """
    _, shown, problems = check(tmp_path, text)
    assert shown == ["11:40: error: system: template syntax error: unexpected '}'"]
    assert problems[0].hint.startswith("Values are written {{ name }}")


def test_template_syntax_error_in_a_one_line_system(tmp_path):
    text = MINIMAL.replace("You are a tutor.", '"Hi {% if x %}"')
    assert only(tmp_path, text).startswith("4:10: error: system: template syntax error: ")


def test_duplicated_key(tmp_path):
    text = MINIMAL + "greeting: Hello\ngreeting: Hi\n"
    _, shown, problems = check(tmp_path, text)
    assert shown == [
        '6:1: error: the key "greeting" appears twice in the same section (first on line 5)'
    ]
    assert problems[0].hint == "Delete one of them: YAML would silently keep only the last one."


TOOL = """\
name: weather
model:
  name: claude-sonnet-4-6
system: You answer weather questions.
tools:
  - name: get_weather
    description: Get current weather for a city
    input_schema:
      type: object
      properties:
        city: {type: string}
    http:
      url: https://api.example.com/weather/{{ input.city }}
"""


def test_valid_tool(tmp_path):
    bot, shown, _ = check(tmp_path, TOOL)
    assert shown == []
    assert isinstance(bot.tools[0].http.url, UrlTemplate)
    assert bot.tools[0].http.url.render({"city": "New York"}) == (
        "https://api.example.com/weather/New%20York"
    )


def test_templated_url_host(tmp_path):
    text = TOOL.replace("https://api.example.com/", "https://{{ input.city }}.example.com/")
    _, shown, problems = check(tmp_path, text)
    assert shown == [
        "13:20: error: tools[0].http.url: the host must be literal: the model controls input"
    ]
    assert "use {{ input.x }} only in the path" in problems[0].hint


def test_host_from_env_is_allowed(tmp_path):
    text = TOOL.replace("https://api.example.com/", "https://${API_HOST:-api.example.com}/")
    bot, shown, _ = check(tmp_path, text)
    assert shown == []
    assert bot.tools[0].http.url.render({"city": "a b"}) == "https://api.example.com/weather/a%20b"


def test_url_must_have_a_scheme(tmp_path):
    text = TOOL.replace("https://api.example.com/weather/", "api.example.com/")
    assert only(tmp_path, text) == (
        "13:12: error: tools[0].http.url: a tool URL must start with https:// (or http://)"
    )


def test_secret_in_system(tmp_path):
    text = MINIMAL.replace("You are a tutor.", "|\n  You are a tutor.\n  Key: ${OPENAI_API_KEY}")
    _, shown, problems = check(tmp_path, text)
    assert shown == [
        "6:8: error: ${OPENAI_API_KEY} reads an environment variable, which is not allowed in system"
    ]
    assert problems[0].hint.startswith("The model must never see a secret")


def test_env_in_greeting(tmp_path):
    assert only(tmp_path, MINIMAL + "greeting: Hi from ${COMPANY}\n") == (
        "5:19: error: ${COMPANY} reads an environment variable, which is not allowed in greeting"
    )


def test_env_in_variables_and_description(tmp_path):
    text = MINIMAL + "description: ${A}\nvariables:\n  who: ${B:-x}\n"
    _, shown, _ = check(tmp_path, text)
    assert shown == [
        "5:14: error: ${A} reads an environment variable, which is not allowed in description",
        "7:8: error: ${B:-x} reads an environment variable, which is not allowed in variables.who",
    ]


def test_malformed_env_reference(tmp_path):
    text = TOOL + "      headers:\n        Authorization: Bearer ${MY KEY}\n"
    assert only(tmp_path, text) == (
        '15:31: error: "${MY KEY}" is not a valid environment variable reference'
    )


def test_undefined_variable(tmp_path):
    text = MINIMAL.replace("You are a tutor.", "|\n  Hello.\n  You teach {{ subjet }}.")
    text += "variables:\n  subject: maths\n"
    _, shown, problems = check(tmp_path, text)
    assert shown == ['6:16: error: undefined variable "subjet" in system']
    assert problems[0].hint.endswith('Did you mean "subject"?')


def test_user_attributes_and_system_variables_are_allowed(tmp_path):
    text = MINIMAL.replace(
        "You are a tutor.",
        '"{{ today }} {{ now }} {{ bot.name }} {{ user.anything }} {% set x = 1 %}{{ x }}"',
    )
    bot, shown, _ = check(tmp_path, text)
    # `now` is allowed; it only costs the prompt cache (see now_in_system in tests/broken).
    assert [line.split(": ", 2)[1] for line in shown] == ["warning"]
    assert bot.system.render({"today": "T", "now": "N", "bot": {"name": "b"}, "user": {}}) == (
        "T N b  1"
    )


def test_input_is_only_for_tools(tmp_path):
    text = MINIMAL.replace("You are a tutor.", "You help {{ input.city }}.")
    _, shown, problems = check(tmp_path, text)
    assert shown == ['4:21: error: undefined variable "input" in system']
    assert problems[0].hint.startswith("input is only available in a tool's http settings.")


def test_only_input_in_tool_http_fields(tmp_path):
    text = TOOL + "      headers:\n        X-User: '{{ user.id }}'\n"
    assert only(tmp_path, text) == (
        '15:21: error: undefined variable "user" in tools[0].http.headers.X-User'
    )


def test_reserved_variable_name(tmp_path):
    assert only(tmp_path, MINIMAL + "variables:\n  user: x\n") == (
        '6:3: error: the variable name "user" is reserved'
    )


def test_bad_variable_name(tmp_path):
    assert only(tmp_path, MINIMAL + "variables:\n  my-var: x\n").startswith(
        '6:3: error: "my-var" cannot be used as a name'
    )


def test_invalid_input_schema(tmp_path):
    text = TOOL.replace("city: {type: string}", "city: {type: strng}")
    _, shown, problems = check(tmp_path, text)
    assert shown == ['11:22: error: "strng" is not a JSON Schema type']
    assert problems[0].hint.startswith("Use one of: string")


def test_input_schema_metaschema_errors(tmp_path):
    text = TOOL.replace("      properties:\n", "      required: city\n      properties:\n")
    assert only(tmp_path, text) == (
        "10:17: error: input_schema is not a valid JSON Schema: 'city' is not of type 'array'"
    )


def test_input_schema_must_be_an_object(tmp_path):
    text = TOOL.replace("      type: object\n", "      type: string\n", 1)
    assert only(tmp_path, text) == (
        '9:13: error: input_schema must describe an object: write "type: object"'
    )


def test_duplicate_tool_name(tmp_path):
    second = TOOL[TOOL.index("  - name") :].replace("Get current", "Also get")
    _, shown, problems = check(tmp_path, TOOL + second)
    assert shown == ['14:11: error: the tool name "get_weather" is already used on line 6']


def test_bad_tool_name(tmp_path):
    _, shown, problems = check(tmp_path, TOOL.replace("name: get_weather", "name: get weather"))
    assert shown == [
        '6:11: error: tools[0].name "get weather" is not allowed: a tool name may only use '
        "letters, digits, - and _ (at most 64 characters)"
    ]
    assert problems[0].hint == 'Try "get_weather".'


def test_bad_bot_name_suggests_a_fix(tmp_path):
    _, _, problems = check(tmp_path, MINIMAL.replace("name: tutor", "name: My Tutor"))
    assert problems[0].message.startswith('name "My Tutor" is not allowed')
    assert problems[0].hint == 'Try "my-tutor".'


def test_yes_no_warnings(tmp_path):
    text = TOOL + "      params:\n        units: on\n        at: 1:30\n" + "greeting: no\n"
    bot, shown, problems = check(tmp_path, text)
    assert shown == [
        '15:16: warning: YAML reads "on" as the boolean true; botrunner uses the text "on" here',
        '16:13: warning: YAML reads "1:30" as the number 90; botrunner uses the text "1:30" here',
        '17:11: warning: YAML reads "no" as the boolean false; botrunner uses the text "no" here',
    ]
    assert problems[0].hint == 'Put it in quotes ("on") so every tool reads it the same way.'
    assert bot is not None  # warnings do not stop loading
    assert bot.greeting == "no"
    assert render_request(bot.tools[0].http, {"city": "x"}).params == {"units": "on", "at": "1:30"}


def test_quoted_yes_is_not_warned_and_plain_numbers_become_text(tmp_path):
    text = TOOL + "      params:\n        units: 'on'\n        count: 5\n"
    bot, shown, _ = check(tmp_path, text)
    assert shown == []
    assert render_request(bot.tools[0].http, {}).params == {"units": "on", "count": "5"}


def test_number_ranges(tmp_path):
    text = """\
    name: tutor
    model:
      name: claude-sonnet-4-6
      max_tokens: 0
      temperature: 1.5
    system: hi
    limits:
      max_message_chars: 0
      per_user: {requests_per_minute: 0, tokens_per_day: -5}
    retry:
      max_retries: -1
      timeout_seconds: 0
    memory:
      max_turns: 0
    """
    _, shown, _ = check(tmp_path, text)
    assert shown == [
        "4:15: error: model.max_tokens must be at least 1, not 0",
        "8:22: error: limits.max_message_chars must be at least 1, not 0",
        "9:35: error: limits.per_user.requests_per_minute must be at least 1, not 0",
        "9:54: error: limits.per_user.tokens_per_day must be at least 1, not -5",
        "11:16: error: retry.max_retries must be at least 0, not -1",
        "12:20: error: retry.timeout_seconds must be more than 0, not 0",
        "14:14: error: memory.max_turns must be at least 1, not 0",
        # The schema allows up to 2 (openai's range); anthropic's is a rule of its own, and
        # rules are reported after the schema's problems.
        "5:16: error: model.temperature must be at most 1 with provider anthropic, not 1.5",
    ]


def test_enum_with_did_you_mean(tmp_path):
    _, shown, problems = check(tmp_path, MINIMAL + "memory:\n  strategy: sliding_window\n")
    assert shown == [
        "6:13: error: memory.strategy must be one of none, full, window, summarize, retrieval,"
        ' not the text "sliding_window"'
    ]


def test_body_only_for_post_put_patch(tmp_path):
    text = TOOL + "      body: {city: '{{ input.city }}'}\n"
    assert only(tmp_path, text) == "14:7: error: a GET request cannot have a body"
    bot, shown, _ = check(tmp_path, text.replace("      url:", "      method: POST\n      url:"))
    assert shown == []
    assert render_request(bot.tools[0].http, {"city": "Oslo"}).json == {"city": "Oslo"}


def test_literal_api_key_is_a_warning(tmp_path):
    text = MINIMAL.replace(
        "  name: claude-sonnet-4-6\n", "  name: claude-sonnet-4-6\n  api_key: sk-ant-123\n"
    )
    assert only(tmp_path, text).startswith("4:12: warning: the API key is written in the file")


# -- the model, per provider -----------------------------------------------------------------

OPENAI_BOT = """\
name: local
model:
  provider: openai
  name: llama3.2
  temperature: 1.5
  reasoning_effort: low
  base_url: http://localhost:11434/v1
system: hi
"""


def test_openai_takes_its_own_keys_and_range(tmp_path):
    bot, shown, _ = check(tmp_path, OPENAI_BOT)
    assert shown == []
    assert bot.model == Model(
        name="llama3.2",
        max_tokens=1024,
        provider="openai",
        temperature=1.5,
        reasoning_effort="low",
        base_url="http://localhost:11434/v1",
    )


def test_a_key_of_one_provider_is_an_error_under_the_other(tmp_path):
    text = OPENAI_BOT.replace("provider: openai", "provider: anthropic")
    text = text.replace("llama3.2", "claude-sonnet-4-6")
    _, shown, problems = check(tmp_path, text)
    assert shown == [
        "5:16: error: model.temperature must be at most 1 with provider anthropic, not 1.5",
        "6:3: error: model.reasoning_effort applies only to provider openai; "
        "this bot uses anthropic",
    ]
    assert problems[1].hint == "Remove reasoning_effort, or set provider: openai."


def test_the_key_hint_names_the_providers_variable(tmp_path):
    text = OPENAI_BOT.replace("  base_url:", "  api_key: sk-local-123\n  base_url:")
    _, _, [problem] = check(tmp_path, text)
    assert problem.severity == "warning"
    assert problem.hint == "Read it from the environment instead: api_key: ${OPENAI_API_KEY}"


@pytest.mark.parametrize(
    "url", ["http://localhost:11434/v1", "http://127.0.0.1:8080/v1", "http://[::1]:8000/v1"]
)
def test_plain_http_to_this_machine_is_fine(tmp_path, url):
    _, shown, _ = check(tmp_path, OPENAI_BOT.replace("http://localhost:11434/v1", url))
    assert shown == []


def test_base_url_from_the_environment_is_checked_without_showing_it(tmp_path):
    text = OPENAI_BOT.replace("http://localhost:11434/v1", "${LLM_URL}")
    assert check(tmp_path, text, env={})[1] == []
    _, shown, problems = check(tmp_path, text, env={"LLM_URL": "gpu-box:11434"})
    assert shown == [
        "7:13: error: model.base_url: the value of LLM_URL must be an address starting "
        "with https:// (or http://)"
    ]
    assert "gpu-box" not in format_text(problems)
    _, shown, _ = check(tmp_path, text, env={"LLM_URL": "http://gpu-box:11434/v1"})
    assert shown == [
        "7:13: warning: model.base_url: the value of LLM_URL is plain http:// to gpu-box: "
        "the conversation and the API key would travel unencrypted"
    ]


def test_root_must_be_a_mapping(tmp_path):
    assert only(tmp_path, "- a\n- b\n").startswith("1:1: error: a bot file must be a mapping")


def test_empty_file(tmp_path):
    assert only(tmp_path, "# nothing\n") == "1:1: error: the file is empty"


def test_second_document(tmp_path):
    assert only(tmp_path, MINIMAL + "---\nname: other\n").startswith(
        "5:1: error: a bot file holds one bot"
    )


def test_unreadable_and_non_utf8_files(tmp_path):
    bot, problems = check_file(tmp_path / "missing.yaml")
    assert bot is None
    assert problems[0].message.startswith("cannot read the file")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: tutor\nsystem: caf\xe9\n")
    _, problems = check_file(bad)
    assert (problems[0].line, problems[0].message) == (2, "the file is not UTF-8 text")


def test_custom_tags_are_rejected(tmp_path):
    assert only(tmp_path, MINIMAL + "greeting: !!python/str hi\n").startswith(
        "5:11: error: unknown YAML tag"
    )


def test_anchors_and_merge_keys_work(tmp_path):
    text = """\
    name: tutor
    model:
      name: claude-sonnet-4-6
    system: hi
    x-common: &common
      description: Shared description
      http: {url: "https://api.example.com/x"}
    tools:
      - <<: *common
        name: a
      - <<: *common
        name: b
        description: Own description
    """
    bot, shown, _ = check(tmp_path, text)
    assert shown == []
    assert [t.description for t in bot.tools] == ["Shared description", "Own description"]


def test_all_problems_are_reported_at_once_schema_first(tmp_path):
    text = """\
    name: tutor
    model:
      name: claude-sonnet-4-6
      temprature: 0.5
    system: "{{ nope }}"
    greeting: ${X}
    memory:
      strategy: windw
    """
    _, shown, _ = check(tmp_path, text)
    assert shown == [
        '4:3: error: unknown key "temprature" in model',
        "8:13: error: memory.strategy must be one of none, full, window, summarize, retrieval,"
        ' not the text "windw"',
        '5:13: error: undefined variable "nope" in system',
        "6:11: error: ${X} reads an environment variable, which is not allowed in greeting",
    ]


def test_semantic_checks_skip_parts_that_failed_the_schema(tmp_path):
    text = MINIMAL.replace("You are a tutor.", '["{{ nope }}", "${KEY}"]')
    text += TOOL[TOOL.index("tools:") :].replace(
        "url: https://api.example.com/weather/{{ input.city }}", 'url: ["https://{{ x }}"]'
    )
    _, shown, _ = check(tmp_path, text)
    # Only the schema errors: the bad template, host and ${} inside them are not checked.
    assert shown == [
        "4:9: error: system should be text, not a list",
        "13:12: error: tools[0].http.url should be text, not a list",
    ]


def test_other_fields_are_still_checked_when_a_sibling_fails(tmp_path):
    text = TOOL.replace("url: https://api.example.com/", "url: https://{{ input.city }}/")
    text = text.replace("    http:\n", "    http:\n      method: FETCH\n")
    _, shown, _ = check(tmp_path, text)
    assert [s.split(": error: ")[1][:30] for s in shown] == [
        "tools[0].http.method must be o",
        "tools[0].http.url: the host mu",
    ]


# -- environment variables ---------------------------------------------------------------------

ENV_BOT = """\
name: envbot
model:
  name: claude-sonnet-4-6
  api_key: ${MY_KEY}
  base_url: ${GATEWAY:-https://gateway.example.com}
system: hi
tools:
  - name: t
    description: d
    http:
      url: https://api.example.com/x
      headers:
        Authorization: Bearer ${TOOL_TOKEN}
"""


def test_env_refs_secrets_and_resolution(tmp_path):
    env = {"MY_KEY": "sk-secret", "TOOL_TOKEN": "tok{{ 7*7 }}"}
    bot, shown, _ = check(tmp_path, ENV_BOT, env=env)
    assert shown == []
    assert bot.model.api_key == "sk-secret"
    assert bot.model.api_key_env == "MY_KEY"
    assert bot.model.base_url == "https://gateway.example.com"
    assert [(r.name, r.default, r.location.line, r.location.column) for r in bot.env_refs] == [
        ("MY_KEY", None, 4, 12),
        ("GATEWAY", "https://gateway.example.com", 5, 13),
        ("TOOL_TOKEN", None, 13, 31),
    ]
    # Defaults are written in the file for all to read: only environment values are secret.
    assert bot.secrets == {"sk-secret", "tok{{ 7*7 }}"}
    # A secret containing "{{" is never compiled; "${X}" in the model's input is never expanded.
    request = render_request(bot.tools[0].http, {})
    assert request.headers == {"Authorization": "Bearer tok{{ 7*7 }}"}


def test_missing_env_is_fine_unless_strict(tmp_path):
    bot, shown, _ = check(tmp_path, ENV_BOT, env={})
    assert shown == []
    assert bot.model.api_key is None
    assert bot.model.api_key_env == "MY_KEY"
    assert bot.secrets == frozenset()
    _, shown, problems = check(tmp_path, ENV_BOT, env={"MY_KEY": "sk-x"}, strict=True)
    assert shown == ["13:31: error: the environment variable TOOL_TOKEN is not set"]
    assert "sk-x" not in format_text(problems)


def test_load_bot_raises_with_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: Bad Name\nmodel: {}\nsytem: x\n", encoding="utf-8")
    with pytest.raises(BotFileError) as info:
        load_bot(path, env={})
    assert len(info.value.problems) == 3
    assert str(info.value).startswith(f"{path}: 3 errors\n{path}:1:7: error: name")


def test_system_template_is_compiled_once_and_renders_data_literally(tmp_path):
    bot, _, _ = check(tmp_path, MINIMAL.replace("You are a tutor.", "'Hi {{ user.name }}'"))
    assert isinstance(bot.system, Template)
    assert bot.system.render({"user": {"name": "{{ 7*7 }}"}}) == "Hi {{ 7*7 }}"
    assert bot.system.render({"user": {}}) == "Hi "
    assert bot.system.location.line == 4


def test_schema_defaults_match_the_dataclasses():
    from botrunner.bot import Limits, Retry, ToolHttp
    from botrunner.botfile.schema import load_schema

    props = load_schema()["properties"]

    def default(section, key):
        return props[section]["properties"][key]["default"]

    assert default("model", "provider") == Model.__dataclass_fields__["provider"].default
    for key in ("strategy", "max_turns", "retrieve_turns", "summarize_every"):
        assert default("memory", key) == getattr(Memory(), key)
    for key in ("max_message_chars", "max_tool_rounds"):
        assert default("limits", key) == getattr(Limits(), key)
    for key in ("max_retries", "timeout_seconds"):
        assert default("retry", key) == getattr(Retry(), key)
    http = props["tools"]["items"]["properties"]["http"]["properties"]
    for key in ("timeout_seconds", "max_response_bytes", "follow_redirects"):
        assert http[key]["default"] == ToolHttp.__dataclass_fields__[key].default


def test_validate_path_does_not_import_the_sdk_or_web_stack():
    code = (
        "import sys; from botrunner.botfile.loader import check_file; "
        "from botrunner.commands import validate; "
        "bot, p = check_file('bots/weather.yaml'); assert bot is not None, p; "
        "heavy = {'anthropic', 'httpx', 'fastapi', 'uvicorn', 'starlette'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_input_field_missing_from_input_schema_is_warned(tmp_path):
    text = TOOL.replace("{{ input.city }}", "{{ input.citty }}")
    text += "      params:\n        q: '{{ input.city }}'\n        x: '{{ input.zip }}'\n"
    bot, shown, problems = check(tmp_path, text)
    assert shown == [
        "13:53: warning: input.citty is not a property in the input_schema of this tool",
        "16:22: warning: input.zip is not a property in the input_schema of this tool",
    ]
    assert problems[0].hint == "Did you mean input.city?"
    assert problems[1].hint == "input_schema has: city."
    assert bot is not None


def test_each_missing_key_is_reported_once(tmp_path):
    _, shown, _ = check(tmp_path, "x-only: 1\n")
    assert shown == [
        '1:1: error: "name" is missing',
        '1:1: error: "model" is missing',
        '1:1: error: "system" is missing',
    ]


def test_nan_and_infinity_are_rejected(tmp_path):
    text = MINIMAL.replace("  name: claude", "  temperature: .nan\n  name: claude")
    assert only(tmp_path, text) == "3:16: error: .nan is not a number botrunner can use"


def test_document_marker_only_is_empty(tmp_path):
    assert only(tmp_path, "---\n") == "1:1: error: the file is empty"


def test_non_string_dialect_in_input_schema_is_a_problem_not_a_crash(tmp_path):
    source = ENV_BOT.replace(
        "description: d\n", "description: d\n    input_schema: {type: object, $schema: [1]}\n"
    )
    _, shown, _ = check(tmp_path, source, env={})
    assert len(shown) == 1 and "input_schema is not a valid JSON Schema" in shown[0]


@pytest.mark.parametrize("cache", ["off", '"off"', "false"])
def test_now_in_system_is_fine_with_caching_off(tmp_path, cache):
    path = tmp_path / "bot.yaml"
    path.write_text(
        f"name: clock\nmodel: {{name: claude-sonnet-5-5, cache: {cache}}}\nsystem: It is {{{{ now }}}}.\n"
    )
    bot, problems = check_file(path, env={})
    assert problems == []
    assert bot.model.cache == "off"


def test_model_cache_defaults_and_ttl(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text("name: t\nmodel: {name: claude-sonnet-5-5, cache_ttl: 1h}\nsystem: hi\n")
    bot, problems = check_file(path, env={})
    assert problems == []
    assert (bot.model.cache, bot.model.cache_ttl) == ("auto", "1h")
    path.write_text(
        "name: t\nmodel: {name: claude-sonnet-5-5, cache: always, cache_ttl: 2h}\nsystem: hi\n"
    )
    _, problems = check_file(path, env={})
    assert [p.message for p in problems] == [
        'model.cache must be one of auto, off, not the text "always"',
        'model.cache_ttl must be one of 5m, 1h, not the text "2h"',
    ]


def test_user_attributes_declared_or_read_by_system(tmp_path):
    from botrunner.bot import UserAttribute

    bot, shown, _ = check(
        tmp_path,
        """\
        name: tutor
        model:
          name: claude-sonnet-4-6
        user_attributes:
          x-note: shown to the model
          name: {max_length: 80, description: first name}
          level:
        system: "{{ user.name }} ({{ user['level'] }}), {{ user.id }}"
        """,
    )
    assert shown == []
    assert bot.user_attributes == {
        "name": UserAttribute(80, "first name"),
        "level": UserAttribute(200),
    }
    # Without the block: the attributes system reads, each up to 200 characters (id aside).
    bot, shown, _ = check(
        tmp_path,
        MINIMAL.replace("You are a tutor.", "'{{ user.name }} {{ user.id }} {{ user.name }}'"),
    )
    assert shown == []
    assert bot.user_attributes == {"name": UserAttribute(200)}
    # An empty block accepts none.
    _, shown, _ = check(
        tmp_path, MINIMAL.replace("You are a tutor.", "'{{ user.name }}'") + "user_attributes: {}\n"
    )
    assert shown == ["4:13: error: user.name is not declared under user_attributes"]
